"""The ``replay`` engine: streams a recorded LLM response with its timing.

Recordings are ``yoi-recorded-llm-stream/1`` files (one JSON object a line: a
header, then events with ``t_ms`` = milliseconds since the request). Only the
``text_delta`` events (every block ``index``, in file order) and the last
``usage`` event are replayed; tool calls, pings and block boundaries are
ignored. The finish reason is the one recorded: a ``block_stop``'s
``stop_reason`` (``EndTurn`` reads as ``"stop"``), else ``"stop"`` when a
``block_stop`` or a ``status: completed`` was recorded, else ``"tool_calls"``
when the recording holds a tool call; a recording with none of these replays
as an incomplete stream (``engine_stream_incomplete``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from .._errors import EngineStreamIncompleteError
from ._base import Completion, TurnListener, TurnRequest, Usage, estimate_token_counts

__all__ = ["ReplayEngine"]

_FORMAT = "yoi-recorded-llm-stream/1"
_SUFFIX = ".jsonl"


@attrs.frozen
class _Delta:
    """One recorded text delta.

    Attributes:
        t_ms: When it arrived, in milliseconds since the request.
        text: The delta's text (may be empty).
    """

    t_ms: float
    text: str


def _to_path(value: str | os.PathLike[str]) -> Path:
    return Path(value)


def _check_speed(instance: object, attribute: object, value: float) -> None:
    if not value > 0:  # also rejects NaN
        raise ValueError(f"speed must be > 0 (math.inf for no waiting), got {value!r}")


def _count(event: dict[str, Any], key: str, where: str) -> int:
    value = event.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: {key} is not a token count")
    return value


#: Recorded ``stop_reason`` values (yoi's StopReason) as Chat Completions
#: finish reasons; others are kept as recorded.
_STOP_REASONS = {
    "EndTurn": "stop",
    "StopSequence": "stop",
    "MaxTokens": "length",
    "ToolUse": "tool_calls",
    "ContentFilter": "content_filter",
}


def _load(path: Path) -> tuple[tuple[_Delta, ...], Usage, str | None]:
    """Read and validate one recording.

    Returns:
        The text deltas in file order, the last usage (zeros if none), and
        the recorded finish reason (None if it recorded none).

    Raises:
        ValueError: The file is missing, unreadable or not a valid recording.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read recording {path}: {exc}") from exc
    deltas: list[_Delta] = []
    usage = Usage()
    header_seen = False
    stop_reason: str | None = None
    stopped = tool_call = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{where}: not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: not a JSON object")
        if not header_seen:
            if obj.get("format") != _FORMAT:
                raise ValueError(
                    f"{path.name}: format is {obj.get('format')!r}, "
                    f"expected {_FORMAT!r}"
                )
            header_seen = True
            continue
        t_ms = obj.get("t_ms")
        if isinstance(t_ms, bool) or not isinstance(t_ms, int | float) or t_ms < 0:
            raise ValueError(f"{where}: t_ms is not a time in milliseconds")
        kind = obj.get("type")
        if kind == "text_delta":
            text = obj.get("text")
            if not isinstance(text, str):
                raise ValueError(f"{where}: text_delta without a text string")
            deltas.append(_Delta(t_ms, text))
        elif kind == "usage":
            usage = Usage(
                _count(obj, "input_tokens", where), _count(obj, "output_tokens", where)
            )
        elif kind == "block_stop":
            stopped = True
            reason = obj.get("stop_reason")
            if isinstance(reason, str):
                stop_reason = _STOP_REASONS.get(reason, reason)
        elif kind == "status":
            stopped = stopped or obj.get("status") == "completed"
        elif kind == "tool_call_start":
            tool_call = True
        elif not isinstance(kind, str):
            raise ValueError(f"{where}: event without a type")
    if not header_seen:
        raise ValueError(f"{path.name}: empty file, expected a {_FORMAT!r} header")
    if stop_reason is None and stopped:
        stop_reason = "stop"
    if stop_reason is None and tool_call:
        stop_reason = "tool_calls"
    return tuple(deltas), usage, stop_reason


