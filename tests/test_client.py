"""What only the network client has: auth, an unreachable or dying process,
dropped connections, and the one table that maps error envelopes.

The shared behaviour (every command and stream) is in ``tests/conformance``.
"""

from __future__ import annotations

import datetime
import inspect
import json
import signal
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import attrs
import pytest
import trio
import trio_websocket
from conformance.support import CONFIG, events_until, open_runtime_process, types

from yoi_runtime import (
    Event,
    InternalError,
    InvalidInputError,
    OperationUnsupportedError,
    RuntimeAPI,
    RuntimeUnavailableError,
    UnauthorizedError,
    WorkerBusyError,
    WorkerExistsError,
    WorkerNotFoundError,
    WorkerStoppedError,
    YoiRuntimeError,
    _ask,
)
from yoi_runtime.client import RemoteSubscription, RuntimeClient, open_runtime_client
from yoi_runtime.client._subscription import StreamTarget
from yoi_runtime.client._translate import error_from_response


def test_client_namespace() -> None:
    import yoi_runtime.client

    public = {name for name in vars(yoi_runtime.client) if not name.startswith("_")}
    assert public == {"RemoteSubscription", "RuntimeClient", "open_runtime_client"}


# -- the error table, without sockets ------------------------------------------


def envelope(code: str, message: str = "it went wrong", **details: object) -> bytes:
    error = {"code": code, "message": message, "details": details}
    return json.dumps({"error": error}).encode()


BUSY_AT = "2026-11-22T02:46:51.123456+00:00"

ERRORS: list[tuple[int, bytes, type[YoiRuntimeError], dict[str, object]]] = [
    (
        409,
        envelope("worker_busy", worker_id="w-1", turn_id="t-2", started_at=BUSY_AT),
        WorkerBusyError,
        {
            "worker_id": "w-1",
            "turn_id": "t-2",
            "started_at": datetime.datetime.fromisoformat(BUSY_AT),
        },
    ),
    (
        409,
        envelope("worker_stopped", worker_id="w-1", status="failed"),
        WorkerStoppedError,
        {"worker_id": "w-1", "status": "failed"},
    ),
    (404, envelope("worker_not_found", worker_id="w-1"), WorkerNotFoundError, {}),
    (409, envelope("idempotency_conflict", worker_id="w-1"), WorkerExistsError, {}),
    (
        422,
        envelope("invalid_input", path="$.text"),
        InvalidInputError,
        {"path": "$.text"},
    ),
    (400, envelope("invalid_json"), InvalidInputError, {"path": None}),
    (413, envelope("payload_too_large"), InvalidInputError, {"path": None}),
    (501, envelope("operation_unsupported"), OperationUnsupportedError, {}),
    (503, envelope("runtime_unavailable"), RuntimeUnavailableError, {}),
    (401, envelope("unauthorized"), UnauthorizedError, {}),
    (404, envelope("not_found"), InternalError, {}),
    (405, envelope("method_not_allowed"), InternalError, {}),
    (500, envelope("internal_error"), InternalError, {}),
    (418, envelope("brand_new_code"), InternalError, {}),
    # No envelope (a proxy's page): the status decides.
    (503, b"<html>Service Unavailable</html>", RuntimeUnavailableError, {}),
    (401, b"", UnauthorizedError, {}),
    (500, b"not json", InternalError, {}),
    # An envelope whose details lack what the class needs.
    (409, envelope("worker_busy", worker_id="w-1"), InternalError, {}),
]


@pytest.mark.parametrize(("status", "body", "cls", "attributes"), ERRORS)
def test_error_table(
    status: int,
    body: bytes,
    cls: type[YoiRuntimeError],
    attributes: dict[str, object],
) -> None:
    error = error_from_response(status, body)
    assert type(error) is cls
    for name, value in attributes.items():
        assert getattr(error, name) == value
    if b"it went wrong" in body and cls is not InternalError:
        assert error.message == "it went wrong"


