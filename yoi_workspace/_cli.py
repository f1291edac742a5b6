"""The ``yoi-workspace`` command, which needs the ``workspace`` extra."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

__all__ = ["main"]

_SERVER_MODULES = ("quart_trio", "hypercorn", "trio_websocket")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the backend; without the workspace extra, say how to get it."""
    missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        print(
            "yoi-workspace: the workspace backend needs the 'workspace' extra "
            f"(missing: {', '.join(missing)}).\n"
            "Install it with: pip install 'yoi-runtime[workspace]'",
            file=sys.stderr,
        )
        return 2
    from ._server._serve import main as serve

    return serve(argv)
