"""The JSON shapes of the public value types (one dedicated cattrs converter).

The runtime process, its client and the docs all use these shapes, so the
embedded library and the network agree on every field name.
"""

from __future__ import annotations

import datetime
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.json import JsonConverter, make_converter

from ._event_data import EVENT_DATA, EventData, EventError, omits_none
from ._events import Event, EventType, Gap
from ._types import Page, TranscriptPage, WorkerPage

__all__ = [
    "PageForm",
    "converter",
    "item_from_json",
    "item_to_json",
    "page_form",
    "register_page",
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


@attrs.frozen
class PageForm:
    """How one concrete :class:`~yoi_runtime.Page` alias goes on the wire.

    Attributes:
        name: The alias's name, also its OpenAPI schema's (``"WorkerPage"``).
        key: The JSON key of the items (``"workers"``, ``"entries"``).
        truncated: Whether the JSON object carries ``"truncated"``.
    """

    name: str
    key: str
    truncated: bool


#: The registered page aliases (``Page[WorkerSummary]``, ...) by alias.
_PAGE_FORMS: dict[object, PageForm] = {}


def _is_page(hint: object) -> bool:
    return hint is Page or typing.get_origin(hint) is Page


def _unknown_page(hint: object) -> typing.NoReturn:
    if hint is Page:
        problem = "a bare Page does not know its item type"
    else:
        problem = f"{hint!r} is not a registered page alias"
    raise TypeError(
        f"{problem}: name a registered alias, as in converter.unstructure(page, "
        "unstructure_as=WorkerPage) or converter.structure(value, WorkerPage), "
        "or register the alias with register_page"
    )


def page_form(alias: object) -> PageForm:
    """Return the wire form registered for a page alias.

    Args:
        alias: A parametrised page such as ``Page[WorkerSummary]``.

    Returns:
        Its name, items key and whether it carries ``truncated``.

    Raises:
        TypeError: ``alias`` was not registered with :func:`register_page`
            (a bare :class:`~yoi_runtime.Page` never is).
    """
    form = _PAGE_FORMS.get(alias)
    return _unknown_page(alias) if form is None else form


def register_page(alias: Any, name: str, key: str, *, truncated: bool) -> None:
    """Give a page alias its JSON shape in :data:`converter`, both ways.

    The JSON object is ``{key: [...], "next_cursor": ...}``, with
    ``"truncated"`` after them when ``truncated`` is true (when false, the
    key is left out and structuring sets ``truncated`` to False). The
    OpenAPI documents read the same form (:func:`page_form`).

    Args:
        alias: A parametrised page such as ``Page[WorkerSummary]``; a page
            is unstructured with ``unstructure_as=alias``.
        name: The alias's name, used as its OpenAPI schema's name.
        key: The JSON key of the items.
        truncated: Whether the JSON object carries ``"truncated"``.

    Call it once per alias, when the module defining the alias is imported
    (as ``yoi_runtime`` does for its two and ``yoi_workspace`` for
    ``WorkerViewPage``): the converter is shared.
    """
    items, flag = override(rename=key), override(omit=not truncated)
    unstructure: Callable[[Any], dict[str, Any]]
    unstructure = make_dict_unstructure_fn(
        alias, converter, items=items, truncated=flag
    )
    structure: Callable[[Any, Any], Any]
    structure = make_dict_structure_fn(alias, converter, items=items, truncated=flag)
    converter.register_unstructure_hook_func(lambda hint: hint == alias, unstructure)
    converter.register_structure_hook_func(lambda hint: hint == alias, structure)
    _PAGE_FORMS[alias] = PageForm(name, key, truncated)


# A page without a registered alias is a programming error, not a guess at
# its key (hooks registered later, by register_page, come first).
converter.register_unstructure_hook_factory(
    _is_page, lambda hint: lambda _: _unknown_page(hint)
)
converter.register_structure_hook_func(
    _is_page, lambda value, hint: _unknown_page(hint)
)
register_page(WorkerPage, "WorkerPage", "workers", truncated=False)
register_page(TranscriptPage, "TranscriptPage", "entries", truncated=True)


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
