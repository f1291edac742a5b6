"""``yoi chat``: one line in, the answer streamed out; Ctrl-C cancels it.

Part of the ``yoi`` command (:mod:`yoi_runtime.client._cli`,
``docs/cli.md``). Each line goes through :func:`yoi_runtime._ask.open_turn`,
whose subscription is watched here too, for progress (``turn.retrying``) and
for ``--json``'s events.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any, TextIO

import attrs
import trio

from .. import _ask
from .._api import TurnHost, forwarded
from .._errors import (
    InvalidInputError,
    TurnFailedError,
    TurnNotCompletedError,
    WorkerBusyError,
    YoiRuntimeError,
)
from .._event_data import TurnRetryingData
from .._events import Event, Gap
from .._json_form import to_json
from .._types import WorkerSummary
from .._util import single_error

__all__ = ["CANCELLED", "TRUNCATED", "WAITING", "chat", "emit", "one_line", "write"]

#: The status of a chat in which a turn did not complete.
_EXIT_FAILED = 1

#: Appended to an answer the token limit cut off (``truncated: true``).
TRUNCATED = "[cut off: the answer reached the token limit]"
#: Appended to an answer Ctrl-C cancelled.
CANCELLED = "[cancelled]"
#: Shown while an accepted turn has no text yet.
WAITING = "waiting for the engine…"


def write(stream: TextIO, text: str) -> None:
    """Write ``text`` and flush, so it shows at once (answers stream)."""
    stream.write(text)
    stream.flush()


def emit(value: Any) -> None:
    """Print one JSON object on its own line."""
    write(sys.stdout, json.dumps(value, ensure_ascii=False) + "\n")


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines too) as one space."""
    return " ".join(str(text).split())


# -- chat -----------------------------------------------------------------------


@attrs.define(eq=False)
class _WatchedStream:
    """A Worker's subscription that shows each item to a callback first.

    Entering it enters the subscription (through an exit stack, which
    leaves it exactly as ``async with`` would).
    """

    inner: _ask.EventStream
    on_item: Callable[[Event | Gap], None]
    _stack: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> _WatchedStream:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.inner)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        stack, self._stack = self._stack, None
        if stack is None:
            return None
        return await stack.__aexit__(*exc_info)

    async def receive(self) -> Event | Gap:
        item = await self.inner.receive()
        self.on_item(item)
        return item


@attrs.define(eq=False)
class _WatchedHost:
    """The client, for :func:`open_turn`, with its turn's events watched.

    ``open_turn`` yields only text deltas; the progress of a turn (retries)
    and ``--json``'s events come from the same subscription, through here.
    """

    client: _ask.TurnHost
    on_item: Callable[[Event | Gap], None]

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> _WatchedStream:
        return _WatchedStream(
            self.client.subscribe(worker_id, after=after), self.on_item
        )

    send_input = forwarded(TurnHost.send_input, "client")
    cancel = forwarded(TurnHost.cancel, "client")
    get_worker = forwarded(TurnHost.get_worker, "client")
    transcript = forwarded(TurnHost.transcript, "client")


@attrs.define(eq=False)
class _TurnView:
    """Shows one turn: progress on stderr, the answer on stdout (or JSON).

    On a terminal, progress is one status line that the answer replaces;
    elsewhere only retries are reported, one line each.
    """

    name: str
    as_json: bool
    live: bool
    turn_id: str | None = None
    status_shown: bool = False
    answering: bool = False

    def on_item(self, item: Event | Gap) -> None:
        if isinstance(item, Event) and getattr(item.data, "turn_id", None) != (
            self.turn_id
        ):
            return
        if self.as_json:
            emit(to_json(item))
        elif isinstance(item, Event) and isinstance(item.data, TurnRetryingData):
            retry = item.data
            self.progress(
                f"retrying (attempt {retry.attempt}) after {retry.error.code}…"
            )

    def progress(self, text: str, *, transient: bool = False) -> None:
        if self.as_json or self.answering:
            return
        if self.live:
            write(sys.stderr, f"\r\x1b[K[{text}]")
            self.status_shown = True
        elif not transient:
            write(sys.stderr, f"yoi: {text}\n")

    def clear(self) -> None:
        if self.status_shown:
            write(sys.stderr, "\r\x1b[K")
            self.status_shown = False

    def delta(self, text: str) -> None:
        if self.as_json:
            return
        self.clear()
        if not self.answering and self.live:
            write(sys.stdout, f"{self.name}> ")
        self.answering = True
        write(sys.stdout, text)

    def end(self, suffix: str = "") -> None:
        """End the answer's line (on stdout, which holds only answers)."""
        self.clear()
        if not self.as_json:
            write(
                sys.stdout, (" " if self.answering and suffix else "") + suffix + "\n"
            )

    def refused(self, exc: YoiRuntimeError) -> None:
        """Report a turn that did not complete or was never started."""
        self.clear()
        if self.answering:
            write(sys.stdout, "\n")
        if self.as_json:
            if not isinstance(exc, TurnNotCompletedError):
                emit({"error": to_json(exc)})
        elif isinstance(exc, TurnFailedError):
            message = f"{exc.error.code}: {one_line(exc.error.message)}"
            write(sys.stderr, f"yoi: turn {exc.turn_id} failed: {message}\n")
        else:
            write(sys.stderr, f"yoi: {one_line(exc.message)}\n")


