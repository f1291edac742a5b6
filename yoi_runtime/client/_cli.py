"""The ``yoi`` command: a terminal client of a ``yoi-runtime`` process or a
``yoi-workspace``.

``yoi workers``, ``yoi create``, ``yoi chat WORKER``, ``yoi tail [WORKER]``
and ``yoi transcript WORKER`` over the :class:`~._cli_target.Target`
that :func:`~._cli_target.open_target` finds at the URL (``docs/cli.md``).
Output is for people by default; ``--json`` prints one JSON object per line
(:func:`yoi_runtime.to_json` forms, the same from either) for scripts.
``yoi chat`` lives in :mod:`._cli_chat`. The console script starts in
:mod:`yoi_runtime._yoi_command`, which checks the ``client`` extra first.

Exit status: 0 done; 1 the Runtime failed or refused the command (unreachable,
token refused, unknown Worker, a chat turn that did not complete); 2 a usage
error (bad arguments, no URL, a value the Runtime refused as invalid input);
130 interrupted at a prompt or while following. Every error is one line on
standard error naming what to fix; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from typing import NoReturn

import attrs
import trio

from .._errors import (
    InvalidInputError,
    RuntimeUnavailableError,
    UnauthorizedError,
    WorkerNotFoundError,
    WorkerStoppedError,
    YoiRuntimeError,
)
from .._event_data import (
    EventData,
    TurnAcceptedData,
    TurnCancelledData,
    TurnCompletedData,
    TurnFailedData,
    TurnInterruptedData,
    TurnRetryingData,
    TurnStartedData,
    TurnTextDeltaData,
    WorkerCreatedData,
    WorkerFailedData,
    WorkerStatusData,
    WorkerStoppedData,
)
from .._events import Event, Gap
from .._json_form import to_json
from .._types import TranscriptEntry, WorkerSummary
from .._version import __version__
from ._cli_chat import TRUNCATED, chat, emit, one_line, write
from ._cli_target import Target, open_target

__all__ = ["main"]

_EXIT_FAILED = 1
_EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130

_ENVIRONMENT = """\
environment variables:
  YOI_URL     the yoi-runtime process's or yoi-workspace's URL, when --url
              is not given
  YOI_TOKEN   its bearer token, when neither --token nor --token-file is given

