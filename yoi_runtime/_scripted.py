"""A deterministic engine for tests, examples and benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
import trio

from ._engine import TurnRequest, Usage

__all__ = ["ScriptedEngine", "ScriptedReply"]


@attrs.frozen
class ScriptedReply:
    """What a :class:`ScriptedEngine` does for one turn.

    Attributes:
        deltas: Text deltas streamed in order.
        delay: Seconds slept before each delta (on Trio's clock, so a test's
            virtual clock applies). 0 streams with only a checkpoint between.
        usage: Returned at the end; None counts one input token per input
            word and one output token per delta.
        error: Raised after the deltas instead of finishing (an
            :class:`EngineError` fails the turn with its code; any other
            exception fails it as ``engine_crashed``).
        hang: After the deltas, wait until cancelled instead of finishing.
    """

    deltas: Sequence[str] = ()
    delay: float = 0.0
    usage: Usage | None = None
    error: Exception | None = None
    hang: bool = False


def echo(request: TurnRequest) -> ScriptedReply:
    """The default script: answer ``"echo: <input>"`` in one delta."""
    return ScriptedReply(deltas=("echo: " + request.input,))


@attrs.define(eq=False)
class ScriptedEngine:
    """Plays scripted replies: a fixed sequence, or a function of the request.

    Args:
        script: A function from :class:`TurnRequest` to :class:`ScriptedReply`,
            or a sequence of replies used in turn (the last one repeats).
            Defaults to :func:`echo`.
        model: The model name it reports.

    Attributes:
        requests: Every request received, in order (for assertions).
    """

    script: Callable[[TurnRequest], ScriptedReply] | Sequence[ScriptedReply] = echo
    model: str = "scripted"
    kind: str = attrs.field(default="scripted", init=False)
    requests: list[TurnRequest] = attrs.field(factory=list, init=False)

    def _reply(self, request: TurnRequest) -> ScriptedReply:
        if callable(self.script):
            return self.script(request)
        index = min(len(self.requests) - 1, len(self.script) - 1)
        return self.script[index]

    async def run_turn(
        self, request: TurnRequest, on_text: Callable[[str], None]
    ) -> Usage:
        """Stream the scripted reply for ``request`` (see :class:`ScriptedReply`)."""
        self.requests.append(request)
        reply = self._reply(request)
        for delta in reply.deltas:
            if reply.delay:
                await trio.sleep(reply.delay)
            else:
                await trio.lowlevel.checkpoint()
            on_text(delta)
        if reply.hang:
            await trio.sleep_forever()
        if reply.error is not None:
            raise reply.error
        if not reply.deltas:
            await trio.lowlevel.checkpoint()
        if reply.usage is not None:
            return reply.usage
        return Usage(len(request.input.split()), len(reply.deltas))

    async def aclose(self) -> None:
        """Nothing to release."""
        await trio.lowlevel.checkpoint()
