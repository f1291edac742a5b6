"""A Worker's history for the model, and fitting it into the engine's context
(``docs/runtime.md``, "Context budget")."""

from __future__ import annotations

from ._engines._base import MESSAGE_OVERHEAD_TOKENS, Engine, Message

__all__ = ["fit_history", "remember", "shrink_history"]


async def fit_history(
    engine: Engine,
    system_prompt: str | None,
    text: str,
    history: list[Message],
) -> tuple[list[Message], bool, int]:
    """Keep the newest whole exchanges that fit the engine's context.

    The prompt may use ``engine.context_tokens`` minus the answer's reserve
    (``engine.max_tokens``, or a quarter of the context up to 1,024 tokens
    when unset); tokens are counted by ``engine.count_tokens``.

    Args:
        engine: The engine, with ``context_tokens`` set.
        system_prompt: The Worker's system prompt, or None.
        text: The turn's input.
        history: The Worker's history, (user, assistant) pairs, oldest first.

    Returns:
        The history to send, whether the system prompt and the input fit at
        all, and how many exchanges were left out.
    """
    context = engine.context_tokens
    assert context is not None
    reserve = engine.max_tokens
    if reserve is None:
        reserve = min(context // 4, 1024)
    budget = context - reserve
    head = [text] if system_prompt is None else [text, system_prompt]
    counts = await engine.count_tokens(head + [m.content for m in history])
    overhead = MESSAGE_OVERHEAD_TOKENS
    used = sum(counts[: len(head)]) + overhead * len(head)
    if used > budget:
        return [], False, len(history) // 2
    kept = len(history)
    # Whole exchanges (user, assistant), newest first.
    for start in range(len(history) - 2, -1, -2):
        pair = counts[len(head) + start] + counts[len(head) + start + 1]
        if used + pair + 2 * overhead > budget:
            break
        used += pair + 2 * overhead
        kept = start
    else:
        kept = 0
    return history[kept:], True, kept // 2


def shrink_history(history: list[Message] | None) -> None:
    """The model server found the prompt too long (its tokens counted more
    than the budget thought): drop the older half of ``history``."""
    if history:
        del history[: (len(history) // 4) * 2 or len(history)]


def remember(
    history: list[Message] | None, user: str, answer: str, most: int
) -> list[Message]:
    """Add a completed exchange to ``history`` (made if None), keeping the
    newest ``most`` exchanges; return it."""
    if history is None:
        history = []
    history += (Message("user", user), Message("assistant", answer))
    excess = len(history) - 2 * most
    if excess > 0:
        del history[:excess]
    return history
