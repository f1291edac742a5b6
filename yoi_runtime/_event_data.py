"""Event types and their typed payloads: one frozen attrs class per event
type's ``data``.

Each :class:`EventType` has one payload class (its
``event_type`` class attribute names it; :data:`EVENT_DATA` maps each type
to its class), and :data:`EventData` is their union. The classes hold exactly the fields
``docs/events.md`` lists, with the types the Worker emits; their JSON is the
package converter's (``yoi_runtime._wire``: ``structure_event_data``,
``unstructure_event_data``), which keeps today's shapes key for key:

- a field typed ``X | None`` is always present, ``null`` when unset
  (``turn.accepted``'s ``input_id``, ``turn.cancelled``'s ``reason``);
- a field for which :func:`omits_none` is true is left out when None
  (:class:`EventError`'s ``status_code`` and ``provider_code``, which only
  HTTP failures carry; ``turn.completed``'s ``finish_reason``, which events
  stored before version 3 of the store's schema lack).

Fields added after the first stored events have defaults, so events stored
earlier still read: ``turn.started``'s ``history_omitted`` (0),
``turn.completed``'s ``finish_reason`` (None) and ``truncated`` (False).

:func:`event_schemas` gives the JSON Schemas of the events from the same
classes, for the OpenAPI documents.
"""

from __future__ import annotations

import datetime
import enum
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, TypeAlias

import attrs

from ._engines._base import Usage
from ._types import TurnError, WorkerStatus

__all__ = [
    "EVENT_DATA",
    "EventData",
    "EventError",
    "EventType",
    "TurnAcceptedData",
    "TurnCancelledData",
    "TurnCompletedData",
    "TurnFailedData",
    "TurnInterruptedData",
    "TurnRetryingData",
    "TurnStartedData",
    "TurnTextDeltaData",
    "WorkerCreatedData",
    "WorkerFailedData",
    "WorkerStatusData",
    "WorkerStoppedData",
    "event_schemas",
    "omits_none",
]


class EventType(enum.StrEnum):
    """Every event type; ``docs/events.md`` shows an example of each."""

    WORKER_CREATED = "worker.created"
    WORKER_STATUS = "worker.status"
    WORKER_STOPPED = "worker.stopped"
    WORKER_FAILED = "worker.failed"
    TURN_ACCEPTED = "turn.accepted"
    TURN_STARTED = "turn.started"
    TURN_RETRYING = "turn.retrying"
    TURN_TEXT_DELTA = "turn.text_delta"
    TURN_COMPLETED = "turn.completed"
    TURN_FAILED = "turn.failed"
    TURN_CANCELLED = "turn.cancelled"
    TURN_INTERRUPTED = "turn.interrupted"


#: The metadata key marking a field that is left out of the JSON when None.
_OMIT_IF_NONE = "yoi_omit_if_none"


def _omitted_when_none() -> Any:
    """An optional field (default None) that the JSON leaves out when None."""
    return attrs.field(default=None, metadata={_OMIT_IF_NONE: True})


def omits_none(field: attrs.Attribute[Any]) -> bool:
    """Whether the JSON leaves ``field`` out when it is None (else: ``null``).

    Args:
        field: A field of one of this module's classes (``attrs.fields``).

    Returns:
        True for fields made optional-and-omitted, such as
        :attr:`EventError.status_code`.
    """
    return bool(field.metadata.get(_OMIT_IF_NONE, False))


@attrs.frozen
class EventError:
    """Why a turn failed, or what failure an engine retries.

    The ``error`` of ``turn.failed`` and ``turn.retrying``: an engine error's
    ``code`` and message plus its details (``EngineError.details()``).

    Attributes:
        code: The failure's stable code (``"engine_http_error"``,
            ``"engine_stream_incomplete"``, ``"worker_crashed"``, ...).
        message: Its one-line description; never holds a secret.
        status_code: The HTTP status the model server answered (400-599);
            left out of the JSON when None (not an HTTP failure).
        provider_code: The ``code`` or ``type`` of the server's error body
            (``"rate_limit_exceeded"``); left out of the JSON when None.
    """

    code: str
    message: str
    status_code: int | None = _omitted_when_none()
    provider_code: str | None = _omitted_when_none()

    @classmethod
    def from_details(
        cls, code: str, message: str, details: Mapping[str, Any] | None
    ) -> EventError:
        """Build one from an error's code, message and details.

        Args:
            code: The error's code (``EngineError.code``).
            message: Its message.
            details: ``EngineError.details()``, or None. Only
                ``status_code`` (an int) and ``provider_code`` (a str) are
                kept; other keys (an engine's own error may add some) are
                left out.

        Returns:
            The error as events carry it.
        """
        if not details:
            return cls(code, message)
        status = details.get("status_code")
        provider = details.get("provider_code")
        return cls(
            code,
            message,
            status if isinstance(status, int) else None,
            provider if isinstance(provider, str) else None,
        )


