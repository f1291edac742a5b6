"""The JSON form of what a Runtime hands out, as one public function."""

from __future__ import annotations

from typing import Any

import attrs

from ._errors import YoiRuntimeError
from ._events import Event, Gap
from ._types import Page
from ._wire import converter, item_to_json

__all__ = ["to_json"]


def to_json(value: object, *, as_type: object = None) -> dict[str, Any]:
    """Return the JSON form of an event, a result or an error.

    The same shapes the runtime process sends (``docs/events.md``,
    ``docs/protocol.md``), ready for :func:`json.dumps`: datetimes as ISO 8601
    strings (UTC), enums as their string values.

    Args:
        value: An :class:`~yoi_runtime.Event` (``{"seq", "cursor", "type",
            "runtime_id", "worker_id", "at", "data"}``), a
            :class:`~yoi_runtime.Gap` (``{"type": "stream.gap", "after",
            "resume_after", "reason"}``), any frozen value the library returns
            (:class:`~yoi_runtime.TurnResult` is ``{"turn_id", "worker_id",
            "text", "finish_reason", "truncated", "usage": {"input_tokens",
            "output_tokens"}}``; summaries, transcript entries, ...: their
            fields), or a :class:`~yoi_runtime.YoiRuntimeError` (``{"code",
            "message", "details"}``, the ``error`` of the process's error
            envelope).
        as_type: For a :class:`~yoi_runtime.Page`, its alias
            (:data:`~yoi_runtime.WorkerPage`,
            :data:`~yoi_runtime.TranscriptPage`, or one registered with
            :func:`yoi_runtime.serving.register_page`): a page does not know
            its item type, and the alias picks its JSON form
            (``{"workers": [...], "next_cursor"}``, ...). Ignored for
            anything else.

    Returns:
        A dict of JSON values.

    Raises:
        TypeError: ``value`` is none of these, or is a
            :class:`~yoi_runtime.Page` without a registered ``as_type``.
    """
    if isinstance(value, Event | Gap):
        return item_to_json(value)
    if isinstance(value, YoiRuntimeError):
        return {
            "code": value.code,
            "message": value.message,
            "details": value.details(),
        }
    if attrs.has(type(value)):
        hint = as_type if isinstance(value, Page) else None
        unstructured = converter.unstructure(value, unstructure_as=hint)
        assert isinstance(unstructured, dict)
        return unstructured
    raise TypeError(f"no JSON form for {type(value).__name__}")