# -- a real process --------------------------------------------------------------


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def config_with(directory: Path, **settings: float) -> Path:
    """Write ``runtime.toml`` with more top-level settings; return its path."""
    lines = [f"{key} = {value}" for key, value in settings.items()]
    path = directory / "runtime.toml"
    path.write_text("\n".join([*lines, CONFIG.read_text()]))
    return path


async def test_token_is_checked_at_open_and_never_shown(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with open_runtime_process(tmp_path) as server:
            for token in ("wrong-token-0123456789", None):
                with pytest.raises(UnauthorizedError) as caught:
                    async with open_runtime_client(server.url, token=token):
                        pass
                assert "wrong-token" not in str(caught.value)
            async with open_runtime_client(server.url, token=server.token) as client:
                assert client.runtime_id.startswith("rt-")
                assert server.token not in repr(client)
                subscription = client.subscribe()
                assert server.token not in repr(subscription)
                with pytest.raises(WorkerNotFoundError) as missing:
                    await client.get_worker("w-0000000000000000")
                assert server.token not in str(missing.value)
                assert server.token not in repr(missing.value)
    assert server.process.returncode == 0


async def test_unreachable_process_fails_fast() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with trio.fail_after(5), pytest.raises(RuntimeUnavailableError):
        async with open_runtime_client(f"http://127.0.0.1:{port}", token="t"):
            pass


@pytest.mark.parametrize("url", ["127.0.0.1:8765", "ftp://host:1", "http://"])
async def test_malformed_base_url(url: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        async with open_runtime_client(url):
            pass
    assert caught.value.path == "base_url"


async def test_killed_process_is_unavailable_within_bounded_time(
    tmp_path: Path,
) -> None:
    with trio.fail_after(20):
        async with open_runtime_process(tmp_path) as server:
            async with open_runtime_client(
                server.url, token=server.token, reconnect_timeout=1.0
            ) as client:
                worker = await client.create_worker()
                async with client.subscribe(worker.worker_id, after=0) as events:
                    assert (await events.receive()).type == "worker.created"
                    server.process.kill()
                    await server.process.wait()
                    with trio.fail_after(5), pytest.raises(RuntimeUnavailableError):
                        await client.get_worker(worker.worker_id)
                    with trio.fail_after(5), pytest.raises(RuntimeUnavailableError):
                        await client.send_input(worker.worker_id, "anyone?")
                    started = trio.current_time()
                    with trio.fail_after(5), pytest.raises(RuntimeUnavailableError):
                        await events.receive()
                    # It retried for reconnect_timeout, then gave up.
                    assert 0.9 <= trio.current_time() - started < 3.0
    assert server.process.returncode == -signal.SIGKILL


async def test_shutdown_ends_worker_streams_and_runtime_stream_gives_up(
    tmp_path: Path,
) -> None:
    # shutdown_timeout keeps the test short: the process waits that long for
    # the client's idle keep-alive connection (see the xfail test below).
    config = config_with(tmp_path, shutdown_timeout=1.0)
    with trio.fail_after(20):
        async with open_runtime_process(tmp_path, config=config) as server:
            async with open_runtime_client(
                server.url, token=server.token, reconnect_timeout=1.0
            ) as client:
                worker = await client.create_worker(engine="hang")
                async with (
                    client.subscribe(worker.worker_id) as mine,
                    client.subscribe() as everything,
                ):
                    turn = await client.send_input(worker.worker_id, "hold")
                    await events_until(mine, "turn.text_delta")
                    server.process.send_signal(signal.SIGTERM)
                    # The Worker's stream ends (1000) after the shutdown's events.
                    tail = [item async for item in mine]
                    assert types(tail) == ["turn.cancelled", "worker.stopped"]
                    assert tail[0].data == {
                        "turn_id": turn.turn_id,
                        "reason": "shutdown",
                    }
                    # The Runtime stream closes with 1001: the client tries to
                    # reconnect (the process might come back), then gives up.
                    seen = await events_until(everything, "worker.stopped")
                    assert types(seen)[-2:] == ["turn.cancelled", "worker.stopped"]
                    with pytest.raises(RuntimeUnavailableError):
                        await everything.receive()
                await server.process.wait()
    assert server.process.returncode == 0


async def test_sigterm_exits_promptly_despite_an_idle_client(tmp_path: Path) -> None:
    config = config_with(tmp_path, shutdown_timeout=2.0)
    with trio.fail_after(20):
        async with open_runtime_process(tmp_path, config=config) as server:
            async with open_runtime_client(server.url, token=server.token) as client:
                await client.summary()  # leaves a keep-alive connection idle
                started = trio.current_time()
                server.process.send_signal(signal.SIGTERM)
                await server.process.wait()
                assert trio.current_time() - started < 1.0
    assert server.process.returncode == 0


async def test_heartbeats_are_swallowed(tmp_path: Path) -> None:
    config = config_with(tmp_path, heartbeat_interval=0.05)
    with trio.fail_after(20):
        async with open_runtime_process(tmp_path, config=config) as server:
            async with open_runtime_client(server.url, token=server.token) as client:
                worker = await client.create_worker()
                async with client.subscribe(worker.worker_id) as events:
                    with trio.move_on_after(0.5):
                        item = await events.receive()
                        raise AssertionError(f"nothing happened, yet got {item}")
                    await client.send_input(worker.worker_id, "hi")
                    first = await events.receive()
                    assert isinstance(first, Event)
                    assert (first.type, first.seq) == ("turn.accepted", 2)


@attrs.define(eq=False)
class Proxy:
    """A TCP relay the test can cut, like a network that drops connections.

    Attributes:
        target_port: Where the runtime process listens.
        relayed: How many connections went through.
    """

    target_port: int
    relayed: int = 0
    _scopes: set[trio.CancelScope] = attrs.field(factory=set)

    async def serve(self, *, task_status: trio.TaskStatus[int]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._relay, listeners)

    def cut(self) -> None:
        """Close every relayed connection at once (no WebSocket close frame)."""
        for scope in self._scopes:
            scope.cancel()

    async def _relay(self, downstream: trio.SocketStream) -> None:
        self.relayed += 1
        async with downstream:
            upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
            async with upstream, trio.open_nursery() as nursery:
                self._scopes.add(nursery.cancel_scope)
                nursery.start_soon(_pump, downstream, upstream, nursery.cancel_scope)
                nursery.start_soon(_pump, upstream, downstream, nursery.cancel_scope)
            self._scopes.discard(nursery.cancel_scope)


async def _pump(
    source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope
) -> None:
    try:
        async for chunk in source:
            await sink.send_all(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()


async def test_subscription_resumes_after_dropped_connections(tmp_path: Path) -> None:
    """Cut the TCP connections under a live subscription after every delta:
    the subscription reconnects with its cursor, and the caller sees each
    event exactly once, in order."""
    turns = 4
    with trio.fail_after(30):
        async with (
            open_runtime_process(tmp_path) as server,
            trio.open_nursery() as nursery,
        ):
            proxy = Proxy(port_of(server.url))
            port = await nursery.start(proxy.serve)
            async with open_runtime_client(
                f"http://127.0.0.1:{port}", token=server.token
            ) as client:
                worker = await client.create_worker(engine="slow")
                seen: list[Event] = []
                cuts = 0
                async with client.subscribe(worker.worker_id, after=0) as events:
                    for turn in range(turns):
                        await client.send_input(worker.worker_id, f"turn {turn}")
                        while True:
                            item = await events.receive()
                            assert isinstance(item, Event)
                            seen.append(item)
                            if item.type == "turn.text_delta":
                                proxy.cut()
                                cuts += 1
                            if item.data == {"status": "idle", "previous": "running"}:
                                break
            nursery.cancel_scope.cancel()
    per_turn = [
        "turn.accepted", "worker.status", "turn.started",
        *["turn.text_delta"] * 3, "turn.completed", "worker.status",
    ]  # fmt: skip
    assert types(seen) == ["worker.created", *per_turn * turns]
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    assert cuts == 3 * turns
    # One connection for commands and one per (re)connected stream, at least.
    assert proxy.relayed > cuts
    assert server.process.returncode == 0


# -- the reconnect budget, against a scripted WebSocket server -------------------


def event_frame(seq: int) -> str:
    return json.dumps(
        {
            "seq": seq,
            "cursor": seq,
            "type": "turn.started",
            "runtime_id": "rt-test",
            "worker_id": "w-1",
            "at": BUSY_AT,
            "data": {"turn_id": "t-1"},
        }
    )


async def position_never_asked() -> int:
    raise AssertionError("the subscriptions here start at after=0")


async def scripted_stream(
    nursery: trio.Nursery,
    script: Callable[[int, trio_websocket.WebSocketConnection], Awaitable[None]],
    *,
    reconnect_timeout: float,
) -> tuple[RemoteSubscription, list[str]]:
    """Serve ``script(n, ws)`` for the n-th connection; return a subscription
    to it (not entered) and the list of request targets it will record."""
    targets: list[str] = []

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        targets.append(request.path)
        ws = await request.accept()
        await script(len(targets), ws)

    server = await nursery.start(
        partial(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None)
    )
    target = StreamTarget(
        host="127.0.0.1",
        port=server.port,
        tls=False,
        path="/v1/workers/w-1/events",
        headers=[],
        runtime_id="rt-test",
        worker_stream=True,
        current_position=position_never_asked,
        connect_timeout=1.0,
        reconnect_timeout=reconnect_timeout,
    )
    return RemoteSubscription(target, 0), targets


async def test_a_quiet_connection_that_drops_gets_a_fresh_budget(
    nursery: trio.Nursery,
) -> None:
    async def script(n: int, ws: trio_websocket.WebSocketConnection) -> None:
        if n == 1:
            await ws.send_message(event_frame(1))
        elif n == 2:
            await trio.sleep(0.6)  # quiet for longer than reconnect_timeout
        else:
            await ws.send_message(event_frame(2))
            await ws.aclose(1000)
        await ws.aclose(4008)

    subscription, targets = await scripted_stream(
        nursery, script, reconnect_timeout=0.3
    )
    with trio.fail_after(5):
        async with subscription as events:
            items = [item async for item in events]
    assert [item.seq for item in items if isinstance(item, Event)] == [1, 2]
    path = "/v1/workers/w-1/events?after="
    assert targets == [path + "0", path + "1", path + "1"]


async def test_a_process_that_accepts_and_drops_exhausts_the_budget(
    nursery: trio.Nursery,
) -> None:
    async def script(n: int, ws: trio_websocket.WebSocketConnection) -> None:
        if n == 1:
            await ws.send_message(event_frame(1))
        await ws.aclose(1011)

    subscription, targets = await scripted_stream(
        nursery, script, reconnect_timeout=0.5
    )
    with trio.fail_after(5):
        async with subscription as events:
            first = await events.receive()
            started = trio.current_time()
            with pytest.raises(RuntimeUnavailableError):
                await events.receive()
            assert 0.45 <= trio.current_time() - started < 1.5
    assert isinstance(first, Event)
    assert first.seq == 1
    assert len(targets) >= 3
    assert set(targets[1:]) == {"/v1/workers/w-1/events?after=1"}


def test_the_client_has_the_api_signatures() -> None:
    """Each of the client's operations is built from the Runtime API's
    signature (``RuntimeAPI``), so no argument can be missing from it."""
    for name in (
        "create_worker",
        "send_input",
        "cancel",
        "stop",
        "get_worker",
        "list_workers",
        "transcript",
        "summary",
        "diagnostics",
    ):
        client_side = inspect.signature(getattr(RuntimeClient, name))
        assert client_side == inspect.signature(getattr(RuntimeAPI, name)), name
    assert RuntimeClient.ask is _ask.ask
    assert RuntimeClient.open_turn is _ask.open_turn
