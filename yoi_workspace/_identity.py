"""The workspace a backend serves: its id, its name and its root.

The original yoi workspace server is bound to one workspace: a UUIDv7 kept
in ``{workspace_root}/.yoi/workspace.toml`` names it, its root's last path
component labels it, and only the Pods whose metadata names that root are
shown (``shared/reference/legacy-browser-api.md`` sections 4.3, 5 and 8).
:func:`resolve_identity` finds the same for this backend.
"""

from __future__ import annotations

import tomllib
from pathlib import Path, PurePosixPath

import attrs

from ._pod_files import FileProblem, read_capped
from ._yoi_home import derive_workspace_id

__all__ = ["WorkspaceIdentity", "resolve_identity"]

#: The largest ``.yoi/workspace.toml`` read, in bytes.
_MAX_TOML = 64 * 1024


@attrs.frozen
class WorkspaceIdentity:
    """Which workspace the backend serves.

    Attributes:
        workspace_id: Stable id: the config's ``workspace_id``, else the
            workspace root's ``.yoi/workspace.toml``, else derived from the
            config file's (or the yoi home's) path.
        display_name: The workspace root's last path component, or
            ``"workspace"``.
        root: The workspace root (the one path ``/api/workspace`` shows, as
            the original does), or None: then Pods are not scoped.
        store: ``"sqlite"`` when the embedded Runtime is durable, else
            ``"memory"``.
    """

    workspace_id: str
    display_name: str = "workspace"
    root: str | None = None
    store: str = "memory"


def resolve_identity(
    *,
    workspace_id: str | None,
    root: str | None,
    derive_from: str,
    store: str = "memory",
) -> WorkspaceIdentity:
    """Find the workspace's identity (blocking: reads one small file).

    Args:
        workspace_id: Configured id; wins when given.
        root: The workspace root (absolute), or None.
        derive_from: The path to derive an id from when nothing else names
            one (the config file, else the yoi home).
        store: What ``/api/workspace`` reports as the record store.

    Returns:
        The identity; an unreadable ``workspace.toml`` is ignored.
    """
    if workspace_id is None and root is not None:
        workspace_id = _from_toml(root)
    if workspace_id is None:
        workspace_id = derive_workspace_id(derive_from)
    name = PurePosixPath(root.replace("\\", "/").rstrip("/")).name if root else ""
    return WorkspaceIdentity(workspace_id, name or "workspace", root, store)


def _from_toml(root: str) -> str | None:
    try:
        raw = read_capped(Path(root) / ".yoi" / "workspace.toml", _MAX_TOML)
        value = tomllib.loads(raw.decode("utf-8")).get("workspace_id")
    except (FileProblem, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None
