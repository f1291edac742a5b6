"""Prompt token counts from a llama.cpp-style server's tokenizer endpoint."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import attrs
import httpx
import trio

from ._base import estimate_tokens

__all__ = ["TokenCounter"]

#: Token counts remembered per engine (text -> count), newest kept.
_TOKEN_CACHE_SIZE = 4096


@attrs.define(eq=False)
class TokenCounter:
    """Counts tokens with the model server's tokenizer, cached per text.

    Args:
        tokenizer: ``"llama.cpp"`` (``POST {root}/tokenize``) or
            ``"llama-cpp-python"`` (``POST {root}/extras/tokenize/count``),
            where ``root`` is ``base_url`` without its ``/v1``.
        base_url: The engine's API root.
        read_timeout: Seconds one tokenizer request may take.
    """

    tokenizer: Literal["llama.cpp", "llama-cpp-python"]
    base_url: str
    read_timeout: float
    _counts: dict[str, int] = attrs.field(factory=dict, init=False, repr=False)

    async def count(
        self, client: Callable[[], httpx.AsyncClient], texts: Sequence[str]
    ) -> list[int]:
        """Return the tokens each text takes.

        Counts are cached per text (the newest 4,096), so a Worker's history
        is tokenized once. A request that fails, times out or answers
        something else gives :func:`~yoi_runtime._engines._base.estimate_tokens`.

        Args:
            client: Returns the engine's connection pool (called per request).
            texts: The texts to count.

        Returns:
            One count per text, in order.
        """
        cache = self._counts
        counts = []
        for text in texts:
            count = cache.get(text)
            if count is None:
                count = await self._tokenize(client(), text)
                if len(cache) >= _TOKEN_CACHE_SIZE:
                    del cache[next(iter(cache))]
                cache[text] = count
            counts.append(count)
        return counts

    async def _tokenize(self, client: httpx.AsyncClient, text: str) -> int:
        root = self.base_url.rstrip("/").removesuffix("/v1")
        if self.tokenizer == "llama.cpp":
            url, body, field = f"{root}/tokenize", {"content": text}, "tokens"
        else:
            url, body, field = f"{root}/extras/tokenize/count", {"input": text}, "count"
        try:
            with trio.move_on_after(self.read_timeout):
                response = await client.post(url, json=body)
                value = response.json().get(field) if response.is_success else None
                if isinstance(value, list):
                    return len(value)
                if isinstance(value, int) and not isinstance(value, bool):
                    return value
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        return estimate_tokens(text)
