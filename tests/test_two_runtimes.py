"""Runtimes in one process share nothing: each has its own streams."""

from __future__ import annotations

import trio

from yoi_runtime import Event, ScriptedEngine, open_runtime


async def test_two_memory_runtimes_keep_their_own_runtime_streams() -> None:
    with trio.fail_after(10):
        async with (
            open_runtime({"echo": ScriptedEngine()}, runtime_id="rt-a") as a,
            open_runtime({"echo": ScriptedEngine()}, runtime_id="rt-b") as b,
        ):
            await a.create_worker()
            await b.create_worker()
            await a.create_worker()
            for runtime, expected in ((a, 2), (b, 1)):
                async with runtime.subscribe(after=0) as events:
                    batch = await events.receive_batch()
                events_only = [item for item in batch if isinstance(item, Event)]
                assert events_only == batch
                assert [e.runtime_id for e in events_only] == [
                    runtime.runtime_id
                ] * expected
                assert [e.cursor for e in events_only] == list(range(1, expected + 1))
