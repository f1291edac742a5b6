"""The JSON shapes of the public value types (one dedicated cattrs converter).

The runtime process, its client and the docs all use these shapes, so the
embedded library and the network agree on every field name.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import cattrs
from cattrs.preconf.json import JsonConverter, make_converter

from ._events import Event, EventType, Gap

__all__ = ["converter", "item_from_json", "item_to_json", "strict_converter"]

#: The package's converter: datetimes as ISO 8601 (UTC), enums as strings.
converter: JsonConverter = make_converter()
converter.register_unstructure_hook(datetime.datetime, lambda dt: dt.isoformat())
converter.register_structure_hook(
    datetime.datetime, lambda value, _: datetime.datetime.fromisoformat(value)
)


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
        "data": dict(item.data),
    }


def item_from_json(value: dict[str, Any]) -> Event | Gap:
    """Rebuild a stream item from :func:`item_to_json`'s shape."""
    if value.get("type") == "stream.gap":
        return converter.structure({k: v for k, v in value.items() if k != "type"}, Gap)
    return Event(
        seq=value["seq"],
        cursor=value["cursor"],
        type=EventType(value["type"]),
        runtime_id=value["runtime_id"],
        worker_id=value["worker_id"],
        at=datetime.datetime.fromisoformat(value["at"]),
        data=value["data"],
    )
