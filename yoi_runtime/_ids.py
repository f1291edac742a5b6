"""Ids: what a Runtime, Worker or input id may be, checked in one place.

An id is 1 to 128 characters of ``A-Z a-z 0-9 . _ : -`` starting with a
letter or digit (:data:`ID_PATTERN`); the embedded Runtime, the runtime
process and the workspace backend (its config's ids) check it alike.
"""

from __future__ import annotations

import re

from ._errors import InvalidInputError

__all__ = ["ID_PATTERN", "check_id"]

#: A valid id, as a regular expression (also the OpenAPI ``pattern``).
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"

_ID_RE = re.compile(ID_PATTERN)


def check_id(value: str, path: str) -> None:
    """Refuse an id that is not 1-128 characters of ``A-Z a-z 0-9 . _ : -``
    starting with a letter or digit.

    Args:
        value: The id (anything: a non-string is refused too).
        path: The field or key that gave it, for the error (``worker_id``,
            ``config.runtime_id``).

    Raises:
        InvalidInputError: ``value`` is not a valid id; ``path`` is ``path``.
    """
    if not isinstance(value, str) or _ID_RE.fullmatch(value) is None:
        raise InvalidInputError(
            f"{path} must be 1-128 characters of A-Z a-z 0-9 . _ : -, "
            "starting with a letter or digit",
            path=path,
        )
