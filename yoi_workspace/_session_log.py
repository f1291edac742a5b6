"""A Pod's active segment log as a transcript (blocking code).

The log is upstream yoi's ``LogEntry`` JSON lines
(``shared/reference/yoi-local-pods.md`` section 7.5). It is projected the
way upstream's reconnecting clients replay a segment (section 7.7): the seed
``history`` of ``segment_start`` first (what a compaction or fork carried
over), then ``user_input``, ``assistant_item``, ``tool_result`` and
``system_item`` entries in file order; every other kind (``invoke``,
``turn_end``, ``llm_usage``, ``extension``, ...) shapes turns and usage but
is not an entry. Lines are read one by one: a torn or non-UTF-8 line is
skipped and counted, never fatal; a line of a kind this reader does not know
(a later yoi's) is passed over silently.

Entry kinds: ``user``, ``assistant``, ``system``, ``tool_call`` (text: the
tool's name and call id), ``tool_result`` (text: its one-line summary;
status ``failed`` when it is an error), ``reasoning`` (its summary, or its
text, cut to 500 characters) and ``attachment`` (a file, knowledge or
workflow body the model saw, cut to 1000 characters). Seed entries have
``turn_id`` ``seed``; later entries ``t-N``, N counting the ``invoke``
entries of the segment.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import attrs

from yoi_runtime import TranscriptEntry, TurnStatus, Usage

from ._pod_files import MAX_DEPTH, FileProblem, read_capped

__all__ = ["SessionRead", "read_session"]

#: The largest segment log read, in bytes.
MAX_LOG_BYTES = 64 << 20

#: Characters kept of a reasoning item and of an attachment body.
REASONING_CHARS = 500
ATTACHMENT_CHARS = 1000

#: Every ``LogEntry`` kind at upstream's ``159704dc``.
_KINDS = frozenset(
    {
        "segment_start",
        "invoke",
        "user_input",
        "assistant_item",
        "tool_result",
        "system_item",
        "turn_end",
        "run_completed",
        "run_errored",
        "paused_turn_abandoned",
        "config_changed",
        "llm_usage",
        "extension",
    }
)

#: ``system_item`` kinds shown as attachments (a body the user referenced).
_ATTACHMENTS = frozenset({"file_attachment", "knowledge", "workflow"})


@attrs.frozen
class SessionRead:
    """What one read of a segment log found.

    Attributes:
        entries: The transcript, indexed from 1.
        turns: How many turns the segment holds (its ``invoke`` entries).
        usage: Tokens in (``input_total_tokens``) and out over its
            ``llm_usage`` entries.
        problem: Why lines were skipped or the log is unreadable (no path,
            no value), or None.
        missing: The log does not exist.
    """

    entries: tuple[TranscriptEntry, ...] = ()
    turns: int = 0
    usage: Usage = Usage()
    problem: str | None = None
    missing: bool = False


@attrs.define
class _Builder:
    live: bool
    rows: list[dict[str, Any]] = attrs.field(factory=list)
    turn: int = 0
    turn_rows: list[dict[str, Any]] = attrs.field(factory=list)
    usage: Usage = Usage()
    at: datetime.datetime = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

    def add(self, kind: str, text: str, *, status: TurnStatus | None = None) -> None:
        row = {
            "kind": kind,
            "turn_id": f"t-{self.turn}",
            "text": text,
            "status": status,
            "at": self.at,
        }
        self.rows.append(row)
        if status is None:
            self.turn_rows.append(row)

    def end_turn(self, status: TurnStatus) -> None:
        for row in self.turn_rows:
            row["status"] = status
        self.turn_rows = []

    def finish(self) -> tuple[TranscriptEntry, ...]:
        self.end_turn(TurnStatus.RUNNING if self.live else TurnStatus.INTERRUPTED)
        return tuple(
            TranscriptEntry(
                index=index,
                kind=row["kind"],
                turn_id=row["turn_id"],
                text=row["text"],
                status=row["status"],
                at=row["at"],
            )
            for index, row in enumerate(self.rows, start=1)
        )


def read_session(log: Path | None, *, live: bool) -> SessionRead:
    """Read a Pod's active segment log (blocking).

    Args:
        log: The log; None for a Pod without an active segment (pending or
            no session): an empty transcript, no problem.
        live: Whether the Pod is live: the entries of a turn without
            ``run_completed`` are then ``running``, else ``interrupted``.

    Returns:
        The projection; a missing or unreadable log gives no entries and a
        problem.
    """
    if log is None:
        return SessionRead()
    try:
        raw = read_capped(log, MAX_LOG_BYTES)
    except FileProblem as exc:
        missing = exc.message == "it is missing"
        return SessionRead(problem=f"its session log: {exc.message}", missing=missing)
    build = _Builder(live)
    bad: list[int] = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line.decode("utf-8"))
            if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
                raise TypeError
            _apply(build, entry)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            bad.append(number)
    problem = None
    if bad:
        problem = (
            f"{len(bad)} unusable line(s) in its session log were skipped "
            f"(first: line {bad[0]})"
        )
    entries = build.finish()
    return SessionRead(entries, build.turn, build.usage, problem)


def _time(entry: dict[str, Any]) -> datetime.datetime:
    ts = entry["ts"]
    if type(ts) is not int:
        raise TypeError
    return datetime.datetime.fromtimestamp(ts / 1000, datetime.UTC)


def _apply(build: _Builder, entry: dict[str, Any]) -> None:
    """Fold one log entry into the transcript."""
    kind = entry["kind"]
    if kind not in _KINDS:
        return  # a kind of a later yoi: kept out of the transcript, no error
    if _depth_exceeds(entry):
        raise ValueError
    build.at = _time(entry)
    if kind == "segment_start":
        build.rows.clear()
        build.turn_rows = []
        build.turn = 0
        for item in entry["history"]:
            _item(build, item, seed=True)
    elif kind == "invoke":
        build.end_turn(TurnStatus.INTERRUPTED)
        build.turn += 1
    elif kind == "user_input":
        build.add("user", _flatten(entry["segments"]), status=TurnStatus.ACCEPTED)
    elif kind in ("assistant_item", "tool_result"):
        _item(build, entry["item"], seed=False)
    elif kind == "system_item":
        _system(build, entry["item"])
    elif kind == "run_completed":
        build.end_turn(TurnStatus.COMPLETED)
    elif kind == "run_errored":
        build.end_turn(TurnStatus.FAILED)
    elif kind == "llm_usage":
        tokens_in, tokens_out = entry["input_total_tokens"], entry["output_tokens"]
        if type(tokens_in) is not int or type(tokens_out) is not int:
            raise TypeError
        build.usage = build.usage + Usage(tokens_in, tokens_out)
    # turn_end, paused_turn_abandoned, config_changed, extension: no entry.


def _depth_exceeds(value: Any, depth: int = 0) -> bool:
    if depth > MAX_DEPTH:
        return True
    if isinstance(value, dict):
        return any(_depth_exceeds(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_depth_exceeds(v, depth + 1) for v in value)
    return False


def _flatten(segments: Any) -> str:
    """Upstream's ``Segment.flatten_to_text`` (``protocol/src/lib.rs:232``)."""
    parts = []
    for segment in segments:
        kind = segment.get("kind")
        if kind in ("text", "paste"):
            parts.append(str(segment["content"]))
        elif kind == "file_ref":
            parts.append("@" + str(segment["path"]))
        elif kind == "knowledge_ref":
            parts.append("#" + str(segment["slug"]))
        elif kind == "workflow_invoke":
            parts.append("/" + str(segment["slug"]))
        else:
            parts.append("[unknown input segment]")
    return "".join(parts)


