"""The ``yoi-workspace`` command, which needs the ``workspace`` extra."""

from __future__ import annotations

from collections.abc import Sequence

from yoi_runtime.serving import run_server_command

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the backend; without the workspace extra, say how to get it."""
    return run_server_command(
        "yoi-workspace",
        "workspace",
        "the workspace backend",
        "yoi_workspace._server._serve",
        argv,
    )
