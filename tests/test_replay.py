"""ReplayEngine on the shared recorded LLM streams, on trio's virtual clock."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from yoi_runtime._engines._base import Completion, Retry, TurnRequest, Usage
from yoi_runtime._engines._replay import ReplayEngine
from yoi_runtime._errors import EngineStreamIncompleteError

REQUEST = TurnRequest(
    worker_id="w1", turn_id="t1", system_prompt=None, history=[], input="ignored"
)
RECORDINGS = [
    "anthropic-tool_call",
    "gemini-long_text",
    "ollama-long_text",
    "openai-long_text",
    "openai-simple_text",
    "openai-tool_call",
]


class OnText:
    """A turn listener that hands each text delta to ``take``."""

    def __init__(self, take: Callable[[str], object]) -> None:
        self.take = take

    def on_text(self, text: str) -> None:
        self.take(text)

    def on_retry(self, retry: Retry) -> None:
        raise AssertionError("a replay never retries")


def read_events(path: Path) -> list[dict[str, Any]]:
    """Return a recording's events (without the header), independently parsed."""
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines[1:] if line.strip()]


@pytest.mark.parametrize("name", RECORDINGS)
async def test_replays_text_and_usage(
    recordings_dir: Path, autojump_clock: trio.testing.MockClock, name: str
) -> None:
    events = read_events(recordings_dir / f"{name}.jsonl")
    usages = [e for e in events if e["type"] == "usage"]
    expected_usage = (
        Usage(usages[-1]["input_tokens"] or 0, usages[-1]["output_tokens"] or 0)
        if usages
        else Usage()
    )
    engine = ReplayEngine(recordings_dir, name)
    assert (engine.kind, engine.model) == ("replay", name)
    texts: list[str] = []
    completion = await engine.run_turn(REQUEST, OnText(texts.append))
    assert "".join(texts) == "".join(
        e["text"] for e in events if e["type"] == "text_delta"
    )
    assert all(texts)
    assert completion.usage == expected_usage


@pytest.mark.parametrize("speed", [1.0, 10.0, 0.5])
@pytest.mark.parametrize("name", ["openai-long_text", "ollama-simple_text"])
async def test_timing_follows_the_recording(
    recordings_dir: Path,
    autojump_clock: trio.testing.MockClock,
    name: str,
    speed: float,
) -> None:
    events = read_events(recordings_dir / f"{name}.jsonl")
    deltas = [e for e in events if e["type"] == "text_delta"]
    engine = ReplayEngine(recordings_dir, name, speed=speed)
    arrivals: list[float] = []
    start = trio.current_time()
    await engine.run_turn(
        REQUEST, OnText(lambda text: arrivals.append(trio.current_time()))
    )
    assert trio.current_time() - start == deltas[-1]["t_ms"] / 1000 / speed
    first = next(e for e in deltas if e["text"])
    assert arrivals[0] - start == first["t_ms"] / 1000 / speed
    assert arrivals == sorted(arrivals)


async def test_infinite_speed_takes_no_time(
    recordings_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    engine = ReplayEngine(recordings_dir, "openai-long_text", speed=math.inf)
    texts: list[str] = []
    start = trio.current_time()
    await engine.run_turn(REQUEST, OnText(texts.append))
    assert trio.current_time() == start
    assert len(texts) > 500


async def test_infinite_speed_still_checkpoints(recordings_dir: Path) -> None:
    engine = ReplayEngine(recordings_dir, "openai-simple_text", speed=math.inf)
    texts: list[str] = []
    with trio.CancelScope() as scope:
        scope.cancel()
        await engine.run_turn(REQUEST, OnText(texts.append))
    assert scope.cancelled_caught
    assert texts == []


async def test_cancel_mid_replay(
    recordings_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    engine = ReplayEngine(recordings_dir, "openai-long_text")
    texts: list[str] = []
    with trio.move_on_after(1.0):
        await engine.run_turn(REQUEST, OnText(texts.append))
    assert texts[:2] == ["In", " the"]
    assert 0 < len(texts) < 100


def test_list_recordings(recordings_dir: Path) -> None:
    names = ReplayEngine.list_recordings(recordings_dir)
    assert len(names) == 13
    assert names == sorted(names)
    assert {"openai-long_text", "gemini-simple_text"} <= set(names)
    for name in names:
        ReplayEngine(recordings_dir, name)  # all shipped recordings load


def test_list_recordings_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        ReplayEngine.list_recordings(tmp_path / "nowhere")


def test_repr_shows_no_recorded_data(recordings_dir: Path) -> None:
    engine = ReplayEngine(recordings_dir, "openai-simple_text", speed=2.0)
    assert "model='openai-simple_text'" in repr(engine)
    assert "Hello" not in repr(engine)


HEADER = '{"format": "yoi-recorded-llm-stream/1", "provider": "x", "model": "y"}'


@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param("", "empty file", id="empty"),
        pytest.param('{"format": "other/2"}\n', "format is 'other/2'", id="format"),
        pytest.param("not json\n", "line 1: not JSON", id="header-not-json"),
        pytest.param(HEADER + "\n[1]\n", "line 2: not a JSON object", id="not-object"),
        pytest.param(
            HEADER + '\n{"type": "text_delta", "text": "a"}\n', "t_ms", id="no-t_ms"
        ),
        pytest.param(
            HEADER + '\n{"t_ms": 1, "type": "text_delta"}\n', "text", id="no-text"
        ),
        pytest.param(
            HEADER + '\n{"t_ms": 1, "type": "usage", "input_tokens": "x"}\n',
            "input_tokens",
            id="usage",
        ),
    ],
)
def test_bad_recording(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "bad.jsonl").write_text(content)
    with pytest.raises(ValueError, match=match):
        ReplayEngine(tmp_path, "bad")