def _item(build: _Builder, item: dict[str, Any], *, seed: bool) -> None:
    """A ``LoggedItem``: a message, reasoning, a tool call or a result."""
    kind = item["kind"]
    status = TurnStatus.COMPLETED if seed else None
    before = len(build.rows)
    if kind == "message":
        role = item["role"]
        texts = [
            part.get("text", part.get("refusal", ""))
            for part in item["content"]
            if isinstance(part, dict)
        ]
        text = "\n".join(str(t) for t in texts)
        if role == "user":
            build.add("user", text, status=TurnStatus.ACCEPTED)
        else:
            build.add(
                "assistant" if role == "assistant" else "system", text, status=status
            )
    elif kind == "tool_call":
        build.add("tool_call", f"{item['name']} [{item['call_id']}]", status=status)
    elif kind == "tool_result":
        failed = item.get("is_error") is True
        text = str(item["summary"])
        if failed:
            build.add("tool_result", text, status=TurnStatus.FAILED)
        else:
            build.add("tool_result", text, status=status)
    elif kind == "reasoning":
        summary = item.get("summary")
        text = (
            "\n".join(summary)
            if isinstance(summary, list) and summary
            else item["text"]
        )
        build.add("reasoning", _cut(str(text), REASONING_CHARS), status=status)
    if seed:
        for row in build.rows[before:]:
            row["turn_id"] = "seed"


def _system(build: _Builder, item: dict[str, Any]) -> None:
    kind = item["kind"]
    body = str(item["body"])
    if kind in _ATTACHMENTS:
        build.add("attachment", _cut(body, ATTACHMENT_CHARS))
    else:
        build.add("system", body)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