On a yoi-workspace (found by its GET /api/health), a Worker is
RUNTIME_ID/WORKER_ID, as 'yoi workers' lists it.
"""


_WORKER_HELP = "the Worker's id; RUNTIME_ID/WORKER_ID on a workspace"


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(_EXIT_USAGE, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def _parser() -> _Parser:
    # The connection options are accepted before or after the subcommand;
    # SUPPRESS keeps a subcommand's absent option from hiding the main one's.
    common = _Parser(add_help=False)
    group = common.add_argument_group("connection and output")
    group.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help="the yoi-runtime process or yoi-workspace, http://HOST:PORT "
        "(default: $YOI_URL)",
    )
    group.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="its bearer token (default: $YOI_TOKEN; visible to other local "
        "users in the process list, so prefer --token-file or YOI_TOKEN)",
    )
    group.add_argument(
        "--token-file",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="read the token from this file",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="one JSON object per line, for scripts",
    )
    parser = _Parser(
        prog="yoi",
        description="A terminal client of a yoi-runtime process or a yoi-workspace.",
        epilog=_ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument(
        "--version", action="version", version=f"yoi (yoi-runtime {__version__})"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help,
            description=help,
            parents=[common],
            epilog=_ENVIRONMENT,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    workers = command("workers", "List the Workers (of every Runtime).")
    workers.add_argument("--status", help="only Workers with this status (idle, ...)")

    create = command("create", "Create a Worker and print it.")
    create.add_argument(
        "--runtime",
        metavar="RUNTIME_ID",
        help="the Runtime to create it in (a workspace with several; "
        "default: the only one)",
    )
    create.add_argument("--profile", default="companion", help="default: companion")
    create.add_argument("--display-name", help="a label for people")
    create.add_argument("--engine", help="an engine name (default: the process's)")
    create.add_argument("--system-prompt", help="replaces the profile's prompt")
    create.add_argument(
        "--worker-id", help="your own id: creating it again returns the same Worker"
    )

    chat = command(
        "chat",
        "Chat with a Worker: one message per line, answers stream back. "
        "Ctrl-C during an answer cancels that turn; Ctrl-D (end of input) leaves.",
    )
    chat.add_argument("worker", metavar="WORKER", help=_WORKER_HELP)

    tail = command(
        "tail",
        "Follow a Worker's events (or every Worker's) until its stream ends; "
        "a dropped connection resumes after the last event shown.",
    )
    tail.add_argument(
        "worker",
        metavar="WORKER",
        nargs="?",
        help=f"{_WORKER_HELP} (default: every one; a workspace needs one)",
    )
    tail.add_argument(
        "--after",
        type=int,
        metavar="CURSOR",
        help="start after this seq (a Worker) or cursor (every Worker); "
        "0 replays what is retained (default: only new events)",
    )
    tail.add_argument(
        "--reconnect-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a dropped connection is retried (default: 30)",
    )

    transcript = command("transcript", "Print a Worker's transcript, oldest first.")
    transcript.add_argument("worker", metavar="WORKER", help=_WORKER_HELP)
    return parser


@attrs.frozen
class _Settings:
    """Where to connect and how to print, from the flags and the environment."""

    url: str
    token: str | None = attrs.field(repr=False)
    as_json: bool


def _settings(args: argparse.Namespace, parser: _Parser) -> _Settings:
    url = getattr(args, "url", None) or os.environ.get("YOI_URL")
    if not url:
        parser.error("no URL: pass --url http://HOST:PORT or set YOI_URL")
    token: str | None = getattr(args, "token", None)
    token_file: str | None = getattr(args, "token_file", None)
    if token is None and token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as file:
                token = file.read().strip()
        except OSError as exc:
            parser.error(f"cannot read --token-file {token_file}: {exc.strerror}")
        except UnicodeDecodeError:
            parser.error(f"--token-file {token_file} is not UTF-8 text")
        if not token:
            parser.error(f"--token-file {token_file} is empty")
    if token is None:
        token = os.environ.get("YOI_TOKEN") or None
    return _Settings(url, token, bool(getattr(args, "json", False)))


# -- output -----------------------------------------------------------------------


def _short(text: str, limit: int = 60) -> str:
    text = one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _worker_rows(target: Target, workers: list[WorkerSummary]) -> Iterator[str]:
    rows = [
        (
            target.address(w),
            w.status.value,
            w.profile,
            w.engine.name,
            str(w.turns),
            w.display_name or "",
        )
        for w in workers
    ]
    header = ("WORKER", "STATUS", "PROFILE", "ENGINE", "TURNS", "NAME")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(6)]
    for row in [header, *rows]:
        yield "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()


def _describe(item: Event | Gap, *, with_worker: bool) -> str:
    """One line for people about one stream item."""
    if isinstance(item, Gap):
        return (
            f"-- events {item.after + 1} to {item.resume_after} were dropped "
            f"before they could be shown ({item.reason}) --"
        )
    details = _details(item.data)
    at = item.at.astimezone().strftime("%H:%M:%S")
    who = f"{item.worker_id}  " if with_worker else ""
    return f"{at}  {who}#{item.seq:<5} {item.type.value:<16} {details}".rstrip()


def _details(data: EventData) -> str:
    """The part of :func:`_describe`'s line that depends on the payload."""
    match data:
        case WorkerCreatedData():
            return (
                f"{data.display_name or ''} profile={data.profile} engine={data.engine}"
            )
        case WorkerStatusData():
            return f"{data.previous} -> {data.status}"
        case TurnAcceptedData():
            return f"{data.turn_id} {json.dumps(_short(data.input))}"
        case TurnRetryingData():
            return (
                f"{data.turn_id} attempt {data.attempt} in {data.delay} s "
                f"after {data.error.code}"
            )
        case TurnTextDeltaData():
            return f"{data.turn_id} {json.dumps(data.text)}"
        case TurnCompletedData():
            return f"{data.turn_id} finish_reason={data.finish_reason}" + (
                " truncated" if data.truncated else ""
            )
        case TurnFailedData():
            error = data.error
            return f"{data.turn_id} {error.code}: {one_line(error.message)}"
        case WorkerFailedData():
            return f"{data.error.code}: {one_line(data.error.message)}"
        case TurnStartedData():
            return data.turn_id
        case TurnCancelledData() | TurnInterruptedData():
            return " ".join(x for x in (data.turn_id, data.reason) if x)
        case WorkerStoppedData():
            return data.reason or ""


def _transcript_lines(entry: TranscriptEntry, name: str) -> Iterator[str]:
    if entry.kind == "user":
        prefix = "you> "
    elif entry.kind == "assistant":
        prefix = f"{name}> "
    else:
        prefix = "error: "
    text = entry.text
    if entry.kind == "assistant":
        if entry.truncated:
            text += f" {TRUNCATED}"
        elif entry.status.value != "completed":
            text += f" [{entry.status.value}]"
    lines = text.split("\n") or [""]
    yield prefix + lines[0]
    for line in lines[1:]:
        yield " " * len(prefix) + line


# -- the other commands ---------------------------------------------------------


async def _workers(target: Target, status: str | None, as_json: bool) -> int:
    workers = await target.all_workers(
        status, lambda line: write(sys.stderr, f"yoi: {line}\n")
    )
    if as_json:
        for worker in workers:
            emit(to_json(worker))
    elif workers:
        rows = _worker_rows(target, workers)
        write(sys.stdout, "".join(line + "\n" for line in rows))
    else:
        write(sys.stderr, "no Workers (create one with 'yoi create')\n")
    return 0


