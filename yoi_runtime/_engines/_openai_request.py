"""What the ``openai-chat`` engine sends: checked settings, body, API key.

The key is read when a turn starts (:func:`read_key`) and lives only in that
turn's request headers; it is never stored, logged, or put in a message.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import httpx
import trio

from .._errors import EngineConfigError
from ._base import Message

__all__ = [
    "check_base_url",
    "check_count",
    "check_positive",
    "read_key",
    "request_body",
]


def check_base_url(instance: object, attribute: object, value: str) -> None:
    """attrs validator: ``value`` is an http(s) URL with a host and no
    credentials (raises ValueError)."""
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


def check_positive(instance: object, attribute: Any, value: float) -> None:
    """attrs validator: ``value`` is > 0 seconds (raises ValueError)."""
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0 seconds, got {value!r}")


def check_count(instance: object, attribute: Any, value: int | None) -> None:
    """attrs validator: ``value`` is None or a whole number >= 1 (raises
    ValueError)."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or value < 1
    ):
        raise ValueError(f"{attribute.name} must be a whole number >= 1, got {value!r}")


def request_body(
    model: str,
    messages: Sequence[Message],
    *,
    temperature: float | None,
    max_tokens: int | None,
) -> dict[str, Any]:
    """Return the JSON body of one streamed ``POST /chat/completions``.

    Args:
        model: The ``model`` the request names.
        messages: The whole prompt, in order (system, history, input).
        temperature: Sent when not None.
        max_tokens: Sent when not None.

    Returns:
        The body, asking for a stream whose last chunk carries the usage.
    """
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


async def read_key(
    api_key_env: str | None, api_key_file: str | os.PathLike[str] | None
) -> str | None:
    """Read the API key from its source, stripped of surrounding whitespace.

    Args:
        api_key_env: The environment variable holding the key, or None.
        api_key_file: The file holding the key, or None.

    Returns:
        The key, or None when neither source is configured (no
        ``Authorization`` header is sent).

    Raises:
        EngineConfigError: The variable is unset or empty, or the file cannot
            be read or is empty (the message names no key).
    """
    if api_key_env is not None:
        key = os.environ.get(api_key_env, "").strip()
        if not key:
            raise EngineConfigError(
                f"environment variable {api_key_env} (the API key) is unset or empty"
            )
        return key
    if api_key_file is not None:
        try:
            key = (await trio.Path(api_key_file).read_text()).strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise EngineConfigError(
                f"cannot read the key file ({type(exc).__name__})"
            ) from None
        if not key:
            raise EngineConfigError("the key file is empty")
        return key
    return None
