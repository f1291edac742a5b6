"""Errors of a model server or engine (the peer's fault).

Each fails the one turn it happened in, never the Runtime.
"""

from __future__ import annotations

from typing import Any

from ._base import YoiRuntimeError

__all__ = [
    "ContextLengthExceededError",
    "EngineConfigError",
    "EngineConnectError",
    "EngineError",
    "EngineProtocolError",
    "EngineStatusError",
    "EngineStreamIncompleteError",
    "EngineTimeoutError",
]


class EngineError(YoiRuntimeError):
    """A model server or engine failed a turn.

    Raised by engines inside a turn; the Worker turns it into a ``turn.failed``
    event and goes back to ``idle``. Never carries a secret.
    """

    code = "engine_error"


class EngineConnectError(EngineError):
    """The model server could not be reached (refused, DNS, TLS)."""

    code = "engine_unreachable"


class EngineTimeoutError(EngineError):
    """The model server did not connect or send data within its timeout."""

    code = "engine_timeout"


class EngineStatusError(EngineError):
    """The model server answered with an HTTP error status.

    Attributes:
        status_code: The HTTP status (400-599).
        provider_code: The error ``code`` or ``type`` string of the server's
            error body (``"rate_limit_exceeded"``, ...), or None.
        retry_after: Seconds the server asked to wait (``Retry-After``), or
            None.
    """

    code = "engine_http_error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        provider_code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.provider_code = provider_code
        self.retry_after = retry_after

    def details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"status_code": self.status_code}
        if self.provider_code is not None:
            details["provider_code"] = self.provider_code
        return details


class EngineProtocolError(EngineError):
    """The model server's stream was malformed or broke off."""

    code = "engine_protocol_error"


class EngineStreamIncompleteError(EngineProtocolError):
    """The stream ended without the model saying it finished.

    No choice carried a ``finish_reason``, whatever text came before: the
    server aborted the generation (llama.cpp interrupting a request, a vLLM or
    Ollama abort, a proxy closing the response). The partial text stays in
    the transcript, marked by the turn's ``failed`` status.
    """

    code = "engine_stream_incomplete"


class ContextLengthExceededError(EngineError):
    """The prompt does not fit the model's context.

    Raised when the model server refuses the prompt as too long (OpenAI's
    ``context_length_exceeded``, llama.cpp's ``exceed_context_size_error``),
    or before sending when the new input alone leaves no room. The Worker
    then sends less of its history, so the next turn succeeds.

    Attributes:
        status_code: The HTTP status the server answered, or None when the
            runtime refused the prompt before sending it.
    """

    code = "context_length_exceeded"

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code

    def details(self) -> dict[str, Any]:
        return {} if self.status_code is None else {"status_code": self.status_code}


class EngineConfigError(EngineError):
    """The engine is misconfigured (for example its API key cannot be read)."""

    code = "engine_config_error"
