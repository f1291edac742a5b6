"""The runtime process's event streams as ``text/event-stream``, against
the real command (``docs/protocol.md``, "Observation (SSE)"); then the
stream pump and the SSE text without sockets."""

from __future__ import annotations

import datetime
import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import httpx
import pytest
import trio
from sse_support import get_sse_refusal, open_sse

from yoi_runtime import Event, EventType, Gap, TurnTextDeltaData
from yoi_runtime._wire import item_to_json
from yoi_runtime.serving._sse import item_cursor, sse_text
from yoi_runtime.serving._streams import (
    Closing,
    Heartbeat,
    Items,
    StreamControl,
    StreamPump,
    StreamSettings,
    wants_event_stream,
)
from yoi_runtime.testing import ServerProcess, open_runtime_process

CONFIG = """\
default_engine = "slow"
enable_test_engines = true
heartbeat_interval = 0.2

[limits]
worker_event_retention = 4

[engines.slow]
kind = "scripted"
deltas = ["a ", "b ", "c "]
delay = 0.01
"""

#: The events of a Worker created then asked once: created, accepted,
#: running, started, three deltas, completed, idle.
TURN_EVENTS = 9


@asynccontextmanager
async def served(
    tmp_path: Path, *args: str
) -> AsyncIterator[tuple[ServerProcess, httpx.AsyncClient]]:
    config = tmp_path / "runtime.toml"
    config.write_text(CONFIG)
    async with open_runtime_process("--config", str(config), *args) as process:
        async with httpx.AsyncClient(base_url=process.url) as http:
            yield process, http


async def create_and_ask(http: httpx.AsyncClient) -> str:
    created = await http.post("/v1/workers", json={})
    worker_id: str = created.json()["worker"]["worker_id"]
    turn = await http.post(f"/v1/workers/{worker_id}/input", json={"text": "hi"})
    assert turn.status_code == 202
    return worker_id


