"""Serving a Quart-Trio app on Hypercorn, shared by both commands.

``yoi-runtime`` and ``yoi-workspace`` parse ``--bind HOST:PORT`` alike
(:func:`parse_bind`), serve their app with the same graceful shutdown (a
trigger plus a deadline on the server nursery, :func:`serve_app`) and stop on
SIGINT or SIGTERM (:func:`run_until_signal`). Only what draining means
differs: each passes its own ``drain``.

Both serve behind the same rules (:mod:`._guard`, ``docs/security.md``) and
limits (:class:`ConnectionLimits`): a keep-alive idle timeout, a cap on open
connections answered with a clean ``503``, a small inbound WebSocket
message size, and a lingering close.

**Lingering close.** Hypercorn closes a connection right after an answer
sent before the request body was read (``413``, ``415``, ``401``, ...).
Closing a socket with unread input makes the kernel send a TCP reset
instead of a FIN, and a reset makes the client's kernel drop what it has
received but not yet read: the client loses the answer. So every
connection is closed the way nginx and Apache close one: half-close (FIN),
read and discard what the peer still sends for at most
``linger_timeout`` seconds and ``linger_bytes`` bytes, then close
(:func:`_close_lingering`). A peer that has closed its side already is
closed at once.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import resource
import signal
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

import attrs
import hypercorn
import trio
from hypercorn.protocol import ws_stream
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr, wrap_app
from quart_trio import QuartTrio

from ._guard import GuardedApp
from ._guard_settings import ASGIApp, GuardSettings, refusal_bytes

__all__ = [
    "SPARE_FILES",
    "ConnectionLimits",
    "is_loopback",
    "ServeFunction",
    "parse_bind",
    "raise_open_file_limit",
    "run_until_signal",
    "serve_app",
]


class ServeFunction(Protocol):
    """A ``serve_*`` function with its settings bound (see :func:`serve_app`)."""

    async def __call__(
        self,
        *,
        shutdown_trigger: trio.Event,
        task_status: trio.TaskStatus[list[str]] = ...,
    ) -> None: ...


def parse_bind(value: str) -> tuple[str, int]:
    """Parse ``--bind HOST:PORT`` (an IPv6 host may be in brackets).

    Returns:
        ``(host, port)``, the host without brackets.

    Raises:
        argparse.ArgumentTypeError: Not ``HOST:PORT`` (argparse reports it).
    """
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError("expected HOST:PORT, e.g. 127.0.0.1:8321")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@attrs.frozen
class ConnectionLimits:
    """How long and how many connections a server keeps.

    Attributes:
        keep_alive_timeout: Seconds an idle HTTP/1.1 connection is kept
            after its last response.
        max_connections: Open connections (HTTP and WebSocket) at most; one
            more is answered ``503 too_many_connections`` and closed. Capped
            further by the open-file limit (less :data:`SPARE_FILES`).
        max_websocket_message: Bytes one inbound WebSocket message may
            buffer before the connection is closed with 1009 (clients send
            only control frames; any data message is closed with 1008).
        linger_timeout: Seconds a closing connection still reads (and
            discards) what the peer sends after the server's FIN, so the
            close is not a reset (module docstring).
        linger_bytes: Bytes read and discarded at most while lingering;
            past them the connection is closed anyway.
    """

    keep_alive_timeout: float = 5.0
    max_connections: int = 1000
    max_websocket_message: int = 4096
    linger_timeout: float = 1.0
    linger_bytes: int = 65536


#: Descriptors kept for everything but client connections (store, engines,
#: remote Runtimes, logs).
SPARE_FILES = 128

#: Refusals of the connection cap being written at once; past it a new
#: connection is closed without an answer.
_MAX_REFUSING = 64


def raise_open_file_limit() -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit.

    Returns:
        The soft limit now in force (descriptors); unchanged when the
        system refuses.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft


async def serve_app(
    app: QuartTrio,
    host: str,
    port: int,
    *,
    shutdown_trigger: trio.Event,
    shutdown_timeout: float,
    drain: Callable[[], Awaitable[None]],
    guard: GuardSettings | None = None,
    limits: ConnectionLimits = ConnectionLimits(),
    wrap: Callable[[ASGIApp], ASGIApp] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on Hypercorn until ``shutdown_trigger``, then drain.

    Args:
        app: The app; it is served behind :class:`GuardedApp`.
        host: Address to listen on (an IPv6 one without brackets).
        port: TCP port; 0 picks a free one.
        shutdown_trigger: Set it to drain and stop.
        shutdown_timeout: Seconds from the trigger until everything still
            running is cancelled.
        drain: Called once the trigger is set, before Hypercorn is told to
            stop; it should refuse new work and close the app's streams.
        guard: The browser-facing rules; None: those of a server bound to
            ``host`` (:meth:`GuardSettings.for_bind`).
        limits: Keep-alive, connection cap, WebSocket message size.
        wrap: Wraps the guarded app once more (request ids, access log,
            metrics: :class:`~._observe.ObservedApp`), so it sees the
            guard's refusals too.
        task_status: Receives the bound URLs (``["http://127.0.0.1:8321"]``)
            once the socket listens.
    """
    config = hypercorn.Config()
    bracketed = f"[{host}]" if ":" in host else host
    config.bind = [f"{bracketed}:{port}"]
    # ``drain`` closes streams and commands before Hypercorn is told to stop;
    # what is left are idle keep-alive connections and in-flight requests,
    # for which Hypercorn would otherwise wait the whole grace period.
    config.graceful_timeout = min(0.5, shutdown_timeout)
    # Hypercorn's own errors (an app that failed, a protocol error) go to
    # the process's logging (``docs/operations.md``); its access log stays
    # off: ``ObservedApp`` writes one with the route and request id.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = limits.keep_alive_timeout
    config.websocket_max_message_size = limits.max_websocket_message
    _bound_websocket_buffer()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = max(1, min(limits.max_connections, soft - SPARE_FILES))
    guarded: ASGIApp = GuardedApp(app, guard or GuardSettings.for_bind(host))
    if wrap is not None:
        guarded = wrap(guarded)
    stop_serving = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(
                _serve_hypercorn,
                guarded,
                config,
                cap,
                limits,
                shutdown_trigger=stop_serving.wait,
            )
        )
        task_status.started(binds)
        await shutdown_trigger.wait()
        # Graceful shutdown: a trigger plus a deadline on the nursery.
        nursery.cancel_scope.deadline = trio.current_time() + shutdown_timeout
        await drain()
        stop_serving.set()


