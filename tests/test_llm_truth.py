"""Turns that tell the truth on the real local model server.

llama-cpp-python with SmolLM2-135M, started by ``open_local_model_server``:
two Companions answering at once, and a long conversation on a small
context. Answers are checked by shape (completed, non-empty), not wording.
"""

from __future__ import annotations

import pytest
import trio

from yoi_runtime import (
    Event,
    Runtime,
    TurnCompletedData,
    TurnStartedData,
    TurnStatus,
    TurnTextDeltaData,
    open_runtime,
)
from yoi_runtime.local_model import open_local_model_server

pytestmark = pytest.mark.llm


async def finish(runtime: Runtime, worker_id: str, after: int) -> list[Event]:
    """Return the Worker's events after ``after`` up to its turn's end."""
    seen: list[Event] = []
    with trio.fail_after(180):
        async for item in runtime.subscribe(worker_id, after=after):
            assert isinstance(item, Event), item
            seen.append(item)
            if item.type in ("turn.completed", "turn.failed", "turn.cancelled"):
                return seen
    raise AssertionError("the stream ended before the turn did")


async def test_two_companions_at_once_both_answer() -> None:
    """The server would interrupt the first stream for the second request;
    the engine's limit of one turn at a time makes the second wait."""
    with trio.fail_after(300):
        async with open_local_model_server() as server:
            engine = server.chat_engine(temperature=0.0, max_tokens=32)
            async with open_runtime({"local": engine}) as runtime:
                ids = [(await runtime.create_worker()).worker_id for _ in range(2)]
                results: dict[str, list[Event]] = {}

                async def talk(worker_id: str, question: str) -> None:
                    last = (await runtime.get_worker(worker_id)).last_seq
                    await runtime.send_input(worker_id, question)
                    results[worker_id] = await finish(runtime, worker_id, last)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(talk, ids[0], "What colour is the sky?")
                    nursery.start_soon(talk, ids[1], "Name a fruit.")
                for worker_id in ids:
                    events = results[worker_id]
                    assert events[-1].type == "turn.completed", events[-1].data
                    text = "".join(
                        e.data.text
                        for e in events
                        if isinstance(e.data, TurnTextDeltaData)
                    )
                    assert text.strip()
                    done = events[-1].data
                    assert isinstance(done, TurnCompletedData)
                    assert done.finish_reason in ("stop", "length")
                    entries = (await runtime.transcript(worker_id)).items
                    assert entries[-1].kind == "assistant"
                    assert entries[-1].text == text


async def test_thirty_long_turns_on_a_small_context_all_complete() -> None:
    """A 512-token server: the history is trimmed to fit, never failed."""
    with trio.fail_after(900):
        async with open_local_model_server(n_ctx=512) as server:
            engine = server.chat_engine(temperature=0.7, max_tokens=96)
            async with open_runtime({"local": engine}) as runtime:
                worker_id = (await runtime.create_worker()).worker_id
                omitted = []
                for i in range(30):
                    last = (await runtime.get_worker(worker_id)).last_seq
                    await runtime.send_input(
                        worker_id, f"Tell me a long story about a lighthouse, part {i}."
                    )
                    events = await finish(runtime, worker_id, last)
                    assert events[-1].type == "turn.completed", (i, events[-1].data)
                    [started] = [e for e in events if e.type == "turn.started"]
                    assert isinstance(started.data, TurnStartedData)
                    omitted.append(started.data.history_omitted)
                    print(i, trio.current_time(), omitted[-1], flush=True)
                assert max(omitted) > 0  # the history outgrew the context
                detail = await runtime.get_worker(worker_id)
                assert detail.turns == 30
                assert detail.last_turn is not None
                assert detail.last_turn.status is TurnStatus.COMPLETED
                # The transcript keeps every turn.
                page = await runtime.transcript(worker_id, limit=100)
                assert len(page.items) == 60
