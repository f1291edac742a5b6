"""The allocation table ``{runtime_dir}/pods.json`` and pid liveness.

Upstream yoi's ``pod-registry`` (``shared/reference/yoi-local-pods.md``
section 4) keeps one machine-wide table of live Pods: ``{"allocations":
[{pod_name, pid, socket, scope_allow, scope_deny, delegated_from,
segment_id}]}``. It is opened read-only (never created), under a shared
``flock``, parsed leniently (rows that do not fit are skipped), and read once
more when a writer was half-way. It is never written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import attrs

from ._pod_files import FileProblem, loads, read_capped
from ._yoi_home import YoiHome

__all__ = ["MAX_ALLOCATIONS_BYTES", "Allocation", "pid_alive", "read_allocations"]

#: The largest ``pods.json`` read, in bytes.
MAX_ALLOCATIONS_BYTES = 4 << 20


@attrs.frozen
class Allocation:
    """One Pod's entry of ``pods.json``, as far as liveness needs it.

    Attributes:
        alive: ``pid_alive`` of its pid.
        segment_id: The segment it writes; None for a child not adopted yet.
        delegated_from: The parent Pod's name, for a spawned child.
    """

    alive: bool
    segment_id: str | None
    delegated_from: str | None


def read_allocations(
    home: YoiHome, note: Callable[[str], None]
) -> Mapping[str, Allocation] | None:
    """``pods.json`` by Pod name; None when it cannot be read (liveness is
    then unknown), an empty table when it is absent or empty."""
    path = home.allocations
    if path is None:
        return {}
    try:
        raw = read_capped(path, MAX_ALLOCATIONS_BYTES, shared_lock=True)
    except FileProblem as problem:
        if problem.message == "it is missing":
            return {}
        note(
            f"the allocation table cannot be read ({problem.message}); "
            "every Pod is shown as stopped",
        )
        return None
    if not raw.strip():
        return {}
    try:
        table = loads(raw)
    except FileProblem:
        try:  # a writer may have been half-way: read once more
            table = loads(read_capped(path, MAX_ALLOCATIONS_BYTES, shared_lock=True))
        except FileProblem as problem:
            note(
                f"the allocation table is not usable ({problem.message}); "
                "every Pod is shown as stopped",
            )
            return None
    rows = table.get("allocations", []) if isinstance(table, dict) else None
    if not isinstance(rows, list):
        note(
            "the allocation table has no list of allocations; every Pod is "
            "shown as stopped",
        )
        return None
    found: dict[str, Allocation] = {}
    for row in rows:
        if not isinstance(row, dict):
            continue
        name, pid = row.get("pod_name"), row.get("pid")
        if not isinstance(name, str) or type(pid) is not int:
            continue
        segment = row.get("segment_id")
        parent = row.get("delegated_from")
        found[name] = Allocation(
            pid_alive(pid),
            segment if isinstance(segment, str) else None,
            parent if isinstance(parent, str) else None,
        )
    return found


def pid_alive(pid: int) -> bool:
    """Upstream's liveness test (``pod-registry/src/mutate.rs:270-285``).

    0, negative numbers and values of 2**31 and above are dead (upstream
    casts to ``i32``; Python's ``kill(0, 0)`` would address our own process
    group); ``kill(pid, 0)`` succeeding or failing with ``EPERM`` is alive;
    ``ESRCH`` is dead.
    """
    if pid <= 0 or pid > 0x7FFF_FFFF:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True
