"""How the ``openai-chat`` engine reads a model server's failures.

One boundary turns httpx's exceptions into engine errors
(:func:`map_httpx_errors`); an HTTP error answer becomes
:class:`~yoi_runtime.EngineStatusError` or
:class:`~yoi_runtime.ContextLengthExceededError` with a short excerpt of its
body (:func:`status_error`); :func:`retryable` says which failures before the
first text are worth another attempt. Messages never quote a URL, a header
or the API key.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import re
import time
from collections.abc import AsyncGenerator, Iterator
from typing import Any, cast

import httpx
import httpx_sse
import trio

from .._errors import (
    ContextLengthExceededError,
    EngineConnectError,
    EngineError,
    EngineProtocolError,
    EngineStatusError,
    EngineTimeoutError,
)

__all__ = [
    "CONTEXT_MESSAGE",
    "Retryable",
    "error_message",
    "excerpt",
    "map_httpx_errors",
    "retryable",
    "status_error",
    "stop_reading",
]

#: At most this many bytes of an error response body are read.
_ERROR_BODY_LIMIT = 2048
#: Server error messages are cut to this many characters.
_EXCERPT_CHARS = 200

#: HTTP statuses worth retrying: rate limited, or the server is (briefly) down.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

#: Server messages that mean "the prompt does not fit the context".
CONTEXT_MESSAGE = re.compile(
    r"context[ _](length|window|size)|maximum context|exceeds? (the )?"
    r"(available )?context|too many tokens|prompt is too long",
    re.IGNORECASE,
)
_CONTEXT_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})


def excerpt(text: str, secret: str | None) -> str:
    """Return ``text`` as one short line, with ``secret`` blanked out."""
    if secret:
        text = text.replace(secret, "***")
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > _EXCERPT_CHARS:
        text = text[: _EXCERPT_CHARS - 1] + "…"
    return text


def error_message(error: object) -> str | None:
    """Return the human message of an OpenAI-style error value, if any.

    Accepts ``{"error": {"message": ...}}``, ``{"error": "..."}``,
    ``{"message": ...}``, ``{"detail": ...}`` and the inner error object.
    """
    if isinstance(error, str):
        return error
    if not isinstance(error, dict):
        return None
    if "error" in error and error["error"] is not error:
        inner = error_message(error["error"])
        if inner is not None:
            return inner
    for key in ("message", "detail"):
        value = error.get(key)
        if isinstance(value, str):
            return value
    return None


def _body_excerpt(body: bytes, secret: str | None) -> str:
    """Return a short excerpt of an error response body (JSON or text)."""
    text = body.decode("utf-8", errors="replace")
    try:
        message = error_message(json.loads(text))
    except ValueError:
        message = None
    return excerpt(text if message is None else message, secret)


@contextlib.contextmanager
def map_httpx_errors(connect_timeout: float, read_timeout: float) -> Iterator[None]:
    """Translate httpx's exceptions into engine errors (the one boundary).

    Messages never quote a URL or a header; only the OS's reason.
    """
    try:
        yield
    except httpx_sse.SSEError as exc:  # a TransportError: must come first
        raise EngineProtocolError(f"the model server did not stream: {exc}") from exc
    except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise EngineTimeoutError(
            f"connecting to the model server took over {connect_timeout} s"
        ) from exc
    except httpx.WriteTimeout as exc:
        raise EngineTimeoutError(
            f"sending the request took over {connect_timeout} s"
        ) from exc
    except httpx.TimeoutException as exc:
        raise EngineTimeoutError(
            f"the model server sent nothing for {read_timeout} s"
        ) from exc
    except (httpx.ConnectError, httpx.ProxyError) as exc:
        raise EngineConnectError(
            f"cannot connect to the model server: {str(exc) or type(exc).__name__}"
        ) from exc
    except (httpx.NetworkError, httpx.ProtocolError, httpx.DecodingError) as exc:
        raise EngineProtocolError(
            "the connection to the model server broke: "
            f"{str(exc) or type(exc).__name__}"
        ) from exc
    except httpx.TransportError as exc:
        raise EngineConnectError(
            f"cannot reach the model server ({type(exc).__name__})"
        ) from exc


def _retry_after_seconds(response: httpx.Response) -> float | None:
    """Return the seconds ``Retry-After`` asks for (delta or HTTP date)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _provider_code(body: bytes) -> str | None:
    """Return the error body's ``code`` (or ``type``) string, if any."""
    try:
        value = json.loads(body)
    except ValueError:
        return None
    error = value.get("error") if isinstance(value, dict) else None
    if not isinstance(error, dict):
        error = value if isinstance(value, dict) else {}
    for key in ("code", "type"):
        code = error.get(key)
        if isinstance(code, str) and code:
            return code[:100]
    return None


class Retryable(Exception):
    """Carries an engine error that may be retried (to stamina and back)."""

    def __init__(self, error: EngineError, delay: float | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.delay = delay


def retryable(error: EngineError) -> bool:
    """Whether ``error``, raised before any text streamed, is worth a retry."""
    if isinstance(error, EngineStatusError):
        return error.status_code in _RETRY_STATUSES
    if isinstance(error, EngineConnectError):
        return True
    cause = error.__cause__
    if isinstance(error, EngineTimeoutError):
        return isinstance(cause, httpx.ConnectTimeout | httpx.PoolTimeout)
    if isinstance(error, EngineProtocolError):
        # The connection broke (reset, closed) before a response came.
        return isinstance(cause, httpx.NetworkError | httpx.RemoteProtocolError)
    return False


async def stop_reading(chunks: AsyncGenerator[Any, None], *, grace: float) -> None:
    """Read ``chunks`` to its end for at most ``grace`` seconds, then cancel.

    Either way httpx's chain of response iterators ends, by exhaustion or by
    the Cancelled raised in its pending read (after which httpcore closes the
    connection), instead of being dropped half-way, which trio reports as a
    ResourceWarning (encode/httpx#3686). Reaching the end returns the
    connection to the pool. Transport errors are ignored: the caller already
    has its outcome.

    Args:
        chunks: A response iterator (of events or bytes).
        grace: Seconds to wait for the rest of the body; 0 to stop at once
            (what is already buffered may still be read).
    """
    with trio.move_on_after(grace), contextlib.suppress(httpx.RequestError):
        async for _ in chunks:
            pass


async def status_error(response: httpx.Response, key: str | None) -> EngineError:
    """Return the error for an HTTP error answer (its body read in part)."""
    status = response.status_code
    prefix = await _read_prefix(response)
    quoted = _body_excerpt(prefix, key)
    code = _provider_code(prefix)
    if status in (400, 413) and (
        code in _CONTEXT_CODES or CONTEXT_MESSAGE.search(quoted)
    ):
        return ContextLengthExceededError(
            "the prompt does not fit the model's context: "
            f"HTTP {status}" + (f": {quoted}" if quoted else ""),
            status_code=status,
        )
    return EngineStatusError(
        f"the model server answered HTTP {status}"
        + (f" ({code})" if code else "")
        + (f": {quoted}" if quoted else ""),
        status_code=status,
        provider_code=code,
        retry_after=_retry_after_seconds(response),
    )


async def _read_prefix(response: httpx.Response) -> bytes:
    """Read at most :data:`_ERROR_BODY_LIMIT` bytes of ``response``'s body."""
    data = bytearray()
    # httpx types aiter_bytes() as an AsyncIterator; it is an async generator.
    chunks = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            data += chunk
            if len(data) >= _ERROR_BODY_LIMIT:
                break
        await stop_reading(chunks, grace=0)
    return bytes(data[:_ERROR_BODY_LIMIT])
