"""Crash recovery: a ``yoi-runtime`` process on a SQLite store, killed with
SIGKILL, and started again on the same store (and port).

The Companion streams a recorded real provider answer (``openai-long_text``:
535 deltas over 15 s) at its recorded speed, so the kill lands mid-stream.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from yoi_runtime import (
    Event,
    Gap,
    ScopeConflictError,
    TurnStatus,
    TurnTextDeltaData,
    WorkerStatus,
    WorkerStatusData,
)
from yoi_runtime.client import RuntimeClient, open_runtime_client
from yoi_runtime.testing import ServerProcess, open_runtime_process

#: Kill points, in seconds after the input was accepted; the recording's
#: first delta comes at 0.81 s. Seeded so a failure can be replayed.
_SEED = int(os.environ.get("YOI_CRASH_SEED", random.randrange(1 << 32)))
KILL_POINTS = sorted(random.Random(_SEED).uniform(0.9, 4.0) for _ in range(3))


@pytest.fixture
def config(tmp_path: Path, recordings_dir: Path) -> Path:
    path = tmp_path / "runtime.toml"
    path.write_text(
        f"""
default_engine = "companion"
enable_test_engines = true

[engines.companion]
kind = "replay"
recordings_dir = "{recordings_dir}"
recording = "openai-long_text"
speed = 1.0

