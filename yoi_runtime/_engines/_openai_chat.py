"""The ``openai-chat`` engine: any OpenAI-compatible Chat Completions server.

One turn is one ``POST {base_url}/chat/completions`` with ``stream: true``;
the Server-Sent Events of the response are read with :mod:`httpx_sse` and
interpreted by :class:`_StreamDecoder` (sans-IO, no sockets).

A turn is complete only when the model said so: a choice carried a
``finish_reason``. ``[DONE]`` alone is not enough (llama.cpp's server, vLLM
and Ollama end an aborted generation with a role delta and ``[DONE]``).

Errors (every failure becomes exactly one :class:`~yoi_runtime.EngineError`):

=====================================================  ===========================
What happened                                          Raised
=====================================================  ===========================
key source configured but unreadable / empty           EngineConfigError
connection refused, DNS failure, proxy failure         EngineConnectError
connect, write, pool or read timeout                   EngineTimeoutError
HTTP 400 saying the prompt is too long                 ContextLengthExceededError
HTTP status >= 400                                     EngineStatusError
in-stream ``{"error": {"code": 4xx/5xx, ...}}``        EngineStatusError
in-stream ``{"error": ...}`` without such a code       EngineProtocolError
not ``text/event-stream``; ``data:`` not a JSON
object or without ``choices``; bad ``usage``           EngineProtocolError
connection broken mid-response; malformed HTTP         EngineProtocolError
stream ended without any ``finish_reason``             EngineStreamIncompleteError
=====================================================  ===========================

Retries: before the first text delta, a connection failure (refused, reset,
connect timeout), HTTP 429 and 500/502/503/504 are retried with exponential
backoff and jitter (by :mod:`stamina`), waiting what ``Retry-After`` says when
the server sends it, up to ``retry_attempts`` attempts and ``retry_timeout``
seconds; each retry is reported to the turn's listener first. Once text has
streamed nothing is retried. The last failure is raised as it was (its HTTP
status and the provider's error code kept).

Text: surrogate pairs split across two deltas are joined, and a lone
surrogate becomes U+FFFD, so the text is always valid Unicode.

The API key is read when a turn starts and lives only in that turn's request
headers; it is never stored on the engine, logged, or put in a message.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import os
import random
import re
import time
from collections.abc import AsyncGenerator, Iterator, Sequence
from typing import Any, Literal, cast

import attrs
import httpx
import httpx_sse
import stamina
import trio

from .._errors import (
    ContextLengthExceededError,
    EngineConfigError,
    EngineConnectError,
    EngineError,
    EngineProtocolError,
    EngineStatusError,
    EngineStreamIncompleteError,
    EngineTimeoutError,
)
from ._base import (
    Completion,
    Retry,
    TurnListener,
    TurnRequest,
    Usage,
    estimate_tokens,
)

__all__ = ["OpenAIChatEngine"]

#: At most this many bytes of an error response body are read.
_ERROR_BODY_LIMIT = 2048
#: Server error messages are cut to this many characters.
_EXCERPT_CHARS = 200
#: Closing the connection pool in ``aclose`` gives up after this many seconds.
_CLOSE_TIMEOUT = 5.0
#: Reading past ``[DONE]`` to the end of the body stops after this many seconds.
_DRAIN_TIMEOUT = 1.0
#: The first retry waits about this many seconds; each next one twice as long.
_RETRY_WAIT_INITIAL = 0.5
#: Up to this many seconds of random jitter are added to each backoff.
_RETRY_JITTER = 0.5
#: HTTP statuses worth retrying: rate limited, or the server is (briefly) down.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Token counts remembered per engine (text -> count), newest kept.
_TOKEN_CACHE_SIZE = 4096
#: Server messages that mean "the prompt does not fit the context".
_CONTEXT_MESSAGE = re.compile(
    r"context[ _](length|window|size)|maximum context|exceeds? (the )?"
    r"(available )?context|too many tokens|prompt is too long",
    re.IGNORECASE,
)
_CONTEXT_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})
#: Any UTF-16 surrogate code point (only ever there by mistake).
_SURROGATE = re.compile("[\ud800-\udfff]")


def _valid_text(text: str) -> tuple[str, str]:
    """Join surrogate pairs and replace lone surrogates with U+FFFD.

    Returns:
        The repaired text, and a trailing high surrogate held back because
        its pair may start the next delta ("" if none).
    """
    held = ""
    if "\ud800" <= text[-1] <= "\udbff":
        text, held = text[:-1], text[-1]
    text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text, held


def _excerpt(text: str, secret: str | None) -> str:
    """Return ``text`` as one short line, with ``secret`` blanked out."""
    if secret:
        text = text.replace(secret, "***")
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > _EXCERPT_CHARS:
        text = text[: _EXCERPT_CHARS - 1] + "…"
    return text


def _error_message(error: object) -> str | None:
    """Return the human message of an OpenAI-style error value, if any.

    Accepts ``{"error": {"message": ...}}``, ``{"error": "..."}``,
    ``{"message": ...}``, ``{"detail": ...}`` and the inner error object.
    """
    if isinstance(error, str):
        return error
    if not isinstance(error, dict):
        return None
    if "error" in error and error["error"] is not error:
        inner = _error_message(error["error"])
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
        message = _error_message(json.loads(text))
    except ValueError:
        message = None
    return _excerpt(text if message is None else message, secret)


def _token_count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EngineProtocolError(
            f"the model server sent a usage chunk whose {key} is not a count"
        )
    return value


@attrs.define
class _StreamDecoder:
    """Interprets the ``data:`` payloads of one Chat Completions stream.

    Sans-IO: feed it each event's data, in order, then call :meth:`finish`.

    Attributes:
        secret: The turn's API key, blanked out of any server message quoted
            in an error.
        done: ``[DONE]`` was seen.
        finish_reason: The last ``finish_reason`` a choice carried, or None.
        usage: The last usage the server reported (zeros if none).
        streamed: Some text was returned (retrying is no longer safe).
    """

    secret: str | None = attrs.field(default=None, repr=False)
    done: bool = False
    finish_reason: str | None = None
    usage: Usage = Usage()
    streamed: bool = False
    _held: str = ""

    def feed(self, data: str) -> list[str]:
        """Interpret one event's data.

        Args:
            data: The event's ``data`` field (its ``data:`` lines joined).

        Returns:
            The chunk's non-empty text deltas, in choice order.

        Raises:
            EngineProtocolError: The data is not a chunk object, or the
                chunk is an error without an HTTP status code.
            EngineStatusError: The chunk is an error with an HTTP status
                ``code`` (400-599).
        """
        if data.strip() == "[DONE]":
            self.done = True
            return []
        if not data:
            return []
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise EngineProtocolError(
                f"the model server sent a data line that is not JSON ({exc})"
            ) from None
        if not isinstance(chunk, dict):
            raise EngineProtocolError(
                "the model server sent a data line that is not a JSON object"
            )
        if "error" in chunk:
            self._raise_stream_error(chunk["error"])
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise EngineProtocolError(
                "the model server sent a chunk without a choices list"
            )
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = Usage(
                _token_count(usage, "prompt_tokens"),
                _token_count(usage, "completion_tokens"),
            )
        texts: list[str] = []
        for choice in choices:
            if not isinstance(choice, dict):
                raise EngineProtocolError(
                    "the model server sent a choice that is not a JSON object"
                )
            reason = choice.get("finish_reason")
            if reason is not None:
                if not isinstance(reason, str) or not reason:
                    raise EngineProtocolError(
                        "the model server sent a finish_reason that is not text"
                    )
                self.finish_reason = reason
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            if content is not None and not isinstance(content, str):
                raise EngineProtocolError(
                    "the model server sent a delta whose content is not text"
                )
            if content:
                if self._held:
                    content, self._held = self._held + content, ""
                if not content.isascii() and _SURROGATE.search(content):
                    content, self._held = _valid_text(content)
                if content:
                    texts.append(content)
        if texts:
            self.streamed = True
        return texts

    def finish(self) -> tuple[list[str], Completion]:
        """Check the model said it finished; return the last text and outcome.

        Returns:
            Text still held back (a lone high surrogate at the very end, as
            U+FFFD), and the finish reason with the usage the server reported
            last (zeros if none).

        Raises:
            EngineStreamIncompleteError: No choice carried a ``finish_reason``
                (with or without ``[DONE]``).
        """
        texts = ["\ufffd"] if self._held else []
        self._held = ""
        if self.finish_reason is None:
            raise EngineStreamIncompleteError(
                "the model server ended the stream without a finish_reason"
                + (" after [DONE]" if self.done else "")
                + " (the generation was aborted or cut off)"
            )
        return texts, Completion(self.finish_reason, self.usage)

    def _raise_stream_error(self, error: object) -> None:
        message = _excerpt(_error_message(error) or "no message", self.secret)
        code = error.get("code") if isinstance(error, dict) else None
        if (
            isinstance(code, int)
            and not isinstance(code, bool)
            and (400 <= code <= 599)
        ):
            if code == 400 and _CONTEXT_MESSAGE.search(message):
                raise ContextLengthExceededError(
                    f"the prompt does not fit the model's context: {message}",
                    status_code=code,
                )
            raise EngineStatusError(
                f"the model server failed mid-stream with {code}: {message}",
                status_code=code,
            )
        raise EngineProtocolError(f"the model server failed mid-stream: {message}")


@contextlib.contextmanager
def _map_httpx_errors(connect_timeout: float, read_timeout: float) -> Iterator[None]:
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


def _check_base_url(instance: object, attribute: object, value: str) -> None:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        raise ValueError("base_url is not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("base_url must be an http:// or https:// URL")
    if url.userinfo:
        raise ValueError(
            "base_url must not hold credentials; use api_key_env or api_key_file"
        )


def _check_positive(instance: object, attribute: Any, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0 seconds, got {value!r}")


def _check_count(instance: object, attribute: Any, value: int | None) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or value < 1
    ):
        raise ValueError(f"{attribute.name} must be a whole number >= 1, got {value!r}")


def _retry_after(response: httpx.Response) -> float | None:
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


class _Retryable(Exception):
    """Carries an engine error that may be retried (to stamina and back)."""

    def __init__(self, error: EngineError, delay: float | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.delay = delay


def _retryable(error: EngineError) -> bool:
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


@attrs.define(eq=False)
class OpenAIChatEngine:
    """An engine that streams from an OpenAI-compatible Chat Completions server.

    Works with llama.cpp's ``llama-server``, vLLM, Ollama's ``/v1`` and OpenAI
    itself. Owns one :class:`httpx.AsyncClient` (a connection pool), created
    on the first turn and closed by :meth:`aclose`. Shared by any number of
    concurrent turns.

    Args:
        base_url: The API root, e.g. ``"http://127.0.0.1:8080/v1"``; turns
            post to ``{base_url}/chat/completions``. No credentials in it.
        model: The ``model`` the requests name.
        api_key_env: Name of an environment variable holding the API key.
        api_key_file: Path of a file holding the API key (surrounding
            whitespace ignored). At most one of the two; with neither, no
            ``Authorization`` header is sent. The key is read at the start of
            every turn, so it can be rotated without a restart.
        temperature: Sampling temperature sent with each request, or None for
            the server's default.
        max_tokens: Cap on completion tokens per turn, or None for none.
        connect_timeout: Seconds allowed to connect, to get a pooled
            connection, and to send the request.
        read_timeout: Longest silence between two reads of the response, in
            seconds (not a cap on the whole turn: wrap the turn in
            ``trio.fail_after`` for that).
        context_tokens: The model's context size in tokens (what the server
            was started with), or None when unknown: then the whole history
            (up to ``Limits.history_turns``) is sent.
        max_concurrent: Turns that may run on this engine at once (None: no
            limit). Turns beyond it wait, ``accepted``, in FIFO order. A
            single-slot local server wants 1.
        tokenizer: How prompt tokens are counted for the context budget:
            ``"estimate"`` (:func:`~yoi_runtime._engine.estimate_tokens`,
            conservative), ``"llama.cpp"`` (the server's ``POST /tokenize``)
            or ``"llama-cpp-python"`` (its ``POST /extras/tokenize/count``).
            A tokenizer request that fails falls back to the estimate.
        retry_attempts: Attempts per turn, the first included (1: no retry).
        retry_timeout: Seconds after which no further retry is started.
        retry_wait_max: The longest backoff between two attempts, in seconds
            (a longer ``Retry-After`` ends the retries instead).

    Raises:
        ValueError: ``base_url`` is not an http(s) URL or holds credentials,
            both key sources are given, a timeout is not > 0, or a count is
            not >= 1.

    Attributes:
        kind: ``"openai-chat"``.
    """

    base_url: str = attrs.field(validator=_check_base_url)
    model: str
    api_key_env: str | None = None
    api_key_file: str | os.PathLike[str] | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    connect_timeout: float = attrs.field(default=10.0, validator=_check_positive)
    read_timeout: float = attrs.field(default=60.0, validator=_check_positive)
    context_tokens: int | None = attrs.field(default=None, validator=_check_count)
    max_concurrent: int | None = attrs.field(default=None, validator=_check_count)
    tokenizer: Literal["estimate", "llama.cpp", "llama-cpp-python"] = attrs.field(
        default="estimate",
        validator=attrs.validators.in_(("estimate", "llama.cpp", "llama-cpp-python")),
    )
    retry_attempts: int = attrs.field(default=4, validator=_check_count)
    retry_timeout: float = attrs.field(default=30.0, validator=_check_positive)
    retry_wait_max: float = attrs.field(default=8.0, validator=_check_positive)
    kind: str = attrs.field(default="openai-chat", init=False)
    _client: httpx.AsyncClient | None = attrs.field(
        default=None, init=False, repr=False
    )
    _closed: bool = attrs.field(default=False, init=False, repr=False)
    _token_counts: dict[str, int] = attrs.field(factory=dict, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.api_key_env is not None and self.api_key_file is not None:
            raise ValueError("give api_key_env or api_key_file, not both")

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Return the tokens each text takes, by the configured ``tokenizer``.

        Counts are cached per text, so a Worker's history is tokenized once.
        A tokenizer request that fails (or an ``"estimate"`` tokenizer) gives
        :func:`~yoi_runtime._engine.estimate_tokens`.
        """
        if self.tokenizer == "estimate":
            await trio.lowlevel.checkpoint()
            return [estimate_tokens(text) for text in texts]
        cache = self._token_counts
        counts = []
        for text in texts:
            count = cache.get(text)
            if count is None:
                count = await self._tokenize(text)
                if len(cache) >= _TOKEN_CACHE_SIZE:
                    del cache[next(iter(cache))]
                cache[text] = count
            counts.append(count)
        return counts

    async def _tokenize(self, text: str) -> int:
        root = self.base_url.rstrip("/").removesuffix("/v1")
        if self.tokenizer == "llama.cpp":
            url, body, field = f"{root}/tokenize", {"content": text}, "tokens"
        else:
            url, body, field = f"{root}/extras/tokenize/count", {"input": text}, "count"
        try:
            with trio.move_on_after(self.read_timeout):
                response = await self._get_client().post(url, json=body)
                value = response.json().get(field) if response.is_success else None
                if isinstance(value, list):
                    return len(value)
                if isinstance(value, int) and not isinstance(value, bool):
                    return value
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        return estimate_tokens(text)

    async def run_turn(
        self, request: TurnRequest, listener: TurnListener
    ) -> Completion:
        """Stream one chat completion, reporting each text delta to ``listener``.

        After ``[DONE]`` the rest of the body (normally none) is read for up
        to 1 second, so the connection can go back to the pool.

        Args:
            request: The turn; its :meth:`~TurnRequest.messages` are sent.
            listener: Told each non-empty text delta, in order, and each
                retry before its wait.

        Returns:
            The model's ``finish_reason`` and the token usage from the
            stream's usage chunk (``prompt_tokens``, ``completion_tokens``;
            zeros if the server sent none).

        Raises:
            EngineConfigError: The key's env var is unset or empty, or the key
                file cannot be read or is empty.
            EngineConnectError: The server cannot be reached.
            EngineTimeoutError: Connecting took over ``connect_timeout``, or
                the server was silent for over ``read_timeout`` seconds.
            ContextLengthExceededError: The server refused the prompt as
                longer than the model's context.
            EngineStatusError: The server answered HTTP >= 400 (the message
                quotes at most 200 characters of its error), or reported an
                error with an HTTP status code inside the stream.
            EngineStreamIncompleteError: The stream ended without a
                ``finish_reason``.
            EngineProtocolError: The stream was malformed or broke off.
            trio.ClosedResourceError: :meth:`aclose` was called already.

        Cancellation:
            Leaving the ``async with`` around the response closes it (and its
            connection) before the cancellation propagates, so the server
            sees the client go away. A retry's wait is cancelled at once.
        """
        if self._closed:
            raise trio.ClosedResourceError("the engine is closed")
        key = await self._read_key()
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [
                {"role": m.role, "content": m.content} for m in request.messages()
            ],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        attempt = 1
        deadline = trio.current_time() + self.retry_timeout

        def backoff(exc: Exception) -> bool | float:
            nonlocal attempt
            if not isinstance(exc, _Retryable) or attempt >= self.retry_attempts:
                return False
            delay = exc.delay
            if delay is None:
                delay = min(
                    _RETRY_WAIT_INITIAL * 2 ** (attempt - 1), self.retry_wait_max
                ) + random.uniform(0, _RETRY_JITTER)
            elif delay > self.retry_wait_max:
                return False
            if trio.current_time() + delay > deadline:
                return False
            attempt += 1
            listener.on_retry(Retry(attempt, delay, exc.error))
            return delay

        try:
            async for retrying in stamina.retry_context(
                on=backoff, attempts=self.retry_attempts, timeout=None
            ):
                with retrying:
                    return await self._attempt(body, headers, key, listener)
        except _Retryable as exc:
            raise exc.error from exc.error.__cause__
        raise AssertionError("unreachable: stamina ends with a result or an error")

    async def _attempt(
        self,
        body: dict[str, Any],
        headers: dict[str, str],
        key: str | None,
        listener: TurnListener,
    ) -> Completion:
        """One request; a failure before any text is wrapped in _Retryable
        when it is worth a retry."""
        decoder = _StreamDecoder(secret=key)
        url = self.base_url.rstrip("/") + "/chat/completions"
        on_text = listener.on_text
        try:
            with _map_httpx_errors(self.connect_timeout, self.read_timeout):
                async with httpx_sse.aconnect_sse(
                    self._get_client(), "POST", url, json=body, headers=headers
                ) as source:
                    response = source.response
                    if response.status_code >= 400:
                        raise await _status_error(response, key)
                    async with contextlib.aclosing(source.aiter_sse()) as events:
                        try:
                            async for event in events:
                                for text in decoder.feed(event.data):
                                    on_text(text)
                                if decoder.done:
                                    break
                        except Exception:
                            await _stop_reading(events, grace=0)
                            raise
                        if decoder.done:
                            await _stop_reading(events, grace=_DRAIN_TIMEOUT)
        except EngineError as exc:
            if decoder.streamed or not _retryable(exc):
                raise
            delay = exc.retry_after if isinstance(exc, EngineStatusError) else None
            raise _Retryable(exc, delay) from exc
        texts, completion = decoder.finish()
        for text in texts:
            on_text(text)
        return completion

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent; later turns raise.

        Cancellation:
            Shielded for up to 5 seconds, so the pool is closed even when the
            caller is being cancelled.
        """
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                await client.aclose()

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(
                    connect=self.connect_timeout,
                    read=self.read_timeout,
                    write=self.connect_timeout,
                    pool=self.connect_timeout,
                )
            )
        return self._client

    async def _read_key(self) -> str | None:
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env, "").strip()
            if not key:
                raise EngineConfigError(
                    f"environment variable {self.api_key_env} (the API key) "
                    "is unset or empty"
                )
            return key
        if self.api_key_file is not None:
            try:
                key = (await trio.Path(self.api_key_file).read_text()).strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise EngineConfigError(
                    f"cannot read the key file ({type(exc).__name__})"
                ) from None
            if not key:
                raise EngineConfigError("the key file is empty")
            return key
        return None


async def _stop_reading(chunks: AsyncGenerator[Any, None], *, grace: float) -> None:
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


async def _status_error(response: httpx.Response, key: str | None) -> EngineError:
    """Return the error for an HTTP error answer (its body read in part)."""
    status = response.status_code
    prefix = await _read_prefix(response)
    excerpt = _body_excerpt(prefix, key)
    code = _provider_code(prefix)
    if status in (400, 413) and (
        code in _CONTEXT_CODES or _CONTEXT_MESSAGE.search(excerpt)
    ):
        return ContextLengthExceededError(
            "the prompt does not fit the model's context: "
            f"HTTP {status}" + (f": {excerpt}" if excerpt else ""),
            status_code=status,
        )
    return EngineStatusError(
        f"the model server answered HTTP {status}"
        + (f" ({code})" if code else "")
        + (f": {excerpt}" if excerpt else ""),
        status_code=status,
        provider_code=code,
        retry_after=_retry_after(response),
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
        await _stop_reading(chunks, grace=0)
    return bytes(data[:_ERROR_BODY_LIMIT])
