"""The engine interface: what a turn runs.

An engine turns a Worker's history plus one new input into a stream of text
deltas, then finishes with a :class:`Completion` (why the model stopped, and
the token usage), or raises an :class:`~yoi_runtime.EngineError`. Engines are
shared by every Worker that names them, so they keep no per-Worker state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, Protocol

import attrs
import trio

__all__ = [
    "Completion",
    "Engine",
    "EngineInfo",
    "Message",
    "Retry",
    "TurnListener",
    "TurnRequest",
    "Usage",
    "estimate_token_counts",
    "estimate_tokens",
]

#: Tokens :func:`estimate_tokens` adds per message for the chat template's
#: role markers and separators.
MESSAGE_OVERHEAD_TOKENS = 8


def estimate_tokens(text: str) -> int:
    """Return a conservative estimate of the tokens ``text`` takes.

    One token per 3 bytes of UTF-8, rounded up: BPE and SentencePiece
    tokenizers average about 4 bytes a token on English and 3 on most other
    scripts, so this over-counts rather than under-counts. Used where the
    model server offers no tokenizer.

    Args:
        text: Any text.

    Returns:
        The estimated token count (0 for ``""``).
    """
    return math.ceil(len(text.encode("utf-8", "surrogatepass")) / 3)


async def estimate_token_counts(texts: Sequence[str]) -> list[int]:
    """Return :func:`estimate_tokens` of each text: ``Engine.count_tokens``
    for engines without a tokenizer (``ScriptedEngine``, ``ReplayEngine``,
    ``OpenAIChatEngine`` with ``tokenizer="estimate"``).

    A checkpoint, like every async call, but never blocks on I/O.

    Args:
        texts: The texts to count.

    Returns:
        One estimated token count per text, in order.
    """
    await trio.lowlevel.checkpoint()
    return [estimate_tokens(text) for text in texts]


@attrs.frozen
class Message:
    """One message of a conversation, as sent to a model.

    Attributes:
        role: ``"system"``, ``"user"`` or ``"assistant"``.
        content: The message text.
    """

    role: Literal["system", "user", "assistant"]
    content: str


@attrs.frozen
class Usage:
    """Token counts of one turn, or totals over many.

    Attributes:
        input_tokens: Prompt tokens, as reported by the model server.
        output_tokens: Completion tokens, as reported by the model server.
    """

    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
        )


@attrs.frozen
class Completion:
    """How a model's answer ended.

    Attributes:
        finish_reason: Why the model stopped, exactly as the model server
            said: ``"stop"`` (it finished), ``"length"`` (the token limit cut
            it), ``"content_filter"``, ``"tool_calls"``, ...
        usage: Token counts as the model server reported them (zeros where it
            reported none).
    """

    finish_reason: str
    usage: Usage = Usage()


@attrs.frozen
class Retry:
    """One retry an engine is about to make.

    Attributes:
        attempt: The attempt about to be made: 2 for the first retry.
        delay: Seconds the engine waits before it (from ``Retry-After`` when
            the server sent one, else exponential backoff with jitter).
        error: The failure being retried (its ``code``, message, details).
    """

    attempt: int
    delay: float
    error: Exception


class TurnListener(Protocol):
    """What an engine reports to while a turn runs (the Worker)."""

    def on_text(self, text: str) -> None:
        """Take one non-empty text delta, in order. Never blocks."""
        ...

    def on_retry(self, retry: Retry) -> None:
        """Take notice of a retry before its wait begins. Never blocks."""
        ...


@attrs.frozen
class TurnRequest:
    """Everything an engine needs for one turn.

    Attributes:
        worker_id: The Worker running the turn (for the engine's own logging).
        turn_id: The turn's id.
        system_prompt: The profile's system prompt, or None.
        history: Earlier completed exchanges, oldest first, without the new
            input and without the system prompt.
        input: The new user input.
    """

    worker_id: str
    turn_id: str
    system_prompt: str | None
    history: Sequence[Message]
    input: str

    def messages(self) -> list[Message]:
        """Return the full prompt: system prompt, history, then the input."""
        messages = (
            []
            if self.system_prompt is None
            else [Message("system", self.system_prompt)]
        )
        messages.extend(self.history)
        messages.append(Message("user", self.input))
        return messages


@attrs.frozen
class EngineInfo:
    """What a Runtime tells about one of its engines (never a URL or a key).

    Attributes:
        name: The name Workers pick the engine by (``"local"``).
        kind: ``"openai-chat"``, ``"replay"`` or ``"scripted"``.
        model: The model name the engine asks for, or the recording it replays.
    """

    name: str
    kind: str
    model: str


class Engine(Protocol):
    """What a turn runs. Implementations: ``OpenAIChatEngine``,
    ``ReplayEngine``, ``ScriptedEngine``.

    Attributes:
        kind: ``"openai-chat"``, ``"replay"`` or ``"scripted"``.
        model: The model (or recording) name, safe to show.
        context_tokens: The model's context size in tokens, or None when
            unknown (the whole history is sent).
        max_tokens: The cap on answer tokens sent with each request, or None.
        max_concurrent: How many turns may run on the engine at once, or
            None for no limit. Turns beyond it wait, ``accepted``, in FIFO
            order.
    """

    kind: str
    model: str
    context_tokens: int | None
    max_tokens: int | None
    max_concurrent: int | None

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Return the tokens each text takes (a real tokenizer or an estimate).

        Raises:
            EngineError: The model server's tokenizer failed.
        """
        ...

    async def run_turn(
        self, request: TurnRequest, listener: TurnListener
    ) -> Completion:
        """Run one turn, reporting each non-empty text delta to ``listener``.

        ``listener``'s methods are synchronous and never block; the engine
        calls them from its own task, in order.

        Returns:
            Why the model stopped and the turn's token usage.

        Raises:
            EngineStreamIncompleteError: The stream ended without a finish
                reason.
            ContextLengthExceededError: The server refused the prompt as too
                long.
            EngineError: The model server failed otherwise; the turn fails
                with it.

        Cancellation:
            The Worker cancels the task running this call to cancel a turn.
            An engine must release what it holds (close its HTTP response)
            before the cancellation propagates.
        """
        ...

    async def aclose(self) -> None:
        """Release what the engine holds (connection pools). Idempotent."""
        ...
