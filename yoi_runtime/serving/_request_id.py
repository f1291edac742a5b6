"""The id of the request being served, for log lines and calls onward.

Both processes give every HTTP request and WebSocket an id: the request's
``X-Request-Id`` when it is sane (:func:`sane_request_id`: 1 to 128
characters of ``A-Z a-z 0-9 . _ : -``), else a fresh one
(:func:`new_request_id`, ``req-`` and 16 hex digits). The serving layer
sets :data:`REQUEST_ID` for the request's task (and the tasks it starts),
so a log line written while serving it, or a call the workspace backend
makes to a remote Runtime for it, carries the same id. Nothing here
imports a server library.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

__all__ = ["HEADER", "REQUEST_ID", "new_request_id", "sane_request_id"]

#: The header carrying a request id, both ways.
HEADER = "X-Request-Id"

#: The id of the request the current task serves; None outside a request.
REQUEST_ID: ContextVar[str | None] = ContextVar("yoi_request_id", default=None)

_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def new_request_id() -> str:
    """A fresh request id: ``req-`` and 16 hex digits."""
    return "req-" + secrets.token_hex(8)


def sane_request_id(value: str | None) -> str | None:
    """``value`` when it may be used as a request id as given, else None."""
    if value is not None and _SANE.fullmatch(value):
        return value
    return None
