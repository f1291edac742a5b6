"""A Companion on a real model server: llama-cpp-python with SmolLM2-135M.

Answers are deterministic only within one llama.cpp build, so these tests
check the shape of a turn (events in order, text, finish), not its wording.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from yoi_runtime import (
    CancelOutcome,
    Event,
    OpenAIChatEngine,
    Runtime,
    TurnCompletedData,
    TurnStatus,
    TurnTextDeltaData,
    WorkerStatus,
    open_runtime,
)
from yoi_runtime.testing import open_llama_server

pytestmark = pytest.mark.llm


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    with trio.fail_after(180):
        async with open_llama_server() as server:
            engine = OpenAIChatEngine(
                base_url=server.base_url,
                model=server.model,
                temperature=0.0,
                max_tokens=48,
            )
            async with open_runtime({"local": engine}) as runtime:
                yield runtime


async def test_companion_answers_on_the_real_model(runtime: Runtime) -> None:
    companion = await runtime.create_worker("companion", display_name="Yoi")
    events = runtime.subscribe(companion.worker_id)
    turn = await runtime.send_input(companion.worker_id, "What colour is the sky?")
    seen: list[Event] = []
    with trio.fail_after(120):
        async for item in events:
            assert isinstance(item, Event)
            seen.append(item)
            if item.type in ("turn.completed", "turn.failed"):
                break
    kinds = [e.type.value for e in seen]
    assert kinds[:3] == ["turn.accepted", "worker.status", "turn.started"]
    assert kinds[-1] == "turn.completed", seen[-1].data
    deltas = [e.data.text for e in seen if isinstance(e.data, TurnTextDeltaData)]
    assert len(deltas) == kinds.count("turn.text_delta") >= 1
    assert "".join(deltas).strip()
    assert [e.seq for e in seen] == list(range(seen[0].seq, seen[-1].seq + 1))
    completed = seen[-1].data
    assert isinstance(completed, TurnCompletedData)
    usage = completed.usage
    assert usage.input_tokens >= 0
    assert usage.output_tokens >= 0
    entries = (await runtime.transcript(companion.worker_id)).items
    assert [(e.kind, e.turn_id) for e in entries] == [
        ("user", turn.turn_id),
        ("assistant", turn.turn_id),
    ]
    assert entries[1].text == "".join(deltas)
    assert entries[1].status is TurnStatus.COMPLETED


async def test_cancel_on_the_real_model_then_talk_again(runtime: Runtime) -> None:
    worker_id = (await runtime.create_worker()).worker_id
    events = runtime.subscribe(worker_id)
    await runtime.send_input(worker_id, "Write a long poem about the sea.")
    with trio.fail_after(120):
        async for item in events:
            if isinstance(item, Event) and item.type == "turn.text_delta":
                break
        result = await runtime.cancel(worker_id, reason="too long")
        assert result.outcome is CancelOutcome.CANCELLED
        assert (await runtime.get_worker(worker_id)).status is WorkerStatus.IDLE
        await runtime.send_input(worker_id, "Say hi.")
        async for item in events:
            if isinstance(item, Event) and item.type.value in (
                "turn.completed",
                "turn.failed",
            ):
                assert item.type == "turn.completed", item.data
                break