@attrs.define(eq=False)
class ReplayEngine:
    """An engine that replays one recorded response, whatever the input.

    The recording is loaded and validated once, here; turns do no file I/O.
    Keeps no per-turn state, so any number of turns may replay it at once.

    Args:
        recordings_dir: The directory holding the ``*.jsonl`` recordings.
        recording: The file stem to replay, e.g. ``"openai-long_text"``.
        speed: Time factor: 1.0 replays the recorded timing, 10.0 ten times
            faster, ``math.inf`` without any waiting.

    Raises:
        ValueError: ``recording`` is not a plain file stem, the file is
            missing or unreadable, its header's ``format`` is not
            ``yoi-recorded-llm-stream/1``, a line is malformed, or ``speed``
            is not > 0.

    Attributes:
        kind: ``"replay"``.
        model: The recording's stem (never a path), as shown in ``EngineInfo``.
    """

    recordings_dir: Path = attrs.field(converter=_to_path)
    recording: str
    speed: float = attrs.field(default=1.0, validator=_check_speed)
    kind: str = attrs.field(default="replay", init=False)
    model: str = attrs.field(init=False)
    context_tokens: int | None = attrs.field(default=None, init=False)
    max_tokens: int | None = attrs.field(default=None, init=False)
    max_concurrent: int | None = attrs.field(default=None, init=False)
    _deltas: tuple[_Delta, ...] = attrs.field(init=False, repr=False)
    _usage: Usage = attrs.field(init=False, repr=False)
    _finish_reason: str | None = attrs.field(init=False, repr=False)

    @model.default
    def _model_default(self) -> str:
        return self.recording

    def __attrs_post_init__(self) -> None:
        name = self.recording
        if not name or name in (".", "..") or Path(name).name != name:
            raise ValueError(f"recording must be a file stem, got {name!r}")
        path = self.recordings_dir / (name + _SUFFIX)
        if not path.is_file():
            raise ValueError(f"no recording {name!r} in {self.recordings_dir}")
        self._deltas, self._usage, self._finish_reason = _load(path)

    @staticmethod
    def list_recordings(recordings_dir: str | os.PathLike[str]) -> list[str]:
        """List the recordings a :class:`ReplayEngine` can replay.

        Args:
            recordings_dir: The directory holding the ``*.jsonl`` recordings.

        Returns:
            The file stems of its ``*.jsonl`` files, sorted (not validated).

        Raises:
            ValueError: ``recordings_dir`` is not a directory.
        """
        path = Path(recordings_dir)
        if not path.is_dir():
            raise ValueError(f"{path} is not a directory")
        return sorted(p.stem for p in path.glob("*" + _SUFFIX) if p.is_file())

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Estimate each text's tokens with :func:`estimate_tokens`."""
        return await estimate_token_counts(texts)

    async def run_turn(
        self, request: TurnRequest, listener: TurnListener
    ) -> Completion:
        """Replay the recording; the request's content is ignored.

        Each text delta is delivered at ``start + t_ms / 1000 / speed``
        seconds on trio's clock (``start`` = when this call began), so a
        turn lasts as long as the last text delta's ``t_ms`` (scaled).

        Args:
            request: The turn (unused: this is a replay).
            listener: Told each non-empty text delta.

        Returns:
            The recorded finish reason and the recording's last ``usage``
            (``null`` counts read as 0).

        Raises:
            EngineStreamIncompleteError: The recording has no finish reason.

        Cancellation:
            Holds nothing; a cancelled replay just stops delivering deltas.
            With ``speed = math.inf`` every delta is still a checkpoint.
        """
        start = trio.current_time()
        on_text = listener.on_text
        deltas: Sequence[_Delta] = self._deltas
        for delta in deltas:
            if math.isinf(self.speed):
                await trio.lowlevel.checkpoint()
            else:
                await trio.sleep_until(start + delta.t_ms / 1000 / self.speed)
            if delta.text:
                on_text(delta.text)
        if self._finish_reason is None:
            raise EngineStreamIncompleteError(
                "the recording ends without a finish reason"
            )
        return Completion(self._finish_reason, self._usage)

    async def aclose(self) -> None:
        """Do nothing: a replay holds no resources. Idempotent."""
        await trio.lowlevel.checkpoint()
