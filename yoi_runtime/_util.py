"""Small helpers shared by the package's context managers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["single_error"]


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
