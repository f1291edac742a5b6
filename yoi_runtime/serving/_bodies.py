"""The request bodies both servers read, for the same commands.

``yoi-runtime``'s ``/v1/workers/...`` routes and the workspace backend's
``/api/runtimes/{runtime_id}/workers/...`` routes take the same JSON bodies:
exact fields, exact JSON types (:func:`~._http.read_body`), one class each.
"""

from __future__ import annotations

import attrs

__all__ = ["CancelBody", "CreateWorkerBody", "InputBody", "StopBody"]


@attrs.frozen
class CreateWorkerBody:
    """The body of ``POST /v1/workers`` (every field optional)."""

    profile: str = "companion"
    display_name: str | None = None
    engine: str | None = None
    system_prompt: str | None = None
    worker_id: str | None = None
    scopes: list[str] | None = None


@attrs.frozen
class InputBody:
    """The body of ``POST /v1/workers/{worker_id}/input``."""

    text: str
    input_id: str | None = None


@attrs.frozen
class StopBody:
    """The body of ``POST /v1/workers/{worker_id}/stop`` (optional)."""

    reason: str | None = None


@attrs.frozen
class CancelBody:
    """The body of ``POST /v1/workers/{worker_id}/cancel`` (optional)."""

    reason: str | None = None
    turn_id: str | None = None
