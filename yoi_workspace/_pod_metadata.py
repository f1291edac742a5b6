"""Upstream yoi's ``PodMetadata`` schema, checked as its serde parse does.

``pod-store/src/lib.rs:97-113`` at ``159704dc``
(``shared/reference/yoi-local-pods.md`` section 3.2): ``pod_name`` is
required; ``active`` is absent, null or ``{session_id, segment_id?}`` with
UUIDs (they become path components, so anything else is refused);
``workspace_root`` a string or null; the child, reclaimed-child and peer
arrays hold their structs; unknown keys are ignored. Messages name fields,
never values.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["metadata_problem"]


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


_CHILD_FIELDS = {
    "pod_name": str,
    "socket_path": str,
    "scope_delegated": list,
    "callback_address": str,
}
_RULE_FIELDS = {"target": str, "permission": str, "recursive": bool}


def metadata_problem(data: Any) -> str | None:
    """Why ``data`` is not a ``PodMetadata`` (upstream's strict serde parse,
    unknown keys ignored); None when it is. Names fields, never values."""
    if not isinstance(data, dict):
        return "invalid type: expected struct PodMetadata"
    if "pod_name" not in data:
        return "missing field `pod_name`"
    if not isinstance(data["pod_name"], str):
        return "invalid type for `pod_name`: expected a string"
    active = data.get("active")
    if active is not None:
        if not isinstance(active, dict):
            return "invalid type for `active`: expected struct PodActiveSegmentRef"
        if "session_id" not in active:
            return "missing field `session_id`"
        if not _is_uuid(active["session_id"]):
            return "invalid value for `session_id`: expected a UUID"
        segment = active.get("segment_id")
        if segment is not None and not _is_uuid(segment):
            return "invalid value for `segment_id`: expected a UUID"
    root = data.get("workspace_root")
    if root is not None and not isinstance(root, str):
        return "invalid type for `workspace_root`: expected a string"
    for key, fields in (
        ("spawned_children", _CHILD_FIELDS),
        ("reclaimed_children", {"pod_name": str, "scope_delegated": list}),
        ("peers", {"pod_name": str}),
    ):
        if key not in data:
            continue
        items = data[key]
        if not isinstance(items, list):
            return f"invalid type for `{key}`: expected a sequence"
        for item in items:
            problem = _struct_problem(item, fields, key)
            if problem is not None:
                return problem
            for rule in item.get("scope_delegated", ()):
                problem = _struct_problem(rule, _RULE_FIELDS, "scope_delegated")
                if problem is not None:
                    return problem
    return None


def _struct_problem(item: Any, fields: Mapping[str, type], where: str) -> str | None:
    if not isinstance(item, dict):
        return f"invalid type in `{where}`: expected a struct"
    for field, kind in fields.items():
        if field not in item:
            return f"missing field `{field}`"
        if type(item[field]) is not kind:
            return f"invalid type for `{field}` in `{where}`"
    return None