@attrs.frozen
class WorkerCreatedData:
    """``worker.created``: the Worker exists (always ``seq`` 1).

    Attributes:
        display_name: The name shown for it, or None.
        profile: Its profile (``"companion"``, ...).
        engine: The name of the engine it runs on (``"local"``).
        status: Its status when created (``idle``).
    """

    event_type: ClassVar[EventType] = EventType.WORKER_CREATED
    display_name: str | None
    profile: str
    engine: str
    status: WorkerStatus


@attrs.frozen
class WorkerStatusData:
    """``worker.status``: ``idle`` <-> ``running``.

    Attributes:
        status: The new status.
        previous: The status before.
    """

    event_type: ClassVar[EventType] = EventType.WORKER_STATUS
    status: WorkerStatus
    previous: WorkerStatus


@attrs.frozen
class WorkerStoppedData:
    """``worker.stopped``: the actor ended after stop; the stream ends.

    Attributes:
        reason: The reason given to stop (``"shutdown"`` when the Runtime
            closed), or None when stop was given none.
    """

    event_type: ClassVar[EventType] = EventType.WORKER_STOPPED
    reason: str | None


@attrs.frozen
class WorkerFailedData:
    """``worker.failed``: the actor crashed; the stream ends.

    Attributes:
        error: ``code`` ``"worker_crashed"`` and the exception, in one line.
    """

    event_type: ClassVar[EventType] = EventType.WORKER_FAILED
    error: TurnError


@attrs.frozen
class TurnAcceptedData:
    """``turn.accepted``: input admitted as a new turn.

    Attributes:
        turn_id: The new turn.
        input: The input text.
        input_id: The caller's idempotency key, or None.
    """

    event_type: ClassVar[EventType] = EventType.TURN_ACCEPTED
    turn_id: str
    input: str
    input_id: str | None


@attrs.frozen
class TurnStartedData:
    """``turn.started``: the engine starts (it holds an engine slot).

    Attributes:
        turn_id: The turn.
        history_omitted: Earlier exchanges left out of the prompt so that it
            fits the engine's context (0 in events stored before version 3
            of the store's schema).
    """

    event_type: ClassVar[EventType] = EventType.TURN_STARTED
    turn_id: str
    history_omitted: int = 0


@attrs.frozen
class TurnRetryingData:
    """``turn.retrying``: the engine is about to wait, then retry (only
    before the first text).

    Attributes:
        turn_id: The turn.
        attempt: The attempt about to be made: 2, 3, ...
        delay: Seconds the engine waits first.
        error: The failure being retried (``code`` ``"engine_error"`` for a
            failure that is not an ``EngineError``).
    """

    event_type: ClassVar[EventType] = EventType.TURN_RETRYING
    turn_id: str
    attempt: int
    delay: float
    error: EventError


@attrs.frozen
class TurnTextDeltaData:
    """``turn.text_delta``: streamed text, in order.

    Attributes:
        turn_id: The turn.
        text: The delta (never empty).
    """

    event_type: ClassVar[EventType] = EventType.TURN_TEXT_DELTA
    turn_id: str
    text: str


@attrs.frozen
class TurnCompletedData:
    """``turn.completed``: the model said it finished.

    Attributes:
        turn_id: The turn.
        usage: Token counts as the model server reported them (zeros if none).
        finish_reason: As the server said (``"stop"``, ``"length"``, ...);
            None (left out of the JSON) only in events stored before version
            3 of the store's schema, which did not record it.
        truncated: ``finish_reason == "length"`` (False in those old events).
    """

    event_type: ClassVar[EventType] = EventType.TURN_COMPLETED
    turn_id: str
    usage: Usage
    finish_reason: str | None = _omitted_when_none()
    truncated: bool = False


@attrs.frozen
class TurnFailedData:
    """``turn.failed``: the engine failed, or the actor crashed mid-turn.

    Attributes:
        turn_id: The turn.
        error: Why (``"engine_stream_incomplete"``,
            ``"context_length_exceeded"``, ``"worker_crashed"``, ...), with
            ``status_code`` and ``provider_code`` for HTTP failures.
    """

    event_type: ClassVar[EventType] = EventType.TURN_FAILED
    turn_id: str
    error: EventError