async def _transcript(target: Target, worker_id: str, as_json: bool) -> int:
    worker = await target.get_worker(worker_id)
    name = worker.display_name or worker.worker_id
    cursor = None
    first = True
    while True:
        page = await target.transcript(worker_id, limit=500, cursor=cursor)
        if first and page.truncated and not as_json:
            write(sys.stdout, "(older entries were dropped)\n")
        first = False
        for entry in page.items:
            if as_json:
                emit(to_json(entry))
            else:
                write(
                    sys.stdout,
                    "".join(f"{line}\n" for line in _transcript_lines(entry, name)),
                )
        if page.next_cursor is None:
            return 0
        cursor = page.next_cursor


async def _tail(
    target: Target, worker_id: str | None, after: int | None, as_json: bool
) -> int:
    if worker_id is not None:
        await target.get_worker(worker_id)  # an unknown one, said plainly
    async with target.subscribe(worker_id, after=after) as events:
        async for item in events:
            if as_json:
                emit(to_json(item))
            else:
                line = _describe(item, with_worker=worker_id is None)
                write(sys.stdout, line + "\n")
    return 0


async def _run(args: argparse.Namespace, settings: _Settings) -> int:
    reconnect = getattr(args, "reconnect_timeout", 30.0)
    async with open_target(
        settings.url, token=settings.token, reconnect_timeout=reconnect
    ) as target:
        if args.command == "workers":
            return await _workers(target, args.status, settings.as_json)
        if args.command == "create":
            worker = await target.create_worker(
                args.profile,
                runtime_id=args.runtime,
                display_name=args.display_name,
                engine=args.engine,
                system_prompt=args.system_prompt,
                worker_id=args.worker_id,
            )
            if settings.as_json:
                emit(to_json(worker))
            else:
                write(
                    sys.stdout,
                    f"{target.address(worker)}  (profile {worker.profile}, "
                    f"engine {worker.engine.name})\n",
                )
            return 0
        if args.command == "chat":
            return await chat(target, args.worker, settings.as_json)
        if args.command == "tail":
            return await _tail(target, args.worker, args.after, settings.as_json)
        assert args.command == "transcript"
        return await _transcript(target, args.worker, settings.as_json)


# -- errors and the entry point -------------------------------------------------


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _explain(
    exc: YoiRuntimeError, settings: _Settings, worker: str | None
) -> tuple[str, int]:
    """The one line that says what went wrong and what to fix, and the status."""
    message = one_line(exc.message)
    if isinstance(exc, InvalidInputError) and exc.path == "base_url":
        return f"--url {settings.url!r} is not a yoi URL: {message}", _EXIT_USAGE
    if isinstance(exc, UnauthorizedError):
        where = "--token, --token-file or YOI_TOKEN"
        return f"{settings.url} refused the token: check {where}", _EXIT_FAILED
    if isinstance(exc, RuntimeUnavailableError):
        return f"{settings.url}: {message} (check --url or YOI_URL)", _EXIT_FAILED
    if isinstance(exc, WorkerNotFoundError):
        return (
            f"no worker {worker or exc.worker_id!r} at {settings.url} "
            "(see 'yoi workers')",
            _EXIT_FAILED,
        )
    if isinstance(exc, WorkerStoppedError):
        return f"{message} (create another with 'yoi create')", _EXIT_FAILED
    if isinstance(exc, InvalidInputError):
        return message, _EXIT_USAGE
    return f"{message} ({exc.code})", _EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """Run the ``yoi`` command.

    Args:
        argv: The arguments after the command's name; None reads
            :data:`sys.argv`.

    Returns:
        The exit status: 0 done, 1 the Runtime failed or refused, 2 a usage
        error, 130 interrupted (see the module docstring).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    settings = _settings(args, parser)
    try:
        status: int = trio.run(_run, args, settings)
        return status
    except BaseException as exc:  # one line for every failure, no traceback
        leaves = list(_leaves(exc))
        if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
            write(sys.stderr, "\n")
            return _EXIT_INTERRUPTED
        if any(isinstance(leaf, BrokenPipeError) for leaf in leaves):
            # The reader went away (yoi workers | head): stop quietly.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return _EXIT_FAILED
        errors = [leaf for leaf in leaves if isinstance(leaf, YoiRuntimeError)]
        if errors:
            line, code = _explain(errors[0], settings, getattr(args, "worker", None))
        elif all(isinstance(leaf, Exception) for leaf in leaves):
            leaf = leaves[0]
            line, code = f"unexpected {type(leaf).__name__}: {leaf}", _EXIT_FAILED
        else:
            raise  # SystemExit and the like
        write(sys.stderr, f"yoi: {one_line(line)}\n")
        return code
