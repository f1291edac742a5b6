"""Secret references: where a server reads a secret, never the secret itself.

Both servers name secrets by reference: an environment variable or a file
(``yoi-runtime --token-file``; the workspace backend's remote Runtime
tokens, ``[[auth.tokens]]`` and proxy secret). The reference is resolved
when the value is needed (the workspace backend resolves a remote
Runtime's token each time it connects, and again when the Runtime refuses
the token it sent, so a rotated token file is picked up), and what was read
is never stored, shown or logged.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from .._errors import InvalidInputError

__all__ = ["SecretRef"]


@attrs.frozen(kw_only=True)
class SecretRef:
    """A reference to a secret: an environment variable or a file.

    Holds the reference only; :meth:`resolve` reads the value each time it
    is called. The ``repr`` shows the variable name or the path, which are
    not secret; no value is ever kept.

    Attributes:
        env: The name of an environment variable holding the secret.
        file: The path of a file holding the secret (surrounding
            whitespace, such as the trailing newline, is dropped, as
            ``yoi-runtime --token-file`` does).

    Raises:
        InvalidInputError: (when built) not exactly one of ``env`` and
            ``file`` is given, or the given one is empty.
    """

    env: str | None = None
    file: str | None = None

    def __attrs_post_init__(self) -> None:
        given = [value for value in (self.env, self.file) if value is not None]
        if len(given) != 1:
            raise InvalidInputError(
                "a secret reference needs exactly one of env or file", path="token"
            )
        if not given[0]:
            raise InvalidInputError(
                f"a secret reference's {self.kind} must not be empty", path="token"
            )

    @property
    def kind(self) -> str:
        """``"env"`` or ``"file"``: which kind of reference this is."""
        return "env" if self.env is not None else "file"

    def resolve(self) -> str:
        """Read the secret now.

        Blocking (it may read a file): from async code call it through
        ``trio.to_thread.run_sync``.

        Returns:
            The secret, without surrounding whitespace (the trailing newline).

        Raises:
            InvalidInputError: The variable is unset or empty, or the file
                cannot be read, is not UTF-8 text or is empty. The message
                names the variable or the path, never the value.
        """
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise InvalidInputError(
                    f"environment variable {self.env} is not set", path="token"
                )
            where = f"environment variable {self.env}"
        else:
            assert self.file is not None
            where = f"secret file {self.file}"
            try:
                value = Path(self.file).read_text(encoding="utf-8")
            except UnicodeDecodeError:
                # Its message quotes the offending byte: never show it.
                raise InvalidInputError(
                    f"{where} is not UTF-8 text", path="token"
                ) from None
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise InvalidInputError(
                    f"cannot read {where}: {reason}", path="token"
                ) from None
        value = value.strip()
        if not value:
            raise InvalidInputError(f"{where} is empty", path="token")
        return value