async def _cancel_on_sigint(
    signals: AsyncIterator[int], scope: trio.CancelScope
) -> None:
    async for _ in signals:
        scope.cancel()
        return


async def _answer(
    client: _ask.TurnHost,
    worker_id: str,
    worker: WorkerSummary,
    text: str,
    as_json: bool,
) -> bool:
    """Send one line and show its answer; Ctrl-C cancels the turn.

    Returns:
        False when the turn was refused or did not complete (not counting a
        cancel by Ctrl-C).

    Raises:
        WorkerStoppedError, WorkerNotFoundError, RuntimeUnavailableError,
        UnauthorizedError: The chat cannot go on.
    """
    view = _TurnView(
        worker.display_name or worker.worker_id,
        as_json=as_json,
        live=sys.stderr.isatty(),
    )
    host = _WatchedHost(client, view.on_item)
    answered = False
    with trio.open_signal_receiver(signal.SIGINT) as signals, single_error():
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as interrupted:
                nursery.start_soon(_cancel_on_sigint, signals, interrupted)
                try:
                    async with _ask.open_turn(host, worker_id, text) as turn:
                        view.turn_id = turn.turn_id
                        view.progress(WAITING, transient=True)
                        async for delta in turn:
                            view.delta(delta)
                    view.end(TRUNCATED if turn.result.truncated else "")
                    answered = True
                except (
                    WorkerBusyError,
                    TurnNotCompletedError,
                    InvalidInputError,
                ) as exc:
                    view.refused(exc)
            if interrupted.cancelled_caught:
                view.end(CANCELLED)
                answered = True
            nursery.cancel_scope.cancel()
    return answered


async def _read_line(prompt: str | None) -> str | None:
    """Read one line without blocking Trio; None at end of input."""
    if prompt is not None:
        write(sys.stderr, prompt)
    line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
    return line.rstrip("\r\n") if line else None


def _who(worker: WorkerSummary) -> str:
    if worker.display_name:
        return f"{worker.display_name} ({worker.worker_id})"
    return worker.worker_id


async def chat(client: _ask.TurnHost, worker_id: str, as_json: bool) -> int:
    """Chat with a Worker until the end of standard input.

    Args:
        client: The open client, or the ``yoi`` command's target.
        worker_id: The Worker (as ``client`` addresses it).
        as_json: Print each turn's events as JSON lines instead of the text.

    Returns:
        0, or 1 when a turn failed or was refused (Ctrl-C's cancels aside).

    Raises:
        WorkerNotFoundError, WorkerStoppedError, RuntimeUnavailableError,
        UnauthorizedError: The chat cannot go on.
    """
    worker = await client.get_worker(worker_id)
    interactive = sys.stdin.isatty()
    if interactive and not as_json:
        write(
            sys.stderr,
            f"chatting with {_who(worker)}, engine {worker.engine.name}; "
            "Ctrl-C cancels an answer, Ctrl-D leaves\n",
        )
    all_answered = True
    while True:
        line = await _read_line("you> " if interactive else None)
        if line is None:
            if interactive:
                write(sys.stderr, "\n")
            return 0 if all_answered else _EXIT_FAILED
        if line.strip():
            all_answered &= await _answer(client, worker_id, worker, line, as_json)
