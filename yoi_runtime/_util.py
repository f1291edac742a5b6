"""Small helpers shared by the package's context managers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["parse_count", "single_error"]


def parse_count(text: object) -> int | None:
    """Return the non-negative integer ``text`` spells, or None.

    Accepts 1-18 ASCII digits only: not a sign, not spaces, not digits of
    other scripts (``"²"`` is a digit to :meth:`str.isdigit` but not to
    :func:`int`). Used for cursors and counts given as text (query
    parameters, page cursors).
    """
    if (
        not isinstance(text, str)
        or not text.isascii()
        or not text.isdigit()
        or len(text) > 18
    ):
        return None
    return int(text)


@contextlib.contextmanager
def single_error() -> Iterator[None]:
    """Re-raise a one-exception group from a nursery as that exception.

    A single-purpose context manager whose background tasks never raise should
    not make its caller handle an ``ExceptionGroup`` for the body's own error.
    Groups of two or more pass through unchanged.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            error = group.exceptions[0]
            raise error from error.__cause__
        raise
