"""Serving a Quart-Trio app on Hypercorn, shared by both commands.

``yoi-runtime`` and ``yoi-workspace`` parse ``--bind HOST:PORT`` alike
(:func:`parse_bind`), serve their app with the same graceful shutdown (a
trigger plus a deadline on the server nursery, :func:`serve_app`) and stop on
SIGINT or SIGTERM (:func:`run_until_signal`). Only what draining means
differs: each passes its own ``drain``.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

import hypercorn
import hypercorn.trio
import trio
from quart_trio import QuartTrio

__all__ = ["is_loopback", "parse_bind", "run_until_signal", "serve_app"]


class _Server(Protocol):
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


async def serve_app(
    app: QuartTrio,
    host: str,
    port: int,
    *,
    shutdown_trigger: trio.Event,
    shutdown_timeout: float,
    drain: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on Hypercorn until ``shutdown_trigger``, then drain.

    Args:
        app: The app.
        host: Address to listen on (an IPv6 one without brackets).
        port: TCP port; 0 picks a free one.
        shutdown_trigger: Set it to drain and stop.
        shutdown_timeout: Seconds from the trigger until everything still
            running is cancelled.
        drain: Called once the trigger is set, before Hypercorn is told to
            stop; it should refuse new work and close the app's streams.
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
    config.errorlog = None
    stop_serving = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(
                hypercorn.trio.serve,
                app,
                config,
                shutdown_trigger=stop_serving.wait,
            )
        )
        task_status.started(binds)
        await shutdown_trigger.wait()
        # Graceful shutdown: a trigger plus a deadline on the nursery.
        nursery.cancel_scope.deadline = trio.current_time() + shutdown_timeout
        await drain()
        stop_serving.set()


async def run_until_signal(
    serve: _Server, on_listening: Callable[[list[str]], Any]
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
