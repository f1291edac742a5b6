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
from pathlib import Path

import attrs
import pytest
import trio
from conformance.support import (
    CONFIG,
    api_operations,
    events_until,
    open_runtime_process,
    types,
)

from yoi_runtime import (
    Event,
    InternalError,
    InvalidInputError,
    OperationUnsupportedError,
    RuntimeAPI,
    RuntimeUnavailableError,
    TurnCancelledData,
    UnauthorizedError,
    WorkerBusyError,
    WorkerExistsError,
    WorkerNotFoundError,
    WorkerStatus,
    WorkerStatusData,
    WorkerStoppedError,
    YoiRuntimeError,
    _ask,
)
from yoi_runtime.client import RuntimeClient, open_runtime_client
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
                    assert tail[0].data == TurnCancelledData(turn.turn_id, "shutdown")
                    # The Runtime stream closes with 1001: the client tries to
                    # reconnect (the process might come back), then gives up.
                    seen = await events_until(everything, "worker.stopped")
                    assert types(seen)[-2:] == ["turn.cancelled", "worker.stopped"]
                    with pytest.raises(RuntimeUnavailableError):
                        await everything.receive()
                await server.process.wait()
    assert server.process.returncode == 0


async def test_sigterm_exits_promptly_despite_an_idle_client(tmp_path: Path) -> None:
    # The idle connection must not hold the process until the shutdown
    # deadline: a deadline far beyond what a prompt exit takes, even on a
    # loaded machine, tells the two apart.
    config = config_with(tmp_path, shutdown_timeout=15.0)
    with trio.fail_after(30):
        async with open_runtime_process(tmp_path, config=config) as server:
            async with open_runtime_client(server.url, token=server.token) as client:
                await client.summary()  # leaves a keep-alive connection idle
                started = trio.current_time()
                server.process.send_signal(signal.SIGTERM)
                await server.process.wait()
                assert trio.current_time() - started < 7.5
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
                            if item.data == WorkerStatusData(
                                WorkerStatus.IDLE, WorkerStatus.RUNNING
                            ):
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


def test_the_client_has_the_api_signatures() -> None:
    """Each of the client's operations is built from the Runtime API's
    signature (``RuntimeAPI``), so no argument can be missing from it."""
    names = api_operations()
    assert {"create_worker", "send_input", "transcript", "usage"} <= set(names)
    for name in names:
        client_side = inspect.signature(getattr(RuntimeClient, name))
        assert client_side == inspect.signature(getattr(RuntimeAPI, name)), name
    assert RuntimeClient.ask is _ask.ask
    assert RuntimeClient.open_turn is _ask.open_turn
