"""``GET /api/diagnostics``: every source's diagnostics, for the browser.

The registry's own (source ``registry``), then each Runtime's through its
handle, in registration order (source: its ``runtime_id``): an embedded
Runtime's, a remote process's ``/v1/diagnostics``, a compat source's.
Messages never name a path, pid, URL or token (the handles see to it);
absolute paths are masked here as a second guard.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from yoi_runtime import Diagnostic, YoiRuntimeError

from .._registry import RuntimeRegistry

__all__ = ["all_diagnostics", "diagnostic_json", "mask_paths", "rfc3339"]

#: An absolute path inside a message.
_PATH = re.compile(r"(?<![\w:/])/(?:[^\s'\"/]+/)*[^\s'\"/]+")


def rfc3339(at: datetime.datetime) -> str:
    """chrono's ``to_rfc3339``: ``+00:00`` and 0, 3 or 6 fraction digits."""
    at = at.astimezone(datetime.UTC)
    base = at.strftime("%Y-%m-%dT%H:%M:%S")
    micro = at.microsecond
    if micro == 0:
        fraction = ""
    elif micro % 1000 == 0:
        fraction = f".{micro // 1000:03d}"
    else:
        fraction = f".{micro:06d}"
    return f"{base}{fraction}+00:00"


def mask_paths(message: str) -> str:
    """Replace absolute paths in a message by ``<path>``."""
    return _PATH.sub("<path>", message)


def diagnostic_json(source: str, item: Diagnostic) -> dict[str, Any]:
    """One diagnostic of ``GET /api/diagnostics``."""
    return {
        "source": source,
        "code": item.code,
        "severity": item.level,
        "message": mask_paths(item.message),
        "at": rfc3339(item.at),
        "worker_id": item.worker_id,
    }


async def all_diagnostics(registry: RuntimeRegistry) -> list[dict[str, Any]]:
    """Every source's diagnostics: the registry's (source ``registry``),
    then each Runtime's in registration order (source: its ``runtime_id``).
    A Runtime whose diagnostics cannot be read adds one
    ``diagnostics_unavailable`` item instead."""
    found = [diagnostic_json("registry", d) for d in registry.diagnostics()]
    for handle in registry.handles():
        try:
            items = await handle.diagnostics()
        except YoiRuntimeError as exc:
            now = datetime.datetime.now(datetime.UTC)
            items = (
                Diagnostic(
                    now,
                    "warning",
                    "diagnostics_unavailable",
                    f"runtime {handle.runtime_id}: its diagnostics cannot be "
                    f"read now ({exc.code})",
                ),
            )
        found += [diagnostic_json(handle.runtime_id, d) for d in items]
    return found
