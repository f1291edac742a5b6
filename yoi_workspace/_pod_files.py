"""Reading files a yoi installation wrote, defensively (blocking code).

Every file under a yoi home is untrusted input: it may be torn by a crash,
hostile, huge, a directory, a FIFO, unreadable, or nested a million levels
deep. :func:`read_capped` reads a regular file of bounded size without ever
blocking on a FIFO or a device; :func:`loads` parses JSON without the
``RecursionError`` deep nesting causes; both raise :class:`FileProblem`,
whose message names neither a path nor a value, and whose
:attr:`~FileProblem.legacy` text is the original workspace server's wording
(Rust's ``io::Error`` display, serde_json's parse errors).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

__all__ = ["FileProblem", "io_text", "loads", "read_capped"]

#: Deepest JSON nesting accepted (serde_json's own recursion limit is 128).
MAX_DEPTH = 128


class FileProblem(Exception):  # noqa: N818 (an internal signal, not API)
    """A file could not be read or parsed.

    Attributes:
        message: What is wrong, naming no path and no value.
        legacy: The same in the original server's words.
        parse: True for a parse error, False for a read error.
    """

    def __init__(self, message: str, legacy: str, *, parse: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.legacy = legacy
        self.parse = parse


def io_text(error: OSError) -> str:
    """Rust's ``io::Error`` display of an ``OSError``: ``No such file or
    directory (os error 2)`` (never the path)."""
    if error.errno is None:
        return "unknown error"
    return f"{os.strerror(error.errno)} (os error {error.errno})"


def read_capped(path: Path, cap: int, *, shared_lock: bool = False) -> bytes:
    """Read a regular file of at most ``cap`` bytes.

    Args:
        path: The file.
        cap: The largest size accepted, in bytes.
        shared_lock: Take ``flock(LOCK_SH | LOCK_NB)`` while reading, retried
            for up to 0.2 s (a writer holding it exclusively is about to
            finish); read without it after that.

    Raises:
        FileProblem: Missing, unreadable, not a regular file (a directory,
            FIFO, socket or device), or larger than ``cap``.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise FileProblem(_reason(exc), io_text(exc)) from None
    try:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):
            error = OSError(errno.EISDIR, os.strerror(errno.EISDIR))
            raise FileProblem("it is a directory", io_text(error))
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem("it is not a regular file", "not a regular file")
        if info.st_size > cap:
            text = f"file is larger than {cap} bytes"
            raise FileProblem(text, text)
        if shared_lock:
            _lock_shared(descriptor)
        chunks: list[bytes] = []
        size = 0
        while size <= cap:
            chunk = os.read(descriptor, min(1 << 20, cap + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > cap:  # it grew while being read
            text = f"file is larger than {cap} bytes"
            raise FileProblem(text, text)
        return b"".join(chunks)
    except OSError as exc:
        raise FileProblem(_reason(exc), io_text(exc)) from None
    finally:
        os.close(descriptor)


def _lock_shared(descriptor: int) -> None:
    for _ in range(8):
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            time.sleep(0.025)
        except OSError:
            return  # a file system without flock: read anyway
        else:
            return


def _reason(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "it is missing"
    if isinstance(error, PermissionError):
        return "it cannot be read (permission denied)"
    return "it cannot be read"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(raw: bytes) -> Any:
    """Parse UTF-8 JSON strictly (no ``NaN``), nesting at most
    :data:`MAX_DEPTH` deep.

    Raises:
        FileProblem: Not UTF-8 (a read error, as Rust reports it), not JSON,
            or nested too deep; ``legacy`` is serde_json's wording.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        legacy = "stream did not contain valid UTF-8"
        raise FileProblem("it is not UTF-8", legacy) from None
    depth = _depth(text)
    if depth > MAX_DEPTH:
        line, column = _position(text, len(text))
        legacy = f"recursion limit exceeded at line {line} column {column}"
        raise FileProblem("it is nested too deeply", legacy, parse=True)
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise FileProblem(
            "it is not valid JSON", _serde_text(text, exc), parse=True
        ) from None
    except (ValueError, RecursionError):
        line, column = _position(text, len(text))
        legacy = f"expected value at line {line} column {column}"
        raise FileProblem("it is not valid JSON", legacy, parse=True) from None


def _depth(text: str) -> int:
    """The deepest bracket nesting outside strings (a linear scan)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _position(text: str, offset: int) -> tuple[int, int]:
    """serde_json's line and column of the character before ``offset``."""
    before = text[:offset]
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1)
    return line, column


def _serde_text(text: str, error: json.JSONDecodeError) -> str:
    """serde_json's message for the parse error Python found.

    At the end of the input serde says ``EOF while parsing a string`` (or a
    value, list, object) at the last character; elsewhere the closest of its
    wordings, at the offending character.
    """
    if not text[error.pos :].strip():
        line, column = _position(text, len(text))
        return f"EOF while parsing {_open_thing(text)} at line {line} column {column}"
    if error.msg.startswith("Unterminated string"):
        line, column = _position(text, len(text))
        return f"EOF while parsing a string at line {line} column {column}"
    line, column = _position(text, error.pos + 1)
    if error.msg.startswith("Extra data"):
        return f"trailing characters at line {line} column {column}"
    if error.msg.startswith("Expecting property name"):
        return f"key must be a string at line {line} column {column}"
    return f"expected value at line {line} column {column}"


def _open_thing(text: str) -> str:
    """What was being parsed when the input ended."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}" and stack:
            stack.pop()
    if in_string:
        return "a string"
    if not stack:
        return "a value"
    return "a list" if stack[-1] == "[" else "an object"