[engines.echo]
kind = "scripted"
"""
    )
    return path


@asynccontextmanager
async def open_process(
    config: Path, store: Path, bind: str = "127.0.0.1:0"
) -> AsyncIterator[ServerProcess]:
    async with open_runtime_process(
        "--config", str(config), "--store", f"sqlite:{store}", bind=bind
    ) as served:
        yield served


async def sigkill(served: ServerProcess) -> None:
    served.process.send_signal(signal.SIGKILL)
    await served.process.wait()
    assert served.process.returncode == -signal.SIGKILL


def port_of(served: ServerProcess) -> int:
    port = httpx.URL(served.url).port
    assert port is not None
    return port


async def collect(
    client: RuntimeClient, worker_id: str, into: list[Event | Gap]
) -> None:
    """Follow a Worker's stream from the start until its turn is interrupted
    and the Worker idle again; the subscription reconnects by itself."""
    async with client.subscribe(worker_id, after=0) as events:
        async for item in events:
            into.append(item)
            if (
                isinstance(item, Event)
                and item.type == "worker.status"
                and isinstance(item.data, WorkerStatusData)
                and item.data.status == "idle"
                and any(
                    isinstance(e, Event) and e.type == "turn.interrupted" for e in into
                )
            ):
                return


@pytest.mark.parametrize("kill_after", KILL_POINTS, ids=lambda s: f"{s:.2f}s")
async def test_sigkill_while_streaming(
    tmp_path: Path, config: Path, kill_after: float
) -> None:
    print(f"YOI_CRASH_SEED={_SEED}")
    store = tmp_path / "runtime.db"
    seen: list[Event | Gap] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            async with open_process(config, store) as first:
                port = port_of(first)
                async with open_runtime_client(
                    first.url, reconnect_timeout=30
                ) as client:
                    worker = await client.create_worker(display_name="Yoi")
                    turn = await client.send_input(worker.worker_id, "Tell me a story.")
                    follower = trio.Event()

                    async def follow() -> None:
                        await collect(client, worker.worker_id, seen)
                        follower.set()

                    nursery.start_soon(follow)
                    await trio.sleep(kill_after)
                    await sigkill(first)
                    async with open_process(
                        config, store, f"127.0.0.1:{port}"
                    ) as again:
                        await follower.wait()
                        # The old client's stream reconnected; commands use a
                        # fresh client (the old one's connections are dead).
                        async with open_runtime_client(again.url) as fresh:
                            restored = await fresh.get_worker(worker.worker_id)
                            page = await fresh.transcript(worker.worker_id)
                            accepted = await fresh.send_input(
                                worker.worker_id, "Go on."
                            )
                            await fresh.cancel(worker.worker_id)
    assert all(isinstance(item, Event) for item in seen)
    events = [item for item in seen if isinstance(item, Event)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    kinds = [e.type.value for e in events]
    assert kinds[:4] == [
        "worker.created",
        "turn.accepted",
        "worker.status",
        "turn.started",
    ]
    assert kinds[-2:] == ["turn.interrupted", "worker.status"]
    assert "turn.completed" not in kinds
    deltas = "".join(
        e.data.text for e in events if isinstance(e.data, TurnTextDeltaData)
    )
    assert deltas, "the kill should land after streaming started"

    assert restored.status is WorkerStatus.IDLE
    assert restored.last_turn is not None
    assert restored.last_turn.turn_id == turn.turn_id
    assert restored.last_turn.status is TurnStatus.INTERRUPTED
    user, answer = page.items
    assert (user.text, answer.kind, answer.status) == (
        "Tell me a story.",
        "assistant",
        TurnStatus.INTERRUPTED,
    )
    assert answer.text == deltas  # what was streamed before the kill, exactly
    assert accepted.turn_id == "t-2"


async def test_an_accepted_input_survives_an_immediate_sigkill(
    tmp_path: Path, config: Path
) -> None:
    store = tmp_path / "runtime.db"
    with trio.fail_after(30):
        async with open_process(config, store) as first:
            async with httpx.AsyncClient(base_url=first.url) as http:
                created = await http.post("/v1/workers", json={})
                worker_id = created.json()["worker"]["worker_id"]
                answer = await http.post(
                    f"/v1/workers/{worker_id}/input", json={"text": "quick!"}
                )
                assert answer.status_code == 202
                await sigkill(first)
        async with open_process(config, store) as again:
            async with open_runtime_client(again.url) as client:
                worker = await client.get_worker(worker_id)
    assert worker.status is WorkerStatus.IDLE
    assert worker.last_turn is not None
    assert worker.last_turn.turn_id == answer.json()["turn"]["turn_id"]
    assert worker.last_turn.input == "quick!"
    assert worker.last_turn.status is TurnStatus.INTERRUPTED


async def test_idempotent_create_and_input_retried_across_a_sigkill(
    tmp_path: Path, config: Path
) -> None:
    store = tmp_path / "runtime.db"
    create = {"worker_id": "w-retry", "display_name": "Yoi", "engine": "echo"}
    with trio.fail_after(30):
        async with open_process(config, store) as first:
            async with httpx.AsyncClient(base_url=first.url) as http:
                created = await http.post("/v1/workers", json=create)
                turn = await http.post(
                    "/v1/workers/w-retry/input",
                    json={"text": "hello"},
                    headers={"Idempotency-Key": "key-1"},
                )
                assert (created.status_code, turn.status_code) == (201, 202)
                await sigkill(first)
        async with open_process(config, store) as again:
            async with httpx.AsyncClient(base_url=again.url) as http:
                created_again = await http.post("/v1/workers", json=create)
                turn_again = await http.post(
                    "/v1/workers/w-retry/input",
                    json={"text": "hello", "input_id": "key-1"},
                )
                conflict = await http.post(
                    "/v1/workers/w-retry/input",
                    json={"text": "goodbye"},
                    headers={"Idempotency-Key": "key-1"},
                )
                worker = (await http.get("/v1/workers/w-retry")).json()["worker"]
    assert created_again.status_code == 201
    assert (
        created_again.json()["worker"]["created_at"]
        == (created.json()["worker"]["created_at"])
    )
    assert turn_again.status_code == 202
    assert turn_again.json()["turn"]["turn_id"] == turn.json()["turn"]["turn_id"]
    assert conflict.status_code == 409
    assert conflict.json()["error"] == {
        "code": "idempotency_conflict",
        "message": conflict.json()["error"]["message"],
        "details": {"worker_id": "w-retry", "input_id": "key-1"},
    }
    assert worker["turns"] == 1


async def test_allocations_of_a_killed_process_are_reclaimed(
    tmp_path: Path, config: Path
) -> None:
    store = tmp_path / "runtime.db"
    with trio.fail_after(30):
        async with open_process(config, store) as first:
            async with open_runtime_client(first.url) as client:
                await client.create_worker(worker_id="holder", scopes=["workdir:/repo"])
                await sigkill(first)
        async with open_process(config, store) as again:
            async with open_runtime_client(again.url) as client:
                found = await client.diagnostics()
                with pytest.raises(ScopeConflictError) as caught:
                    await client.create_worker(scopes=["workdir:/repo"])
    assert [(d.code, d.worker_id) for d in found] == [
        ("allocation_reclaimed", "holder")
    ]
    assert caught.value.worker_id == "holder"
    assert caught.value.scope == "workdir:/repo"


async def test_a_second_process_on_one_store_refuses_to_start(
    tmp_path: Path, config: Path
) -> None:
    store = tmp_path / "runtime.db"
    with trio.fail_after(30):
        async with open_process(config, store) as first:
            second = await trio.run_process(
                [
                    sys.executable, "-m", "yoi_runtime", "--bind", "127.0.0.1:0",
                    "--config", str(config), "--store", f"sqlite:{store}",
                ],
                capture_stdout=True,
                capture_stderr=True,
                stdin=subprocess.DEVNULL,
                check=False,
            )  # fmt: skip
            async with httpx.AsyncClient(base_url=first.url) as http:
                health = await http.get("/v1/health")
    assert second.returncode == 1
    assert b"listening" not in second.stdout
    assert (
        f"is in use by another yoi-runtime process (pid {first.process.pid})".encode()
        in second.stderr
    )
    assert health.json() == {"status": "serving"}
