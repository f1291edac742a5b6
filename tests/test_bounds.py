"""The Runtime's bounds (``Limits``, ``docs/runtime.md`` "Bounds"): each is
configurable and enforced with a typed error, or by forgetting the oldest
(events become a ``Gap``, diagnostics drop off).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio
from conformance.support import CONFIG, events_until, scripted_engines

from yoi_runtime import (
    Event,
    Gap,
    InvalidInputError,
    Limits,
    ScriptedEngine,
    ScriptedReply,
    Subscription,
    TurnTextDeltaData,
    open_runtime,
)
from yoi_runtime._errors import LimitExceededError
from yoi_runtime._events import EVENT_OVERHEAD
from yoi_runtime.testing import open_runtime_process

#: 2,000 deltas of 100 characters: about 1.2 MB of events by the estimate.
DELTAS = tuple(f"{n:04d}" + "x" * 96 for n in range(2_000))


def ready(subscription: Subscription) -> list[Event | Gap]:
    """Everything a subscription can hand out now, without waiting."""
    items: list[Event | Gap] = []
    while True:
        try:
            items += subscription.receive_batch_nowait()
        except trio.WouldBlock:
            return items


async def test_max_workers_is_a_typed_error_and_idempotent_create_still_works() -> None:
    limits = Limits(max_workers=3)
    async with open_runtime(scripted_engines(), limits=limits) as runtime:
        for n in range(3):
            await runtime.create_worker(worker_id=f"w{n}")
        await runtime.stop("w0")  # a stopped Worker still counts
        with pytest.raises(LimitExceededError) as caught:
            await runtime.create_worker()
        again = await runtime.create_worker(worker_id="w1")
        page = await runtime.list_workers()
    assert caught.value.code == "limit_exceeded"
    assert caught.value.details() == {"limit": "max_workers", "value": 3}
    assert again.worker_id == "w1"
    assert [w.worker_id for w in page.items] == ["w0", "w1", "w2"]


@pytest.mark.parametrize(
    "name",
    ["line\nbreak", "tab\there", "\x1b[31mred", "nul\x00", "c1\x85", "sep\u2028"],
    ids=["newline", "tab", "escape", "nul", "c1", "line-separator"],
)
async def test_control_characters_are_refused_in_display_names(name: str) -> None:
    async with open_runtime(scripted_engines()) as runtime:
        with pytest.raises(InvalidInputError) as caught:
            await runtime.create_worker(display_name=name)
        assert (await runtime.summary()).workers["idle"] == 0
    assert caught.value.path == "display_name"


async def test_display_name_system_prompt_input_and_reason_sizes() -> None:
    limits = Limits(
        max_display_name_chars=10, max_system_prompt_chars=20, max_input_chars=30
    )
    async with open_runtime(scripted_engines(), limits=limits) as runtime:
        fine = await runtime.create_worker(
            worker_id="w", display_name="é" * 10, system_prompt="p" * 20
        )
        assert fine.display_name == "é" * 10
        refused = []
        for call in (
            lambda: runtime.create_worker(display_name="n" * 11),
            lambda: runtime.create_worker(system_prompt="p" * 21),
            lambda: runtime.send_input("w", "i" * 31),
            lambda: runtime.cancel("w", reason="r" * 1_001),
            lambda: runtime.stop("w", reason="r" * 1_001),
        ):
            with pytest.raises(InvalidInputError) as caught:
                await call()
            refused.append(caught.value.path)
        async with runtime.subscribe("w") as events:
            await runtime.send_input("w", "i" * 30)
            await events_until(events, "turn.completed")
    assert refused == ["display_name", "system_prompt", "text", "reason", "reason"]


async def test_defaults_refuse_a_megabyte_display_name_or_system_prompt() -> None:
    async with open_runtime(scripted_engines()) as runtime:
        for field in ("display_name", "system_prompt"):
            with pytest.raises(InvalidInputError) as caught:
                await runtime.create_worker(**{field: "m" * 1_000_000})
            assert caught.value.path == field
    assert Limits().max_display_name_chars == 200
    assert Limits().max_system_prompt_chars == 100_000


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_a_workers_events_in_memory_stay_within_their_byte_budget(
    tmp_path: Path, store: str
) -> None:
    budget = 64 * 1024
    limits = Limits(worker_event_bytes=budget)
    engine = ScriptedEngine([ScriptedReply(deltas=DELTAS)])
    spec = "memory" if store == "memory" else f"sqlite:{tmp_path / 'runtime.db'}"
    with trio.fail_after(30):
        async with open_runtime({"s": engine}, limits=limits, store=spec) as runtime:
            worker_id = (await runtime.create_worker()).worker_id
            async with runtime.subscribe(worker_id) as events:
                await runtime.send_input(worker_id, "many events")
                # It falls behind (the deltas come at once): a Gap, then on.
                async for item in events:
                    if isinstance(item, Event) and item.type == "turn.completed":
                        break
            last = (await runtime.get_worker(worker_id)).last_seq
            async with runtime.subscribe(worker_id, after=0) as replay:
                items = ready(replay)
            entries = (await runtime.transcript(worker_id)).items
    gap, *rest = items
    assert isinstance(gap, Gap)
    assert (gap.after, gap.resume_after + len(rest)) == (0, last)
    assert [e.seq for e in rest if isinstance(e, Event)] == list(
        range(gap.resume_after + 1, last + 1)
    )
    held = sum(
        EVENT_OVERHEAD
        + (len(e.data.text) if isinstance(e.data, TurnTextDeltaData) else 0)
        for e in rest
        if isinstance(e, Event)
    )
    assert budget * 3 // 4 - 1_000 <= held <= budget
    # The answer itself is whole: the transcript is not bounded by events.
    assert entries[-1].text == "".join(DELTAS)


async def test_the_runtime_wide_log_stays_within_its_byte_budget() -> None:
    budget = 32 * 1024
    limits = Limits(runtime_event_bytes=budget)
    engine = ScriptedEngine([ScriptedReply(deltas=DELTAS[:500])])
    async with open_runtime({"s": engine}, limits=limits) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        async with runtime.subscribe(worker_id) as events:
            await runtime.send_input(worker_id, "go")
            await events_until(events, "turn.completed")
        async with runtime.subscribe(after=0) as everything:
            items = ready(everything)
    gap, *rest = items
    assert isinstance(gap, Gap)
    assert 0 < len(rest) <= budget // EVENT_OVERHEAD


async def test_diagnostics_keep_the_newest(tmp_path: Path) -> None:
    db = tmp_path / "runtime.db"
    async with open_runtime(scripted_engines(), store=f"sqlite:{db}") as runtime:
        for n in range(8):
            await runtime.create_worker(worker_id=f"w{n}", engine="slow")
    engines = scripted_engines()
    del engines["slow"]
    limits = Limits(max_diagnostics=5)
    async with open_runtime(engines, store=f"sqlite:{db}", limits=limits) as runtime:
        found = await runtime.diagnostics()
    assert [(d.code, d.worker_id) for d in found] == [
        ("engine_missing", f"w{n}") for n in range(3, 8)
    ]


async def test_the_process_answers_bounds_with_typed_errors(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_runtime_process("--config", str(CONFIG)) as served:
            async with httpx.AsyncClient(base_url=served.url) as http:
                long_name = await http.post(
                    "/v1/workers", json={"display_name": "n" * 201}
                )
                control = await http.post("/v1/workers", json={"display_name": "a\nb"})
                prompt = await http.post(
                    "/v1/workers", json={"system_prompt": "p" * 100_001}
                )
                fine = await http.post("/v1/workers", json={"display_name": "n" * 200})
    for answer, path in ((long_name, "display_name"), (control, "display_name")):
        assert answer.status_code == 422
        assert answer.json()["error"]["details"]["path"] == path
    assert prompt.status_code == 422
    assert prompt.json()["error"]["details"]["path"] == "system_prompt"
    assert fine.status_code == 201


def test_every_new_error_has_an_http_status() -> None:
    from yoi_runtime.serving import STATUS

    assert STATUS["limit_exceeded"] == 409
    assert STATUS["storage_full"] == 507
    assert STATUS["store_write_failed"] == 503
