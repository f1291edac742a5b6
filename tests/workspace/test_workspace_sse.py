"""The browser API's event streams as ``text/event-stream``, against the
real ``yoi-workspace`` and ``yoi-runtime`` commands (``docs/workspace.md``,
"Streams")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import httpx
import trio
from sse_support import get_sse_refusal, open_sse
from workspace.workspace_support import open_workspace_process, write_config

from yoi_runtime.testing import open_runtime_process

RUNTIME_CONFIG = """\
runtime_id = "rt-small"
default_engine = "slow"
enable_test_engines = true

[limits]
worker_event_retention = 4

[engines.slow]
kind = "scripted"
deltas = ["a ", "b ", "c "]
"""

#: A Worker created then asked once: created, accepted, running, started,
#: three deltas, completed, idle.
TURN_EVENTS = 9


@attrs.frozen
class Backend:
    url: str
    http: httpx.AsyncClient

    async def create_and_ask(self, runtime_id: str) -> str:
        workers = f"/api/runtimes/{runtime_id}/workers"
        created = await self.http.post(workers, json={})
        worker_id: str = created.json()["worker"]["worker_id"]
        turn = await self.http.post(f"{workers}/{worker_id}/input", json={"text": "hi"})
        assert turn.status_code == 202
        return worker_id


@asynccontextmanager
async def backend(tmp_path: Path) -> AsyncIterator[Backend]:
    """A workspace over an embedded Runtime ``emb`` and a ``yoi-runtime``
    process ``rt-small`` that retains only a few events per Worker."""
    runtime_config = tmp_path / "runtime.toml"
    runtime_config.write_text(RUNTIME_CONFIG)
    async with open_runtime_process("--config", str(runtime_config)) as runtime:
        config = write_config(
            tmp_path,
            "\n".join(
                [
                    "heartbeat_interval = 0.2",
                    "[embedded]",
                    'runtime_id = "emb"',
                    "enable_test_engines = true",
                    'default_engine = "slow"',
                    "[embedded.engines.slow]",
                    'kind = "scripted"',
                    'deltas = ["a ", "b ", "c "]',
                    "[[remote]]",
                    'runtime_id = "rt-small"',
                    f'url = "{runtime.url}"',
                ]
            ),
        )
        async with open_workspace_process("--config", str(config)) as workspace:
            async with httpx.AsyncClient(base_url=workspace.url) as http:
                yield Backend(workspace.url, http)


async def test_worker_stream_ids_resume_and_heartbeats(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with backend(tmp_path) as served:
            async with open_sse(served.url, "/api/events") as everything:
                worker_id = await served.create_and_ask("emb")
                all_items = await everything.events(TURN_EVENTS)
            assert [e.data["seq"] for e in all_items] == list(range(1, 10))
            url = f"/api/runtimes/emb/workers/{worker_id}/events?after=0"
            async with open_sse(served.url, url) as sse:
                events = await sse.events(TURN_EVENTS)
                assert [e.id for e in events] == [str(n) for n in range(1, 10)]
                assert [e.data["seq"] for e in events] == list(range(1, 10))
                assert await sse.next() == "heartbeat position=9"
            headers = {"Last-Event-ID": "5"}
            async with open_sse(served.url, url, headers) as sse:
                resumed = await sse.events(4)
                assert [e.id for e in resumed] == ["6", "7", "8", "9"]
                assert [e.data for e in resumed] == [e.data for e in events[5:]]
                assert await sse.next() == "heartbeat position=9"


async def test_aggregate_ids_are_positions_and_resume(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with backend(tmp_path) as served:
            async with open_sse(served.url, "/api/events") as sse:
                first = await served.create_and_ask("emb")
                items = await sse.events(TURN_EVENTS)
                second = await served.create_and_ask("rt-small")
                items += await sse.events(TURN_EVENTS)
            assert [e.id for e in items] == [e.data["position"] for e in items]
            assert [e.data["worker_id"] for e in items] == [first] * 9 + [second] * 9
            # Resume after the fourth item: exactly the fifth onwards.
            headers = {"Last-Event-ID": items[3].id or ""}
            async with open_sse(served.url, "/api/events", headers) as sse:
                resumed = await sse.events(len(items) - 4)
                assert [e.data for e in resumed] == [e.data for e in items[4:]]
                await sse.next()  # a heartbeat, nothing more
                assert sse.comments[-1].startswith("heartbeat position=")
            async with open_sse(served.url, f"/api/events?after={items[16].id}") as sse:
                (last,) = await sse.events(1)
                assert last == items[17]


async def test_a_cursor_older_than_retention_gets_a_gap(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with backend(tmp_path) as served:
            async with open_sse(served.url, "/api/events") as sse:
                worker_id = await served.create_and_ask("rt-small")
                await sse.events(TURN_EVENTS)
            url = f"/api/runtimes/rt-small/workers/{worker_id}/events?after=1"
            async with open_sse(served.url, url) as sse:
                gap = await sse.event()
                assert gap.data["type"] == "stream.gap"
                assert gap.data["after"] == 1
                resume_after = gap.data["resume_after"]
                assert gap.id == str(resume_after)
                rest = await sse.events(TURN_EVENTS - resume_after)
                assert [e.id for e in rest] == [
                    str(n) for n in range(resume_after + 1, TURN_EVENTS + 1)
                ]


async def test_refusals_are_http_errors(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with backend(tmp_path) as served:
            worker = "/api/runtimes/emb/workers/w-nobody/events"
            cases = [
                ("/api/runtimes/nowhere/workers/w-1/events", {}, 404,
                 "unknown_runtime"),
                (worker, {}, 404, "worker_not_found"),
                ("/api/events?after=!", {}, 400, "invalid_input"),
                ("/api/events", {"Origin": "http://evil.example"}, 403,
                 "origin_not_allowed"),
                ("/api/events", {"Host": "evil.example"}, 421, "host_not_allowed"),
                ("/api/events", {"Accept": "*/*"}, 400, "websocket_required"),
            ]  # fmt: skip
            for url, headers, status, code in cases:
                got, body = await get_sse_refusal(served.url, url, headers)
                assert (got, body["error"]["code"]) == (status, code), (url, headers)
            # The backend's own origin may follow its streams.
            host = httpx.URL(served.url).netloc.decode()
            own = {"Origin": f"http://{host}"}
            async with open_sse(served.url, "/api/events", own):
                pass
