"""Sans-IO decoding of one Chat Completions stream (no sockets).

:class:`StreamDecoder` interprets the ``data:`` payloads of the Server-Sent
Events in order: text deltas out, then the finish reason and usage, or the
error the stream carried. Text is always valid Unicode: surrogate pairs split
across two deltas are joined, a lone surrogate becomes U+FFFD.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

from .._errors import (
    ContextLengthExceededError,
    EngineProtocolError,
    EngineStatusError,
    EngineStreamIncompleteError,
)
from ._base import Completion, Usage
from ._openai_errors import CONTEXT_MESSAGE, error_message, excerpt

__all__ = ["StreamDecoder"]

#: Any UTF-16 surrogate code point (only ever there by mistake).
SURROGATE = re.compile("[\ud800-\udfff]")


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
class StreamDecoder:
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
                if not content.isascii() and SURROGATE.search(content):
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
        message = excerpt(error_message(error) or "no message", self.secret)
        code = error.get("code") if isinstance(error, dict) else None
        if (
            isinstance(code, int)
            and not isinstance(code, bool)
            and (400 <= code <= 599)
        ):
            if code == 400 and CONTEXT_MESSAGE.search(message):
                raise ContextLengthExceededError(
                    f"the prompt does not fit the model's context: {message}",
                    status_code=code,
                )
            raise EngineStatusError(
                f"the model server failed mid-stream with {code}: {message}",
                status_code=code,
            )
        raise EngineProtocolError(f"the model server failed mid-stream: {message}")
