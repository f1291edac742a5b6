"""``RemoteSubscription`` against a scripted WebSocket server on loopback:
how it acts on each close code (``docs/protocol.md``, the close-code table),
frames and heartbeats, and its reconnect budget. The protocol's rules alone
are tested without sockets in ``test_stream_protocol.py``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio
import trio_websocket

from yoi_runtime import (
    Event,
    InternalError,
    RuntimeUnavailableError,
    WorkerNotFoundError,
)
from yoi_runtime.client import RemoteSubscription
from yoi_runtime.client._subscription import StreamTarget

PATH = "/v1/workers/w-1/events"

Script = Callable[[int, trio_websocket.WebSocketConnection], Awaitable[None]]


def item(seq: int, runtime_id: str = "rt-test") -> dict[str, object]:
    return {
        "seq": seq,
        "cursor": seq + 10,
        "type": "turn.started",
        "runtime_id": runtime_id,
        "worker_id": "w-1",
        "at": "2026-11-30T12:00:00+00:00",
        "data": {"turn_id": "t-1", "history_omitted": 0},
    }


def frame(*seqs: int) -> str:
    """One item, or a batch of several."""
    if len(seqs) == 1:
        return json.dumps(item(seqs[0]))
    return json.dumps([item(seq) for seq in seqs])


HEARTBEAT = json.dumps({"type": "stream.heartbeat", "position": 0})


async def position_never_asked() -> int:
    raise AssertionError("the subscriptions here start at after=0")


async def scripted(
    nursery: trio.Nursery, script: Script, *, reconnect_timeout: float = 5.0
) -> tuple[RemoteSubscription, list[str]]:
    """Serve ``script(n, ws)`` for the n-th connection; return a subscription
    to it (not entered) and the request targets it records."""
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
        path=PATH,
        headers=[],
        runtime_id="rt-test",
        worker_stream=True,
        current_position=position_never_asked,
        connect_timeout=1.0,
        reconnect_timeout=reconnect_timeout,
    )
    return RemoteSubscription(target, 0), targets


def seqs(items: list[object]) -> list[int]:
    return [entry.seq for entry in items if isinstance(entry, Event)]


async def test_1011_raises_the_error_its_reason_names_without_retrying(
    nursery: trio.Nursery,
) -> None:
    async def script(n: int, ws: trio_websocket.WebSocketConnection) -> None:
        await ws.send_message(frame(1, 2))
        await ws.aclose(1011, "worker_not_found")

    subscription, targets = await scripted(nursery, script)
    with trio.fail_after(5):
        async with subscription as events:
            assert seqs(await events.receive_batch()) == [1, 2]
            with pytest.raises(WorkerNotFoundError) as raised:
                await events.receive()
            assert raised.value.worker_id == "w-1"
            assert "broke for good (worker_not_found)" in raised.value.message
            with pytest.raises(WorkerNotFoundError):
                await events.receive()
            assert events.position == 2
    assert targets == [PATH + "?after=0"]


async def test_1011_with_an_unknown_code_is_an_internal_error(
    nursery: trio.Nursery,
) -> None:
    async def script(n: int, ws: trio_websocket.WebSocketConnection) -> None:
        await ws.aclose(1011, "something_new")

    subscription, targets = await scripted(nursery, script)
    with trio.fail_after(5):
        async with subscription as events:
            with pytest.raises(InternalError, match="something_new"):
                await events.receive()
    assert len(targets) == 1


async def test_1000_ends_the_stream_after_a_batch(nursery: trio.Nursery) -> None:
    async def script(n: int, ws: trio_websocket.WebSocketConnection) -> None:
        await ws.send_message(HEARTBEAT)
        await ws.send_message(frame(1, 2, 3))
        await ws.send_message(HEARTBEAT)
        await ws.send_message(frame(4))
        await ws.aclose(1000, "stream ended")

    subscription, targets = await scripted(nursery, script)
    with trio.fail_after(5):
        async with subscription as events:
            first = await events.receive_batch(2)
            rest = [entry async for entry in events]
    assert seqs(first) == [1, 2]
    assert seqs(rest) == [3, 4]
    assert len(targets) == 1


@pytest.mark.parametrize("code", [1001, 4008, 4401])
async def test_other_codes_resume_after_the_last_item(
    nursery: trio.Nursery, code: int
) -> None:
    async def script(n: int, ws: trio_websocket.WebSocketConnection) -> None:
        if n == 1:
            await ws.send_message(frame(1, 2))
            await ws.aclose(code)
        else:
            await ws.send_message(frame(3))
            await ws.aclose(1000)

    subscription, targets = await scripted(nursery, script)
    with trio.fail_after(5):
        async with subscription as events:
            one = await events.receive()
            rest = [entry async for entry in events]
    assert seqs([one, *rest]) == [1, 2, 3]
    assert targets == [PATH + "?after=0", PATH + "?after=2"]


async def test_a_quiet_connection_that_drops_gets_a_fresh_budget(
    nursery: trio.Nursery,
) -> None:
    async def script(n: int, ws: trio_websocket.WebSocketConnection) -> None:
        if n == 1:
            await ws.send_message(frame(1))
        elif n == 2:
            await trio.sleep(0.6)  # quiet for longer than reconnect_timeout
        else:
            await ws.send_message(frame(2))
            await ws.aclose(1000)
        await ws.aclose(1001)

    subscription, targets = await scripted(nursery, script, reconnect_timeout=0.3)
    with trio.fail_after(5):
        async with subscription as events:
            items = [entry async for entry in events]
    assert seqs(items) == [1, 2]
    assert targets == [PATH + "?after=0", PATH + "?after=1", PATH + "?after=1"]


async def test_a_process_that_accepts_and_drops_exhausts_the_budget(
    nursery: trio.Nursery,
) -> None:
    async def script(n: int, ws: trio_websocket.WebSocketConnection) -> None:
        if n == 1:
            await ws.send_message(frame(1))
        await ws.aclose(1001)

    subscription, targets = await scripted(nursery, script, reconnect_timeout=0.5)
    with trio.fail_after(5):
        async with subscription as events:
            assert seqs([await events.receive()]) == [1]
            started = trio.current_time()
            with pytest.raises(RuntimeUnavailableError, match="within 0.5 s"):
                await events.receive()
            assert 0.45 <= trio.current_time() - started < 1.5
    assert len(targets) >= 3
    assert set(targets[1:]) == {PATH + "?after=1"}


async def test_a_frame_from_another_runtime_breaks_the_stream(
    nursery: trio.Nursery,
) -> None:
    async def script(n: int, ws: trio_websocket.WebSocketConnection) -> None:
        await ws.send_message(frame(1))
        await ws.send_message(json.dumps(item(2, runtime_id="rt-new")))
        await trio.sleep_forever()

    subscription, _ = await scripted(nursery, script)
    with trio.fail_after(5):
        async with subscription as events:
            assert seqs([await events.receive()]) == [1]
            with pytest.raises(RuntimeUnavailableError, match="was replaced"):
                await events.receive()
            with pytest.raises(RuntimeUnavailableError):
                await events.receive()


async def test_a_cancelled_receive_loses_nothing(nursery: trio.Nursery) -> None:
    release = trio.Event()

    async def script(n: int, ws: trio_websocket.WebSocketConnection) -> None:
        await release.wait()
        await ws.send_message(frame(1, 2))
        await ws.aclose(1000)

    subscription, _ = await scripted(nursery, script)
    with trio.fail_after(5):
        async with subscription as events:
            with trio.move_on_after(0.05) as waited:
                await events.receive()
            assert waited.cancelled_caught
            release.set()
            assert seqs([entry async for entry in events]) == [1, 2]
