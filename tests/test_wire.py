"""JSON shapes of events, gaps and summaries."""

from __future__ import annotations

import json

from yoi_runtime import (
    Event,
    Gap,
    ScriptedEngine,
    WorkerSummary,
    open_runtime,
)
from yoi_runtime._wire import converter, item_from_json, item_to_json


async def test_events_and_gaps_round_trip_through_json() -> None:
    async with open_runtime({"s": ScriptedEngine()}, runtime_id="rt-w") as runtime:
        worker = await runtime.create_worker(display_name="Ada")
        sub = runtime.subscribe(worker.worker_id, after=0)
        await runtime.send_input(worker.worker_id, "hi")
        items: list[Event | Gap] = []
        while not any(
            isinstance(i, Event) and i.type == "turn.completed" for i in items
        ):
            items += await sub.receive_batch()
        items.append(Gap(after=3, resume_after=9))
        for item in items:
            wire = json.loads(json.dumps(item_to_json(item)))
            assert item_from_json(wire) == item
        first = item_to_json(items[0])
        assert set(first) == {
            "seq", "cursor", "type", "runtime_id", "worker_id", "at", "data",
        }  # fmt: skip
        assert first["type"] == "worker.created"
        assert first["at"].endswith("+00:00")
        assert item_to_json(items[-1]) == {
            "type": "stream.gap",
            "after": 3,
            "resume_after": 9,
            "reason": "expired",
        }
        summary = await runtime.get_worker(worker.worker_id)
        wire = json.loads(converter.dumps(summary))
        assert wire["status"] == "idle"
        assert wire["engine"] == {"name": "s", "kind": "scripted", "model": "scripted"}
        assert converter.loads(converter.dumps(summary), WorkerSummary) == summary