async def test_events_carry_their_cursor_as_id(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with (
            served(tmp_path) as (process, http),
            open_sse(process.url, "/v1/events") as sse,
        ):
            worker_id = await create_and_ask(http)
            events = await sse.events(TURN_EVENTS)
            assert [e.id for e in events] == [str(n) for n in range(1, 10)]
            assert [e.data["cursor"] for e in events] == list(range(1, 10))
            assert {e.data["worker_id"] for e in events} == {worker_id}
            assert events[-2].data["type"] == "turn.completed"
            assert events[-1].data == {
                **events[-1].data,
                "type": "worker.status",
                "data": {"status": "idle", "previous": "running"},
            }


async def test_resume_from_last_event_id_then_heartbeats(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with served(tmp_path) as (process, http):
            async with open_sse(process.url, "/v1/events") as sse:
                worker_id = await create_and_ask(http)
                everything = await sse.events(TURN_EVENTS)
            url = f"/v1/workers/{worker_id}/events?after=1"
            # Last-Event-ID wins over ?after= (EventSource keeps the URL).
            async with open_sse(process.url, url, {"Last-Event-ID": "6"}) as sse:
                resumed = await sse.events(3)
                assert [e.id for e in resumed] == ["7", "8", "9"]
                assert [e.data for e in resumed] == [e.data for e in everything[6:]]
                # Nothing else happens: a heartbeat comment comes next.
                assert await sse.next() == "heartbeat position=9"
            async with open_sse(process.url, "/v1/events?after=8") as sse:
                (last,) = await sse.events(1)
                assert (last.id, last.data) == ("9", everything[8].data)


async def test_a_cursor_older_than_retention_gets_a_gap(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with served(tmp_path) as (process, http):
            async with open_sse(process.url, "/v1/events") as sse:
                worker_id = await create_and_ask(http)
                await sse.events(TURN_EVENTS)
            url = f"/v1/workers/{worker_id}/events?after=1"
            async with open_sse(process.url, url) as sse:
                gap = await sse.event()
                assert gap.data["type"] == "stream.gap"
                assert gap.data["after"] == 1
                resume_after = gap.data["resume_after"]
                assert gap.id == str(resume_after)
                rest = await sse.events(TURN_EVENTS - resume_after)
                assert [e.data["seq"] for e in rest] == list(
                    range(resume_after + 1, TURN_EVENTS + 1)
                )
                assert [e.id for e in rest] == [
                    str(n) for n in range(resume_after + 1, TURN_EVENTS + 1)
                ]


async def test_the_end_and_shutdown_are_told(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with (
            served(tmp_path) as (process, http),
            open_sse(process.url, "/v1/events") as all_,
        ):
            worker_id = await create_and_ask(http)
            await all_.events(TURN_EVENTS)
            url = f"/v1/workers/{worker_id}/events?after={TURN_EVENTS}"
            async with open_sse(process.url, url) as sse:
                await http.post(f"/v1/workers/{worker_id}/stop", json={})
                stopped, end = await sse.events(2)
                assert (stopped.id, stopped.data["type"]) == ("10", "worker.stopped")
                assert end.id is None
                assert end.data == {
                    "type": "stream.end",
                    "code": 1000,
                    "reason": "stream ended",
                }
            await all_.until("worker.stopped")
            process.process.send_signal(signal.SIGTERM)
            last = await all_.event()
            assert last.data == {
                "type": "stream.end",
                "code": 1001,
                "reason": "runtime shutting down",
            }
            assert await process.process.wait() == 0


async def test_refusals_are_http_errors(tmp_path: Path) -> None:
    token = "t" * 40
    sse = {"Accept": "text/event-stream"}
    with trio.fail_after(30):
        token_file = str(write(tmp_path, token))
        async with served(tmp_path, "--token-file", token_file) as (process, _):
            auth = {**sse, "Authorization": f"Bearer {token}"}
            cases = [
                ("/v1/events", sse, 401, "unauthorized"),
                ("/v1/workers/w-nobody/events", auth, 404, "worker_not_found"),
                ("/v1/events?after=99", auth, 422, "invalid_input"),
                ("/v1/events", {**auth, "Last-Event-ID": "x"}, 422, "invalid_input"),
                ("/v1/events", {**auth, "Origin": "http://evil.example"}, 403,
                 "origin_not_allowed"),
                ("/v1/events", {**auth, "Host": "evil.example"}, 421,
                 "host_not_allowed"),
                ("/v1/events", {**auth, "Accept": "*/*"}, 400,
                 "websocket_required"),
            ]  # fmt: skip
            for url, headers, status, code in cases:
                got, body = await get_sse_refusal(process.url, url, headers)
                assert (got, body["error"]["code"]) == (status, code), (url, headers)
            _, body = await get_sse_refusal(process.url, "/v1/events", cases[3][1])
            assert body["error"]["details"] == {"path": "Last-Event-ID"}


def write(tmp_path: Path, token: str) -> Path:
    path = tmp_path / "token"
    path.write_text(token)
    return path


# -- without sockets: the pump and the SSE text ------------------------------


@attrs.define
class ChannelSource:
    """An event source fed batches of ints through a channel."""

    receive: trio.MemoryReceiveChannel[list[int]]
    position: int = 0

    async def receive_batch(self, max_items: int = 256) -> list[int]:
        batch = await self.receive.receive()
        self.position = batch[-1]
        return batch


async def test_the_pump_without_sockets(autojump_clock: trio.abc.Clock) -> None:
    send, receive = trio.open_memory_channel[list[int]](1)
    control = StreamControl(StreamSettings(heartbeat_interval=2.0))

    async def nothing_ready() -> None:
        return None

    pump = StreamPump(ChannelSource(receive), control, nothing_ready)
    await send.send([1, 2])
    assert await pump.next() == Items([1, 2])
    assert await pump.next() == Heartbeat(2)
    assert trio.current_time() == 2.0
    await send.aclose()
    assert await pump.next() == Closing(1000, "stream ended")
    with pytest.raises(trio.EndOfChannel):
        await pump.next()


async def test_the_pump_flushes_then_closes_on_drain(
    autojump_clock: trio.abc.Clock,
) -> None:
    send, receive = trio.open_memory_channel[list[int]](0)
    control = StreamControl(StreamSettings(heartbeat_interval=60.0))
    flush = [[3, 4]]

    async def ready() -> list[int] | None:
        return flush.pop() if flush else None

    pump = StreamPump(ChannelSource(receive), control, ready)
    steps: list[object] = []

    async def read_all() -> None:
        with control.counting():
            while not isinstance(step := await pump.next(), Closing):
                steps.append(step)
            steps.append(step)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        await trio.sleep(1)
        control.begin_drain()
        await control.close_streams()
    assert steps == [Items([3, 4]), Closing(1001, "shutting down")]
    assert trio.current_time() == 1.0
    await send.aclose()


def test_sse_text() -> None:
    event = Event(
        seq=3,
        cursor=7,
        type=EventType.TURN_TEXT_DELTA,
        runtime_id="rt",
        worker_id="w",
        at=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        data=TurnTextDeltaData("t", "a\nb"),
    )
    gap = Gap(after=1, resume_after=5, reason="expired")
    text = sse_text(
        Items([gap, event]),
        item_to_json,
        lambda item: item_cursor(item, worker_stream=True),
    )
    assert text == (
        f"id: 5\ndata: {json.dumps(item_to_json(gap))}\n\n"
        f"id: 3\ndata: {json.dumps(item_to_json(event))}\n\n"
    )
    assert "\\n" in text  # a newline in the text stays inside the JSON line
    assert (
        sse_text(Heartbeat("abc"), item_to_json, str) == ": heartbeat position=abc\n\n"
    )
    assert sse_text(Closing(1001, "bye"), item_to_json, str) == (
        'data: {"type": "stream.end", "code": 1001, "reason": "bye"}\n\n'
    )


@pytest.mark.parametrize(
    ("accept", "wanted"),
    [
        (["text/event-stream"], True),
        (["application/json, Text/Event-Stream;q=0.5"], True),
        (["text/event-stream;q=0"], False),
        (["*/*"], False),
        (["text/*"], False),
        ([], False),
    ],
)
def test_wants_event_stream(accept: list[str], wanted: bool) -> None:
    assert wants_event_stream(accept) is wanted
