"""Where a yoi installation keeps its Pods, and the ids the original derives.

The upstream Rust project yoi (HareK02/yoi at ``159704dc``) resolves its
directories from environment variables (``manifest/src/paths.rs``; see
``shared/reference/yoi-local-pods.md`` section 2), first match wins::

    data dir     $YOI_DATA_DIR     | $YOI_HOME           | $HOME/.yoi
    runtime dir  $YOI_RUNTIME_DIR  | $YOI_HOME/run       | $XDG_RUNTIME_DIR/yoi
                                                         | $HOME/.yoi/run

A variable set to the empty string counts as unset. :func:`resolve_yoi_home`
does the same; :class:`YoiHome` is the result (never shown to a browser).

:func:`bounded_backend_identifier` is the original workspace server's id
derivation (``workspace-server/src/hosts.rs:768-826``): Worker ids of Pods
are ``bounded_backend_identifier("local-pod-", pod_name)``, the host id is
``bounded_backend_identifier("local-", workspace_id)``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import attrs

__all__ = [
    "YoiHome",
    "bounded_backend_identifier",
    "derive_workspace_id",
    "resolve_yoi_home",
]

#: The longest id, and the hex digits of the digest that ends it.
_MAX_LEN, _DIGEST_LEN = 120, 16


@attrs.frozen
class YoiHome:
    """The directories of one yoi installation.

    Attributes:
        data_dir: Holds ``pods/`` and ``sessions/`` (None: unknown, so no Pod
            can be listed).
        runtime_dir: Holds ``pods.json`` and the per-Pod runtime
            directories (None: unknown, so every Pod reads as stopped).
    """

    data_dir: Path | None = attrs.field(default=None, repr=False)
    runtime_dir: Path | None = attrs.field(default=None, repr=False)

    @property
    def pods_dir(self) -> Path | None:
        """``{data_dir}/pods``: one directory per Pod name."""
        return None if self.data_dir is None else self.data_dir / "pods"

    @property
    def sessions_dir(self) -> Path | None:
        """``{data_dir}/sessions``: ``{session_id}/{segment_id}.jsonl`` logs."""
        return None if self.data_dir is None else self.data_dir / "sessions"

    @property
    def allocations(self) -> Path | None:
        """``{runtime_dir}/pods.json``: the machine-wide allocation table."""
        return None if self.runtime_dir is None else self.runtime_dir / "pods.json"

    @classmethod
    def at(cls, yoi_home: str | os.PathLike[str]) -> YoiHome:
        """The directories of ``YOI_HOME=yoi_home``: data there, runtime in
        its ``run/``."""
        home = Path(yoi_home)
        return cls(home, home / "run")


def resolve_yoi_home(env: Mapping[str, str] | None = None) -> YoiHome:
    """Resolve the data and runtime directories as yoi does.

    Args:
        env: The environment to read (None: ``os.environ``).

    Returns:
        The directories; either is None when nothing applies (no ``HOME``
        either). Nothing is created or checked.
    """
    values = os.environ if env is None else env

    def get(key: str) -> str | None:
        return values.get(key) or None  # the empty string counts as unset

    home, yoi_home, xdg = get("HOME"), get("YOI_HOME"), get("XDG_RUNTIME_DIR")
    data = get("YOI_DATA_DIR") or yoi_home or (home and f"{home}/.yoi")
    run = (
        get("YOI_RUNTIME_DIR")
        or (yoi_home and f"{yoi_home}/run")
        or (xdg and f"{xdg}/yoi")
        or (home and f"{home}/.yoi/run")
    )
    return YoiHome(Path(data) if data else None, Path(run) if run else None)


def _sanitize(value: str) -> str:
    out = []
    for ch in value:
        if ch.isascii() and ch.isalnum():
            out.append(ch.lower())
        elif ch in "-_":
            out.append(ch)
        else:
            out.append("-")
    return "".join(out).strip("-")


def bounded_backend_identifier(prefix: str, value: str) -> str:
    """The original workspace server's id for ``value``.

    Args:
        prefix: ``"local-pod-"`` for a Pod's Worker, ``"local-"`` for a host.
        value: The Pod's directory name, or the workspace id.

    Returns:
        At most 120 characters of ``[a-z0-9_-]``: the prefix, ``value``
        sanitised, ``-`` and the first 16 hex digits of its SHA-256; stable
        across restarts and distinct for names that sanitise alike.
    """
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:_DIGEST_LEN]
    body = _sanitize(value) or "id"
    budget = max(_MAX_LEN - len(prefix) - (1 + _DIGEST_LEN), 1)
    if len(body) > budget:
        body = body[:budget].strip("-") or "id"
    ident = f"{prefix}{body}-{digest}"
    if len(ident) > _MAX_LEN:
        ident = prefix[: _MAX_LEN - 1 - _DIGEST_LEN] + "-" + digest
    return ident


def derive_workspace_id(source: str) -> str:
    """A stable workspace id derived from a path (a config file or yoi home).

    Args:
        source: The absolute path the identity is derived from.

    Returns:
        ``ws-`` and the first 16 hex digits of the path's SHA-256: the same
        path always gives the same id, and the id reveals no path.
    """
    return "ws-" + hashlib.sha256(source.encode("utf-8")).hexdigest()[:_DIGEST_LEN]
