"""Checks on what callers give a Runtime: text, scopes, page sizes, ids.

Each raises :class:`InvalidInputError` whose ``path`` names the field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ._errors import InvalidInputError
from ._ids import check_id

__all__ = [
    "CONTROL_RE",
    "MAX_REASON",
    "check_id",
    "check_limit",
    "check_scopes",
    "check_text",
]

#: Page size of Worker listings when the caller gives none, and the largest.
_DEFAULT_LIMIT = 50
_MAX_LIMIT = 500

#: The most exclusive scopes one Worker may claim; each is 1-1024 characters
#: without control characters.
_MAX_SCOPES = 16
_SCOPE_RE = re.compile(r"[^\x00-\x1f\x7f-\x9f\ud800-\udfff]{1,1024}")


def check_scopes(scopes: Sequence[str] | None) -> tuple[str, ...]:
    """Return ``scopes`` as a tuple (none: empty), refusing a non-list, more
    than 16, an empty or over-long one or one with a control character, and
    repeats (``path="scopes"``)."""
    if scopes is None:
        return ()
    if isinstance(scopes, str) or not isinstance(scopes, Sequence):
        raise InvalidInputError("scopes must be a list of strings", path="scopes")
    if len(scopes) > _MAX_SCOPES:
        raise InvalidInputError(
            f"a Worker may claim at most {_MAX_SCOPES} scopes", path="scopes"
        )
    for scope in scopes:
        if not isinstance(scope, str) or _SCOPE_RE.fullmatch(scope) is None:
            raise InvalidInputError(
                "each scope must be 1-1024 characters without control characters",
                path="scopes",
            )
    if len(set(scopes)) != len(scopes):
        raise InvalidInputError("scopes must not repeat", path="scopes")
    return tuple(scopes)


#: The longest cancel or stop reason, in characters.
MAX_REASON = 1_000

#: Characters refused in display names: C0 and C1 controls, and the
#: Unicode line and paragraph separators.
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: A surrogate code point: never valid text on its own (UTF-8 cannot encode it).
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


def check_text(value: str | None, path: str, most: int | None = None) -> None:
    """Refuse text that is not a string, is too long, or has a surrogate.

    Raises:
        InvalidInputError: ``path`` names the field.
    """
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidInputError(f"{path} must be a string", path=path)
    if most is not None and len(value) > most:
        raise InvalidInputError(f"{path} is longer than {most} characters", path=path)
    # isascii() is O(1) in CPython: plain ASCII text skips the scan.
    if not value.isascii() and _SURROGATE_RE.search(value) is not None:
        raise InvalidInputError(
            f"{path} contains a lone surrogate (not a Unicode character)",
            path=path,
        )


def check_limit(limit: int | None) -> int:
    """Return a Worker listing's page size (None: 50), refusing anything but
    an integer from 1 to 500 (``path="limit"``)."""
    if limit is None:
        return _DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidInputError("limit must be an integer", path="limit")
    if not 1 <= limit <= _MAX_LIMIT:
        raise InvalidInputError(
            f"limit must be between 1 and {_MAX_LIMIT}", path="limit"
        )
    return limit