@attrs.frozen
class TurnCancelledData:
    """``turn.cancelled``: cancel, stop or shutdown ended the turn.

    Attributes:
        turn_id: The turn.
        reason: The reason given (``"shutdown"`` when the Runtime closed),
            or None.
    """

    event_type: ClassVar[EventType] = EventType.TURN_CANCELLED
    turn_id: str
    reason: str | None


@attrs.frozen
class TurnInterruptedData:
    """``turn.interrupted``: a durable Runtime started again after its
    process died mid-turn.

    Attributes:
        turn_id: The turn.
        reason: ``"process_exited"``.
    """

    event_type: ClassVar[EventType] = EventType.TURN_INTERRUPTED
    turn_id: str
    reason: str


#: Any event's payload.
EventData: TypeAlias = (
    WorkerCreatedData
    | WorkerStatusData
    | WorkerStoppedData
    | WorkerFailedData
    | TurnAcceptedData
    | TurnStartedData
    | TurnRetryingData
    | TurnTextDeltaData
    | TurnCompletedData
    | TurnFailedData
    | TurnCancelledData
    | TurnInterruptedData
)

#: Each event type's payload class, in ``EventType`` order.
EVENT_DATA: Mapping[EventType, type[EventData]] = types.MappingProxyType(
    {
        cls.event_type: cls
        for cls in sorted(
            typing.get_args(EventData),
            key=lambda cls: list(EventType).index(cls.event_type),
        )
    }
)


# -- JSON Schemas -------------------------------------------------------------


def event_schemas() -> dict[str, dict[str, Any]]:
    """Return the JSON Schemas of events, for ``components/schemas``.

    ``Event`` is one of twelve objects, one per event type: the envelope's
    fields (``seq``, ``cursor``, ``runtime_id``, ``worker_id``, ``at``),
    ``type`` fixed to that type, and ``data`` referring to the type's payload
    schema (named after its class, as are ``EventError``, ``TurnError`` and
    ``Usage``). A field left out when None is optional and never ``null``;
    a field typed ``X | None`` is required and may be ``null``.

    Returns:
        The schemas by component name; ``$ref`` values point to
        ``#/components/schemas/NAME``. Shaped like the rest of the OpenAPI
        documents' schemas (``Usage`` is identical to the one the summaries
        use), so they can be merged in.
    """
    from ._events import Event  # the envelope (it imports this module)

    components: dict[str, dict[str, Any]] = {}
    hints = typing.get_type_hints(Event)
    envelope = {
        name: _schema(hint, components)
        for name, hint in hints.items()
        if name not in ("type", "data")
    }
    variants = []
    for event_type, cls in EVENT_DATA.items():
        properties = {
            **envelope,
            "type": {"const": event_type.value},
            "data": _schema(cls, components),
        }
        variants.append(
            {"type": "object", "properties": properties, "required": list(properties)}
        )
    components["Event"] = {"oneOf": variants}
    return components


_SIMPLE = {str: "string", bool: "boolean", int: "integer", float: "number"}


def _schema(hint: Any, components: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The schema of one type hint, adding attrs classes to ``components``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return {"anyOf": [_schema(arg, components) for arg in typing.get_args(hint)]}
    if hint is type(None):
        return {"type": "null"}
    if hint in _SIMPLE:
        return {"type": _SIMPLE[hint]}
    if hint is datetime.datetime:
        return {"type": "string", "format": "date-time"}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"type": "string", "enum": [member.value for member in hint]}
    if isinstance(hint, type) and attrs.has(hint):
        name = hint.__name__
        if name not in components:
            hints = typing.get_type_hints(hint)
            fields = attrs.fields(hint)
            components[name] = {
                "type": "object",
                "properties": {
                    f.name: _schema(
                        _not_none(hints[f.name]) if omits_none(f) else hints[f.name],
                        components,
                    )
                    for f in fields
                },
                "required": [f.name for f in fields if not omits_none(f)],
            }
        return {"$ref": f"#/components/schemas/{name}"}
    raise TypeError(f"no schema for {hint!r}")


def _not_none(hint: Any) -> Any:
    """``X`` for ``X | None`` (an omitted field is never ``null``)."""
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return args[0] if len(args) == 1 else hint
