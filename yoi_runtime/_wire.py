"""The JSON shapes of the public value types (one dedicated cattrs converter).

The runtime process, its client and the docs all use these shapes, so the
embedded library and the network agree on every field name.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn
from cattrs.preconf.json import JsonConverter, make_converter

from ._event_data import EVENT_DATA, EventData, EventError, omits_none
from ._events import Event, EventType, Gap

__all__ = [
    "converter",
    "item_from_json",
    "item_to_json",
    "strict_converter",
    "structure_event_data",
    "unstructure_event_data",
]

#: The package's converter: datetimes as ISO 8601 (UTC), enums as strings.
converter: JsonConverter = make_converter()
converter.register_unstructure_hook(datetime.datetime, lambda dt: dt.isoformat())
converter.register_structure_hook(
    datetime.datetime, lambda value, _: datetime.datetime.fromisoformat(value)
)


def _register_event_data(converter: cattrs.Converter) -> None:
    """Unstructure event payloads leaving out the fields that ``omits_none``
    when they are None (everything else as cattrs does it), keys in the
    order of the fields."""
    # Nested classes first: a generated function binds its fields' hooks.
    for cls in (EventError, *EVENT_DATA.values()):
        hook = make_dict_unstructure_fn(cls, converter)
        omitted = tuple(f.name for f in attrs.fields(cls) if omits_none(f))
        if omitted:
            hook = _omitting(hook, omitted)
        converter.register_unstructure_hook(cls, hook)
        _UNSTRUCTURE[cls] = hook


def _omitting(
    hook: Callable[[Any], dict[str, Any]], names: tuple[str, ...]
) -> Callable[[Any], dict[str, Any]]:
    """``hook``, leaving out the keys ``names`` when their value is None
    (cattrs' own ``omit_if_default`` would move the other ones before
    them)."""

    def unstructure(value: Any) -> dict[str, Any]:
        result = hook(value)
        for name in names:
            if result[name] is None:
                del result[name]
        return result

    return unstructure


#: Each payload class's unstructure hook (a dict lookup, not the
#: converter's dispatch, on the path of every stored or sent event).
_UNSTRUCTURE: dict[type, Callable[[Any], dict[str, Any]]] = {}
_register_event_data(converter)


def structure_event_data(type: EventType, data: Mapping[str, Any]) -> EventData:
    """Build the typed payload of an event from its JSON ``data``.

    Args:
        type: The event's type, which picks the class (``EVENT_DATA``).
        data: The event's ``data`` object, as :func:`unstructure_event_data`
            gives it (from the wire or the store). Keys the class does not
            know are ignored; fields added later have defaults, so the
            payloads a store wrote before its schema's version 3 still fit.

    Returns:
        An instance of ``EVENT_DATA[type]``.

    Raises:
        ValueError: ``data`` does not fit the class; the message names each
            bad field by its JSON path (``$.data.error.code``).
    """
    try:
        return converter.structure(data, EVENT_DATA[type])
    except cattrs.BaseValidationError as exc:
        problems = "; ".join(cattrs.transform_error(exc, path="$.data"))
        raise ValueError(f"{type.value} event data: {problems}") from None


def unstructure_event_data(data: EventData) -> dict[str, Any]:
    """Return the JSON ``data`` object of a typed payload.

    Key for key what the Worker emits as a dict: fields typed ``X | None``
    are ``null`` when unset, ``EventError.status_code`` and
    ``provider_code`` are left out when None, statuses are strings.
    """
    return _UNSTRUCTURE[data.__class__](data)


def strict_converter() -> cattrs.Converter:
    """A converter for untrusted input: no extra keys, exact JSON types.

    cattrs would otherwise turn ``42`` into ``"42"`` for a ``str`` field or
    ``"1"`` into ``True``; here a wrong type is an error naming the field
    (an ``int`` is accepted where a ``float`` is expected, as JSON has one
    number type).
    """
    strict = cattrs.Converter(forbid_extra_keys=True)
    for kind in (str, int, float, bool):
        strict.register_structure_hook(kind, _exact(kind))
    return strict


def _exact(kind: type) -> Callable[[object, object], object]:
    def structure(value: object, _: object) -> object:
        if type(value) is not kind and not (kind is float and type(value) is int):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return structure


def item_to_json(item: Event | Gap) -> dict[str, Any]:
    """Return the JSON object of one stream item.

    An :class:`Event` is ``{"seq", "cursor", "type", "runtime_id",
    "worker_id", "at", "data"}``; a :class:`Gap` is ``{"type": "stream.gap",
    "after", "resume_after", "reason"}``.
    """
    if isinstance(item, Gap):
        return {"type": "stream.gap", **converter.unstructure(item)}
    return {
        "seq": item.seq,
        "cursor": item.cursor,
        "type": item.type.value,
        "runtime_id": item.runtime_id,
        "worker_id": item.worker_id,
        "at": item.at.isoformat(),
        "data": unstructure_event_data(item.data),
    }


def item_from_json(value: dict[str, Any]) -> Event | Gap:
    """Rebuild a stream item from :func:`item_to_json`'s shape.

    Raises:
        ValueError: The ``data`` of an event does not fit its type's class
            (:func:`structure_event_data`), or ``type`` or ``at`` is not
            valid.
        KeyError: A field is missing.
    """
    if value.get("type") == "stream.gap":
        return converter.structure({k: v for k, v in value.items() if k != "type"}, Gap)
    kind = EventType(value["type"])
    return Event(
        seq=value["seq"],
        cursor=value["cursor"],
        type=kind,
        runtime_id=value["runtime_id"],
        worker_id=value["worker_id"],
        at=datetime.datetime.fromisoformat(value["at"]),
        data=structure_event_data(kind, value["data"]),
    )
