"""A deterministic engine for tests, examples and benchmarks."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import attrs
import trio

from .._errors import EngineStreamIncompleteError
from ._base import Completion, TurnListener, TurnRequest, Usage, estimate_token_counts

__all__ = ["ScriptedEngine", "ScriptedReply"]


@attrs.frozen
class ScriptedReply:
    """What a :class:`ScriptedEngine` does for one turn.

    Attributes:
        deltas: Text deltas streamed in order.
        delay: Seconds slept before each delta (on Trio's clock, so a test's
            virtual clock applies). 0 streams every delta at once, after a
            cancel point and without yielding to other tasks (the Worker's
            actor parks on its mailbox next, which is the schedule point).
        usage: Returned at the end; None counts one input token per input
            word and one output token per delta.
        error: Raised after the deltas instead of finishing (an
            :class:`EngineError` fails the turn with its code; any other
            exception fails it as ``engine_crashed``).
        hang: After the deltas, wait until cancelled instead of finishing.
        finish_reason: The finish reason reported at the end; None ends the
            stream without one (``engine_stream_incomplete``).
    """

    deltas: Sequence[str] = ()
    delay: float = 0.0
    usage: Usage | None = None
    error: Exception | None = None
    hang: bool = False
    finish_reason: str | None = "stop"


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
        context_tokens: The context size to budget the history against (with
            :func:`estimate_tokens`), or None.
        max_tokens: Answer tokens reserved out of ``context_tokens``, or None.
        max_concurrent: Turns that may run at once, or None for no limit.

    Attributes:
        requests: The last 100 requests received, oldest first (for
            assertions).
    """

    script: Callable[[TurnRequest], ScriptedReply] | Sequence[ScriptedReply] = echo
    model: str = "scripted"
    context_tokens: int | None = None
    max_tokens: int | None = None
    max_concurrent: int | None = None
    kind: str = attrs.field(default="scripted", init=False)
    _turns: int = attrs.field(default=0, init=False)
    requests: deque[TurnRequest] = attrs.field(
        factory=lambda: deque(maxlen=100), init=False
    )

    def _reply(self, request: TurnRequest) -> ScriptedReply:
        if callable(self.script):
            return self.script(request)
        self._turns += 1
        return self.script[min(self._turns, len(self.script)) - 1]

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Estimate each text's tokens with :func:`estimate_tokens`."""
        return await estimate_token_counts(texts)

    async def run_turn(
        self, request: TurnRequest, listener: TurnListener
    ) -> Completion:
        """Stream the scripted reply for ``request`` (see :class:`ScriptedReply`)."""
        self.requests.append(request)
        on_text = listener.on_text
        reply = self._reply(request)
        if not reply.delay:
            # An instant reply: a cancel point before the work and no
            # schedule point after it, as the actor parks on its mailbox
            # right after the turn (one scheduler pass a turn less).
            await trio.lowlevel.checkpoint_if_cancelled()
            for delta in reply.deltas:
                on_text(delta)
        else:
            for delta in reply.deltas:
                await trio.sleep(reply.delay)
                on_text(delta)
        if reply.hang:
            await trio.sleep_forever()
        if reply.error is not None:
            raise reply.error
        if reply.finish_reason is None:
            raise EngineStreamIncompleteError(
                "the scripted stream ended without a finish reason"
            )
        usage = reply.usage
        if usage is None:
            usage = Usage(len(request.input.split()), len(reply.deltas))
        return Completion(reply.finish_reason, usage)

    async def aclose(self) -> None:
        """Nothing to release."""
        await trio.lowlevel.checkpoint()
