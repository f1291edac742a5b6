"""The ``yoi-runtime`` command, which needs the ``server`` extra."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

__all__ = ["main"]

_SERVER_MODULES = ("quart_trio", "hypercorn", "trio_websocket")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the runtime process; without the server extra, say how to get it."""
    missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        print(
            "yoi-runtime: the runtime process needs the 'server' extra "
            f"(missing: {', '.join(missing)}).\n"
            "Install it with: pip install 'yoi-runtime[server]'",
            file=sys.stderr,
        )
        return 2
    from ._server._serve import main as serve

    return serve(argv)