async def _serve_hypercorn(
    app: ASGIApp,
    config: hypercorn.Config,
    max_connections: int,
    limits: ConnectionLimits,
    *,
    shutdown_trigger: Callable[[], Awaitable[object]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Hypercorn's ``trio.serve`` for plain HTTP, with a connection cap.

    Hypercorn builds its own listeners and has no hook for one, so this is
    its ``worker_serve`` (lifespan, listeners, graceful stop) without TLS,
    QUIC and worker recycling, with a connection cap (``max_connections``)
    and a lingering close of every connection (:class:`_LingeringStream`).
    """
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    state: dict[str, Any] = {}
    lifespan = Lifespan(wrapped, config, state)
    context = WorkerContext(None)
    counts = {"open": 0, "refusing": 0}

    async def handle(stream: trio.SocketStream) -> None:
        if counts["open"] >= max_connections:
            await _refuse_connection(stream, counts, limits)
            return
        counts["open"] += 1
        lingering = _LingeringStream(stream)
        try:
            # Typed for TLS streams; it serves plain ones too.
            server = TCPServer(
                wrapped,
                config,
                context,
                ConnectionState(state.copy()),
                lingering,  # type: ignore[arg-type]
            )
            await server.run()
        finally:
            try:
                await _close_lingering(
                    stream,
                    limits,
                    peer_closed=lingering.peer_closed,
                )
            finally:
                counts["open"] -= 1

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as server_nursery:
            sockets = config.create_sockets()
            listeners = []
            binds = []
            for sock in sockets.insecure_sockets:
                sock.listen(config.backlog)
                listeners.append(
                    trio.SocketListener(trio.socket.from_stdlib_socket(sock))
                )
                binds.append(
                    f"http://{repr_socket_addr(sock.family, sock.getsockname())}"
                )
            task_status.started(binds)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(
                        partial(
                            trio.serve_listeners,
                            handle,
                            listeners,
                            handler_nursery=server_nursery,
                        )
                    )
                    await shutdown_trigger()
                    nursery.cancel_scope.cancel()
            finally:
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = (
                    trio.current_time() + config.graceful_timeout
                )
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


async def _refuse_connection(
    stream: trio.SocketStream, counts: dict[str, int], limits: ConnectionLimits
) -> None:
    """Answer one connection over the cap with a 503 and close it.

    The request head is read first (at most 16 KiB, one second), and the
    close lingers (:func:`_close_lingering`), so the peer is not reset
    before it reads the answer.
    """
    if counts["refusing"] >= _MAX_REFUSING:
        with trio.CancelScope(shield=True):
            await stream.aclose()
        return
    counts["refusing"] += 1
    try:
        with trio.move_on_after(1.0):
            seen = b""
            while b"\r\n\r\n" not in seen and len(seen) < 16384:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                seen += chunk
        with trio.move_on_after(1.0):
            await stream.send_all(
                refusal_bytes(
                    503,
                    "Service Unavailable",
                    "too_many_connections",
                    "the server has too many open connections; retry later",
                )
            )
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        try:
            await _close_lingering(stream, limits)
        finally:
            counts["refusing"] -= 1


class _LingeringStream(trio.abc.HalfCloseableStream):
    """The client connection as Hypercorn's ``TCPServer`` sees it.

    It passes everything through to ``stream`` except the close: when
    Hypercorn closes it, it is only marked closed (later calls raise
    :class:`trio.ClosedResourceError`) and any task blocked on it is woken
    with that error, as a real close would; the socket stays open for
    :func:`_close_lingering`, called once ``TCPServer.run`` returns.

    It has no ``do_handshake``: Hypercorn tells a plain stream from a TLS
    one by that ``AttributeError``.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._closed = False
        self.peer_closed = False
        """Whether the peer's EOF has been read (nothing left to linger for)."""

    @property
    def socket(self) -> trio.socket.SocketType:
        """The socket (Hypercorn reads the addresses from it)."""
        return self._stream.socket

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the connection is closed")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check_open()
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        self._check_open()
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        self._check_open()
        await self._stream.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check_open()
        data = await self._stream.receive_some(max_bytes)
        if not data:
            self.peer_closed = True
        return bytes(data)

    async def aclose(self) -> None:
        if not self._closed:
            # Mark, then wake, with no checkpoint between (trio's recipe).
            self._closed = True
            trio.lowlevel.notify_closing(self._stream.socket)
        await trio.lowlevel.checkpoint()


async def _close_lingering(
    stream: trio.SocketStream, limits: ConnectionLimits, *, peer_closed: bool = False
) -> None:
    """Close ``stream`` without resetting the peer (a lingering close).

    Sends EOF, then reads and discards what the peer still sends until it
    closes its side, ``limits.linger_timeout`` seconds pass or
    ``limits.linger_bytes`` bytes were read; then closes the socket.

    Args:
        stream: The connection; nothing else may be using it.
        limits: The lingering bounds.
        peer_closed: The peer's EOF was read already: close at once.

    Cancellation:
        Cuts the lingering short; the socket is closed all the same.
    """
    try:
        if not peer_closed:
            with trio.move_on_after(limits.linger_timeout):
                await stream.send_eof()
                left = limits.linger_bytes
                while left > 0:
                    data = await stream.receive_some(min(left, 16384))
                    if not data:
                        break
                    left -= len(data)
    except (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError):
        pass  # reset or closed by the peer: nothing left to protect
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


def _bound_websocket_buffer() -> None:
    """Make Hypercorn's WebSocket message buffer check before it grows.

    Hypercorn (0.17, 0.18) appends a data frame's payload to the message
    buffer and only then compares the length with
    ``websocket_max_message_size``; after it sends 1009 it keeps appending
    whatever the peer still sends, so a peer that ignores the close grows
    the buffer without bound. This replaces the buffer class (once, for
    the process) with one that drops the message instead.
    """
    if getattr(ws_stream.WebsocketBuffer, "_yoi_bounded", False):
        return

    class BoundedWebsocketBuffer(ws_stream.WebsocketBuffer):
        _yoi_bounded = True

        def extend(self, event: Any) -> None:
            if self.length + len(event.data) > self.max_length:
                self.clear()
                raise ws_stream.FrameTooLargeError()
            super().extend(event)

    ws_stream.WebsocketBuffer = BoundedWebsocketBuffer  # type: ignore[misc]


async def run_until_signal(
    serve: ServeFunction, on_listening: Callable[[list[str]], Any]
) -> None:
    """Run ``serve`` until SIGINT or SIGTERM sets its shutdown trigger.

    Args:
        serve: A ``serve_*`` function taking ``shutdown_trigger`` and
            ``task_status`` (the rest bound with :func:`functools.partial`).
        on_listening: Called with the bound URLs once ``serve`` listens.
    """
    shutdown = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

        async def watch_signals() -> None:
            async for _ in signals:
                shutdown.set()
                return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_signals)
            binds = await nursery.start(partial(serve, shutdown_trigger=shutdown))
            on_listening(binds)
