"""The ``yoi-runtime`` command, which needs the ``server`` extra.

:func:`run_server_command` runs before the server modules are known to be
installed, so it lives here, importing nothing but the standard library;
:mod:`yoi_runtime.serving` re-exports it for ``yoi-workspace``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence

from ._version import __version__

__all__ = ["main", "run_server_command"]

#: What the ``server`` and ``workspace`` extras bring that the core lacks.
_SERVER_MODULES = ("quart_trio", "hypercorn", "trio_websocket")


def run_server_command(
    prog: str, extra: str, what: str, module: str, argv: Sequence[str] | None
) -> int:
    """Run ``module``'s ``main(argv)``, or say which extra to install.

    Args:
        prog: The command's name, for messages (``"yoi-runtime"``).
        extra: The extra that brings the server modules (``"server"``).
        what: What the command runs, for the message.
        module: The module holding ``main``, imported only once the server
            modules are known to be there.
        argv: The command's arguments.

    Returns:
        The exit status: ``main``'s, or 2 when the extra is missing.
        ``--version`` is answered here, so it works without the extra.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if "--version" in args:
        print(f"{prog} {__version__}")
        return 0
    missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"{prog}: {what} needs the '{extra}' extra "
            f"(missing: {', '.join(missing)}).\n"
            f"Install it with: pip install 'yoi-runtime[{extra}]'",
            file=sys.stderr,
        )
        return 2
    status: int = importlib.import_module(module).main(argv)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the runtime process; without the server extra, say how to get it."""
    return run_server_command(
        "yoi-runtime",
        "server",
        "the runtime process",
        "yoi_runtime._server._serve",
        argv,
    )
