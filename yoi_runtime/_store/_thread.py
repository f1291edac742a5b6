"""One thread per SQLite store that runs its blocking calls, in order.

The store's calls (a batch's commit with its fsync, a transcript read) must
never run on the Trio thread: a disk that stalls would stall every Worker and
request. ``trio.to_thread.run_sync`` would do, but each call there and back
goes through Trio's thread cache and a capacity limiter (about 140 us a call
measured on a 2-core machine). :class:`StoreThread` keeps one thread for the
store's whole time open, fed by a queue; a call parks its task and the thread
reschedules it with one ``TrioToken.run_sync_soon`` when done.

Calls never overlap: one thread runs them, and a call made while the thread
is not running (before :meth:`StoreThread.open` or after it) goes through
``trio.to_thread.run_sync`` under the same lock.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import attrs
import trio

__all__ = ["StoreThread"]

T = TypeVar("T")


@attrs.define(eq=False)
class _Call:
    """One call handed to the thread, and what it gave back."""

    function: Callable[..., Any]
    args: tuple[Any, ...]
    task: trio.lowlevel.Task
    token: trio.lowlevel.TrioToken
    result: Any = None
    error: BaseException | None = None


def _refuse_abort(raise_cancel: Any) -> trio.lowlevel.Abort:
    # As trio.to_thread.run_sync: a call that started runs to its end (a
    # commit cannot be taken back halfway); the cancel is delivered after.
    return trio.lowlevel.Abort.FAILED


class StoreThread:
    """Runs a store's blocking calls one at a time in a thread of its own.

    Args:
        name: The thread's name (shown by debuggers and ``threading``).
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        #: Calls handed to the thread and not yet given back.
        self._busy = 0

    @property
    def running(self) -> bool:
        """True while :meth:`open`'s block runs (calls go to the thread)."""
        return self._thread is not None

    @asynccontextmanager
    async def open(self) -> AsyncIterator[None]:
        """Start the thread; on exit, let it finish its calls and end.

        The thread is always joined on exit, however the block ends
        (cancelled, ``KeyboardInterrupt``): a call still running in it is
        waited for, shielded, without blocking the Trio thread.

        Raises:
            RuntimeError: The thread is already running (one block at a time).
        """
        if self._thread is not None:
            raise RuntimeError(f"{self._name} is already running")
        thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
        thread.start()
        self._thread = thread
        try:
            yield
        finally:
            self._thread = None
            self._calls.put(None)
            if self._busy:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(thread.join)
            else:
                thread.join()

    async def run_sync(self, function: Callable[..., T], *args: Any) -> T:
        """Call ``function(*args)`` in the thread and return what it returns.

        Raises:
            BaseException: Whatever the call raised.

        Cancellation:
            Like ``trio.to_thread.run_sync``: a call that started is waited
            for; the cancellation is delivered at the next checkpoint.
        """
        if self._thread is None:
            return await trio.to_thread.run_sync(self._locked, function, *args)
        await trio.lowlevel.checkpoint_if_cancelled()
        call = _Call(
            function,
            args,
            trio.lowlevel.current_task(),
            trio.lowlevel.current_trio_token(),
        )
        self._busy += 1
        self._calls.put(call)
        try:
            await trio.lowlevel.wait_task_rescheduled(_refuse_abort)
        finally:
            self._busy -= 1
        if call.error is not None:
            try:
                raise call.error
            finally:
                del call
        result: T = call.result
        return result

    def _locked(self, function: Callable[..., T], *args: Any) -> T:
        with self._lock:
            return function(*args)

    def _serve(self) -> None:
        """The thread: run calls until the ``None`` that :meth:`open` sends."""
        calls, lock = self._calls, self._lock
        reschedule = trio.lowlevel.reschedule
        while (call := calls.get()) is not None:
            try:
                with lock:
                    call.result = call.function(*call.args)
            except BaseException as exc:  # handed back to the caller
                call.error = exc
            try:
                call.token.run_sync_soon(reschedule, call.task)
            except trio.RunFinishedError:  # pragma: no cover - cannot happen
                pass  # the caller waits for the call, so its run is alive
