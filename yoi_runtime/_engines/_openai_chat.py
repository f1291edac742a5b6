"""The ``openai-chat`` engine: any OpenAI-compatible Chat Completions server.

One turn is one ``POST {base_url}/chat/completions`` with ``stream: true``;
the Server-Sent Events of the response are read with :mod:`httpx_sse` and
interpreted by :class:`~._openai_stream.StreamDecoder` (sans-IO, no sockets).
The other parts live beside this module: the request and its key
(``_openai_request``), failures and retries (``_openai_errors``) and the
server's tokenizer (``_openai_tokens``).

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
import os
import random
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import httpx
import httpx_sse
import stamina
import trio

from .._errors import EngineError, EngineStatusError
from ._base import (
    Completion,
    Retry,
    TurnListener,
    TurnRequest,
    estimate_token_counts,
)
from ._openai_errors import (
    Retryable,
    map_httpx_errors,
    retryable,
    status_error,
    stop_reading,
)
from ._openai_request import (
    check_base_url,
    check_count,
    check_positive,
    read_key,
    request_body,
)
from ._openai_stream import StreamDecoder
from ._openai_tokens import TokenCounter

__all__ = ["OpenAIChatEngine"]

#: Closing the connection pool in ``aclose`` gives up after this many seconds.
_CLOSE_TIMEOUT = 5.0
#: Reading past ``[DONE]`` to the end of the body stops after this many seconds.
_DRAIN_TIMEOUT = 1.0
#: The first retry waits about this many seconds; each next one twice as long.
_RETRY_WAIT_INITIAL = 0.5
#: Up to this many seconds of random jitter are added to each backoff.
_RETRY_JITTER = 0.5


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
            ``"estimate"`` (:func:`~yoi_runtime._engines._base.estimate_tokens`,
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

    base_url: str = attrs.field(validator=check_base_url)
    model: str
    api_key_env: str | None = None
    api_key_file: str | os.PathLike[str] | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    connect_timeout: float = attrs.field(default=10.0, validator=check_positive)
    read_timeout: float = attrs.field(default=60.0, validator=check_positive)
    context_tokens: int | None = attrs.field(default=None, validator=check_count)
    max_concurrent: int | None = attrs.field(default=None, validator=check_count)
    tokenizer: Literal["estimate", "llama.cpp", "llama-cpp-python"] = attrs.field(
        default="estimate",
        validator=attrs.validators.in_(("estimate", "llama.cpp", "llama-cpp-python")),
    )
    retry_attempts: int = attrs.field(default=4, validator=check_count)
    retry_timeout: float = attrs.field(default=30.0, validator=check_positive)
    retry_wait_max: float = attrs.field(default=8.0, validator=check_positive)
    kind: str = attrs.field(default="openai-chat", init=False)
    _client: httpx.AsyncClient | None = attrs.field(
        default=None, init=False, repr=False
    )
    _closed: bool = attrs.field(default=False, init=False, repr=False)
    _token_counter: TokenCounter | None = attrs.field(
        default=None, init=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        if self.api_key_env is not None and self.api_key_file is not None:
            raise ValueError("give api_key_env or api_key_file, not both")

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Return the tokens each text takes, by the configured ``tokenizer``.

        Counts are cached per text, so a Worker's history is tokenized once.
        A tokenizer request that fails (or an ``"estimate"`` tokenizer) gives
        :func:`~yoi_runtime._engines._base.estimate_tokens`.
        """
        if self.tokenizer == "estimate":
            return await estimate_token_counts(texts)
        if self._token_counter is None:
            self._token_counter = TokenCounter(
                self.tokenizer, self.base_url, self.read_timeout
            )
        return await self._token_counter.count(self._get_client, texts)

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
        key = await read_key(self.api_key_env, self.api_key_file)
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        body = request_body(
            self.model,
            request.messages(),
            temperature=self.temperature,
            max_tokens=self.max_tokens,
        )
        attempt = 1
        deadline = trio.current_time() + self.retry_timeout

        def backoff(exc: Exception) -> bool | float:
            nonlocal attempt
            if not isinstance(exc, Retryable) or attempt >= self.retry_attempts:
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
        except Retryable as exc:
            raise exc.error from exc.error.__cause__
        raise AssertionError("unreachable: stamina ends with a result or an error")

    async def _attempt(
        self,
        body: dict[str, Any],
        headers: dict[str, str],
        key: str | None,
        listener: TurnListener,
    ) -> Completion:
        """One request; a failure before any text is wrapped in Retryable
        when it is worth a retry."""
        decoder = StreamDecoder(secret=key)
        url = self.base_url.rstrip("/") + "/chat/completions"
        on_text = listener.on_text
        try:
            with map_httpx_errors(self.connect_timeout, self.read_timeout):
                async with httpx_sse.aconnect_sse(
                    self._get_client(), "POST", url, json=body, headers=headers
                ) as source:
                    response = source.response
                    if response.status_code >= 400:
                        raise await status_error(response, key)
                    async with contextlib.aclosing(source.aiter_sse()) as events:
                        try:
                            async for event in events:
                                for text in decoder.feed(event.data):
                                    on_text(text)
                                if decoder.done:
                                    break
                        except Exception:
                            await stop_reading(events, grace=0)
                            raise
                        if decoder.done:
                            await stop_reading(events, grace=_DRAIN_TIMEOUT)
        except EngineError as exc:
            if decoder.streamed or not retryable(exc):
                raise
            delay = exc.retry_after if isinstance(exc, EngineStatusError) else None
            raise Retryable(exc, delay) from exc
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
