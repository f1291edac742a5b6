"""The ``openai-chat`` engine: any OpenAI-compatible Chat Completions server.

One turn is one ``POST {base_url}/chat/completions`` with ``stream: true``;
the Server-Sent Events of the response are read with :mod:`httpx_sse` and
interpreted by :class:`_StreamDecoder` (sans-IO, no sockets).

Errors (every failure becomes exactly one :class:`~yoi_runtime.EngineError`):

=====================================================  =======================
What happened                                          Raised
=====================================================  =======================
key source configured but unreadable / empty           EngineConfigError
connection refused, DNS failure, proxy failure         EngineConnectError
connect, write, pool or read timeout                   EngineTimeoutError
HTTP status >= 400                                     EngineStatusError
in-stream ``{"error": {"code": 4xx/5xx, ...}}``        EngineStatusError
in-stream ``{"error": ...}`` without such a code       EngineProtocolError
not ``text/event-stream``; ``data:`` not a JSON
object or without ``choices``; bad ``usage``           EngineProtocolError
connection broken mid-response; malformed HTTP         EngineProtocolError
stream ended without ``[DONE]`` or ``finish_reason``   EngineProtocolError
=====================================================  =======================

The API key is read when a turn starts and lives only in that turn's request
headers; it is never stored on the engine, logged, or put in a message.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any, cast

import attrs
import httpx
import httpx_sse
import trio

from ._engine import TurnRequest, Usage
from ._errors import (
    EngineConfigError,
    EngineConnectError,
    EngineProtocolError,
    EngineStatusError,
    EngineTimeoutError,
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
        finished: Some choice carried a ``finish_reason``.
        usage: The last usage the server reported (zeros if none).
    """

    secret: str | None = attrs.field(default=None, repr=False)
    done: bool = False
    finished: bool = False
    usage: Usage = Usage()

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
            if choice.get("finish_reason") is not None:
                self.finished = True
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            if content is not None and not isinstance(content, str):
                raise EngineProtocolError(
                    "the model server sent a delta whose content is not text"
                )
            if content:
                texts.append(content)
        return texts

    def finish(self) -> Usage:
        """Check the stream ended properly and return its usage.

        Returns:
            The token usage the server reported last (zeros if none).

        Raises:
            EngineProtocolError: Neither ``[DONE]`` nor a ``finish_reason``
                was seen.
        """
        if not (self.done or self.finished):
            raise EngineProtocolError("stream ended before the model finished")
        return self.usage

    def _raise_stream_error(self, error: object) -> None:
        message = _excerpt(_error_message(error) or "no message", self.secret)
        code = error.get("code") if isinstance(error, dict) else None
        if (
            isinstance(code, int)
            and not isinstance(code, bool)
            and (400 <= code <= 599)
        ):
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

    Raises:
        ValueError: ``base_url`` is not an http(s) URL or holds credentials,
            both key sources are given, or a timeout is not > 0.

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
    kind: str = attrs.field(default="openai-chat", init=False)
    _client: httpx.AsyncClient | None = attrs.field(
        default=None, init=False, repr=False
    )
    _closed: bool = attrs.field(default=False, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.api_key_env is not None and self.api_key_file is not None:
            raise ValueError("give api_key_env or api_key_file, not both")

    async def run_turn(
        self, request: TurnRequest, on_text: Callable[[str], None]
    ) -> Usage:
        """Stream one chat completion, calling ``on_text`` per text delta.

        After ``[DONE]`` the rest of the body (normally none) is read for up
        to 1 second, so the connection can go back to the pool.

        Args:
            request: The turn; its :meth:`~TurnRequest.messages` are sent.
            on_text: Called synchronously with each non-empty text delta, in
                order.

        Returns:
            The token usage from the stream's usage chunk (``prompt_tokens``,
            ``completion_tokens``), or zeros if the server sent none.

        Raises:
            EngineConfigError: The key's env var is unset or empty, or the key
                file cannot be read or is empty.
            EngineConnectError: The server cannot be reached.
            EngineTimeoutError: Connecting took over ``connect_timeout``, or
                the server was silent for over ``read_timeout`` seconds.
            EngineStatusError: The server answered HTTP >= 400 (the message
                quotes at most 200 characters of its error), or reported an
                error with an HTTP status code inside the stream.
            EngineProtocolError: The stream was malformed, or ended before
                ``[DONE]`` and before any ``finish_reason``.
            trio.ClosedResourceError: :meth:`aclose` was called already.

        Cancellation:
            Leaving the ``async with`` around the response closes it (and its
            connection) before the cancellation propagates, so the server
            sees the client go away.
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
        decoder = _StreamDecoder(secret=key)
        url = self.base_url.rstrip("/") + "/chat/completions"
        with _map_httpx_errors(self.connect_timeout, self.read_timeout):
            async with httpx_sse.aconnect_sse(
                self._get_client(), "POST", url, json=body, headers=headers
            ) as source:
                response = source.response
                if response.status_code >= 400:
                    excerpt = _body_excerpt(await _read_prefix(response), key)
                    raise EngineStatusError(
                        f"the model server answered HTTP {response.status_code}"
                        + (f": {excerpt}" if excerpt else ""),
                        status_code=response.status_code,
                    )
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
        return decoder.finish()

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
