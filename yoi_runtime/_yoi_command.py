"""The ``yoi`` command's entry point, which needs the ``client`` extra.

It lives outside :mod:`yoi_runtime.client` because importing that package
without the extra raises :class:`ImportError`: here the missing modules are
found first and named in one line (exit status 2), never a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

__all__ = ["main"]

#: What the ``client`` extra brings that the core lacks.
_CLIENT_MODULES = ("trio_websocket",)


def main(argv: list[str] | None = None) -> int:
    """Run ``yoi`` (:func:`yoi_runtime.client._cli.main`), or say which extra
    to install.

    Args:
        argv: The arguments after the command's name; None reads
            :data:`sys.argv`.

    Returns:
        The exit status: the command's, or 2 when the extra is missing.
    """
    missing = [m for m in _CLIENT_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"yoi: this command needs the 'client' extra (missing: "
            f"{', '.join(missing)}); install it with: "
            'pip install "yoi-runtime[client]"',
            file=sys.stderr,
        )
        return 2
    status: int = importlib.import_module("yoi_runtime.client._cli").main(argv)
    return status
