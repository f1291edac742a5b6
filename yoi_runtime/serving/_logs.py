"""Logging of both processes: set up once, console lines or JSON lines.

``yoi-runtime`` and ``yoi-workspace`` log through the standard
:mod:`logging` module to standard error (``docs/operations.md`` lists every
line). :func:`configure_logging` is called once, before the server starts,
with ``--log-level`` / ``log_level`` and ``--log-format`` / ``log_format``:

- ``console``: ``2026-11-22T02:46:51.123Z INFO yoi_runtime.http GET
  /v1/workers 200 1.2ms request_id=req-...``, one line per record.
- ``json``: one JSON object per line with ``time``, ``level``, ``logger``,
  ``message``, the record's structured fields (passed as ``extra``) and
  ``exception`` when there is one.

A record written while a request is served carries its ``request_id``
(:data:`yoi_runtime.serving.REQUEST_ID`), unless it names one itself
(``extra={"request_id": None}``: a Worker's task inherits the context of
the request that created it, but its turns are not that request).

Loggers that would write URLs (``httpx``, ``httpcore``: every request,
with its URL) are held at ``WARNING``, and stamina's own retry log is
switched off: the Worker logs each retry once (``yoi_runtime.turns``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import IO, Any, Literal

import attrs
import stamina.instrumentation

from ._request_id import REQUEST_ID

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ConsoleFormatter",
    "JSONFormatter",
    "LogSettings",
    "add_log_arguments",
    "configure_logging",
]

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["console", "json"]

#: The values of ``--log-level`` / ``log_level``.
LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error")
#: The values of ``--log-format`` / ``log_format``.
LOG_FORMATS: tuple[LogFormat, ...] = ("console", "json")

#: Loggers kept at WARNING whatever the level: they log URLs.
_QUIET = ("httpx", "httpcore", "hpack", "trio-websocket")

_UNSET = object()

#: Attributes every LogRecord has; anything else came in ``extra``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


@attrs.frozen
class LogSettings:
    """How a process logs.

    Attributes:
        level: The lowest level written.
        format: ``console`` (a line for people) or ``json`` (one object a
            line).
    """

    level: LogLevel = "info"
    format: LogFormat = "console"


def _utc_time(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of ``record`` (its ``extra``), request id too."""
    fields = {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and not key.startswith("_")
    }
    if "request_id" not in fields:
        fields["request_id"] = REQUEST_ID.get()
    if fields["request_id"] is None:
        del fields["request_id"]
    return fields


class ConsoleFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER MESSAGE [request_id=...]`` (UTC, milliseconds).

    The message says everything; of the structured fields only the request
    id is appended (when the message does not hold it already).
    """

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{_utc_time(record)} {record.levelname} {record.name} "
            f"{record.getMessage()}"
        )
        request_id = getattr(record, "request_id", _UNSET)
        if request_id is _UNSET:
            request_id = REQUEST_ID.get()
        if request_id is not None and "request_id=" not in line:
            line += f" request_id={request_id}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JSONFormatter(logging.Formatter):
    """One JSON object a line: ``time``, ``level``, ``logger``, ``message``,
    the record's ``extra`` fields, and ``exception`` (its traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        value: dict[str, Any] = {
            "time": _utc_time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        value.update(_fields(record))
        if record.exc_info:
            value["exception"] = self.formatException(record.exc_info)
        return json.dumps(value, default=str)


def configure_logging(settings: LogSettings, stream: IO[str] | None = None) -> None:
    """Set up the process's logging once (replacing any root handler).

    Args:
        settings: Level and format.
        stream: Where lines go; standard error by default.
    """
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(
        JSONFormatter() if settings.format == "json" else ConsoleFormatter()
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(
            max(logging.WARNING, logging.getLevelName(settings.level.upper()))
        )
    # The Worker logs each retry (``turn.retrying``) itself; stamina's hooks
    # would log it a second time (and count it in the global registry).
    stamina.instrumentation.set_on_retry_hooks([])


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--log-level`` and ``--log-format`` (default: the config's)."""
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        help="lowest level logged (default: the config's log_level, else info)",
    )
    parser.add_argument(
        "--log-format",
        type=str.lower,
        choices=LOG_FORMATS,
        help="console (lines for people) or json (one object a line); "
        "default: the config's log_format, else console",
    )