@pytest.mark.parametrize("name", ["missing", "../recorded-llm-streams/x", ""])
def test_missing_recording(recordings_dir: Path, name: str) -> None:
    with pytest.raises(ValueError, match="recording"):
        ReplayEngine(recordings_dir, name)


@pytest.mark.parametrize("speed", [0.0, -1.0, math.nan])
def test_bad_speed(recordings_dir: Path, speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        ReplayEngine(recordings_dir, "openai-simple_text", speed=speed)


async def test_small_recording_usage_nulls(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    (tmp_path / "r.jsonl").write_text(
        HEADER
        + "\n"
        + '{"t_ms": 0, "type": "text_delta", "index": 0, "text": ""}\n'
        + '{"t_ms": 250, "type": "text_delta", "index": 0, "text": "a"}\n'
        + '{"t_ms": 300, "type": "usage", "input_tokens": 7, "output_tokens": null}\n'
        + '{"t_ms": 500, "type": "text_delta", "index": 1, "text": "b"}\n'
        + '{"t_ms": 900, "type": "status", "status": "completed"}\n'
    )
    engine = ReplayEngine(tmp_path, "r", speed=2.0)
    texts: list[str] = []
    start = trio.current_time()
    completion = await engine.run_turn(REQUEST, OnText(texts.append))
    assert completion == Completion("stop", Usage(7, 0))
    assert texts == ["a", "b"]
    assert trio.current_time() - start == 0.25


@pytest.mark.parametrize(
    ("name", "finish_reason"),
    [
        ("openai-long_text", "stop"),  # block_stop EndTurn
        ("anthropic-simple_text", "stop"),  # status completed
        ("gemini-tool_call", "stop"),  # block_stop EndTurn after a tool call
        ("openai-tool_call", "tool_calls"),  # a tool call, no stop recorded
    ],
)
async def test_replays_the_recorded_finish_reason(
    recordings_dir: Path, name: str, finish_reason: str
) -> None:
    engine = ReplayEngine(recordings_dir, name, speed=math.inf)
    completion = await engine.run_turn(REQUEST, OnText(lambda text: None))
    assert completion.finish_reason == finish_reason


@pytest.mark.parametrize(
    ("stop", "finish_reason"),
    [
        (
            '{"t_ms": 2, "type": "block_stop", "index": 0, "stop_reason": "MaxTokens"}',
            "length",
        ),
        (
            '{"t_ms": 2, "type": "block_stop", "index": 0, "stop_reason": "Refusal"}',
            "Refusal",
        ),
        (None, None),
    ],
)
async def test_recorded_stop_reasons(
    tmp_path: Path, stop: str | None, finish_reason: str | None
) -> None:
    lines = [HEADER, '{"t_ms": 1, "type": "text_delta", "index": 0, "text": "a"}']
    if stop is not None:
        lines.append(stop)
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n")
    engine = ReplayEngine(tmp_path, "r", speed=math.inf)
    texts: list[str] = []
    if finish_reason is None:
        with pytest.raises(EngineStreamIncompleteError):
            await engine.run_turn(REQUEST, OnText(texts.append))
    else:
        completion = await engine.run_turn(REQUEST, OnText(texts.append))
        assert completion.finish_reason == finish_reason
    assert texts == ["a"]
