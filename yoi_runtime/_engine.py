"""The engine interface: what a turn runs.

An engine turns a Worker's history plus one new input into a stream of text
deltas, then finishes with the token usage, or raises an
:class:`~yoi_runtime.EngineError`. Engines are shared by every Worker that
names them, so they keep no per-Worker state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import attrs

__all__ = ["Engine", "EngineInfo", "Message", "TurnRequest", "Usage"]


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
    """

    kind: str
    model: str

    async def run_turn(
        self, request: TurnRequest, on_text: Callable[[str], None]
    ) -> Usage:
        """Run one turn, calling ``on_text`` once per non-empty text delta.

        ``on_text`` is synchronous and never blocks; the engine calls it from
        its own task, in order.

        Returns:
            The turn's token usage as the model server reported it (zeros
            where it reported nothing).

        Raises:
            EngineError: The model server failed; the turn fails with it.

        Cancellation:
            The Worker cancels the task running this call to cancel a turn.
            An engine must release what it holds (close its HTTP response)
            before the cancellation propagates.
        """
        ...

    async def aclose(self) -> None:
        """Release what the engine holds (connection pools). Idempotent."""
        ...
