"""The SQLite store's own thread (``_store/_thread.py``): calls run there in
order and hand back results and errors; the thread never outlives its block,
however the block ends; a Runtime on SQLite leaves no thread behind."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import trio
from conformance.support import scripted_engines

from yoi_runtime import open_runtime
from yoi_runtime._store._thread import StoreThread


def _store_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "yoi-store-test"]


async def test_calls_run_in_the_thread_in_order_and_return() -> None:
    thread = StoreThread("yoi-store-test")
    seen: list[tuple[int, str]] = []

    def call(number: int) -> int:
        seen.append((number, threading.current_thread().name))
        return number * 2

    async with thread.open():
        assert thread.running
        assert [await thread.run_sync(call, n) for n in range(5)] == [0, 2, 4, 6, 8]
    assert seen == [(n, "yoi-store-test") for n in range(5)]
    assert not thread.running
    assert _store_threads() == []


async def test_concurrent_calls_never_overlap() -> None:
    thread = StoreThread("yoi-store-test")
    inside = 0
    most = 0
    lock = threading.Lock()

    def call() -> None:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        threading.Event().wait(0.001)
        with lock:
            inside -= 1

    async with trio.open_nursery() as outer:
        # Calls made before the thread runs (a fallback through Trio's
        # threads) and through it share one lock.
        for _ in range(3):
            outer.start_soon(thread.run_sync, call)
        async with thread.open(), trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(thread.run_sync, call)
    assert most == 1
    assert _store_threads() == []


async def test_an_error_is_raised_in_the_caller() -> None:
    thread = StoreThread("yoi-store-test")

    def fail() -> None:
        raise ValueError("no")

    async with thread.open():
        with pytest.raises(ValueError, match="no"):
            await thread.run_sync(fail)
        assert await thread.run_sync(lambda: 7) == 7  # the thread serves on


async def test_a_started_call_finishes_before_a_cancel_lands() -> None:
    thread = StoreThread("yoi-store-test")
    release = threading.Event()
    finished: list[bool] = []

    def slow() -> None:
        release.wait(5)
        finished.append(True)

    async with thread.open(), trio.open_nursery() as outer:
        with trio.CancelScope() as scope:

            async def cancel_then_release() -> None:
                await trio.sleep(0.01)
                scope.cancel()  # the call is running: it is waited for
                await trio.sleep(0.05)
                release.set()

            outer.start_soon(cancel_then_release)
            await thread.run_sync(slow)
            assert finished == [True]
            await trio.lowlevel.checkpoint()  # the cancel lands here
            pytest.fail("the cancel should land after the call")  # pragma: no cover
        assert scope.cancelled_caught
    assert _store_threads() == []


async def test_the_thread_ends_when_the_block_raises_with_a_call_running() -> None:
    thread = StoreThread("yoi-store-test")
    started = trio.Event()
    release = threading.Event()
    token = trio.lowlevel.current_trio_token()

    def slow() -> None:
        token.run_sync_soon(started.set)
        release.wait(5)

    async def interrupted() -> None:
        async with thread.open(), trio.open_nursery() as nursery:
            nursery.start_soon(thread.run_sync, slow)
            await started.wait()
            token.run_sync_soon(release.set)
            raise KeyboardInterrupt

    with pytest.raises(BaseExceptionGroup) as raised:
        await interrupted()
    assert raised.group_contains(KeyboardInterrupt)
    assert release.is_set()
    assert _store_threads() == []


async def test_a_runtime_on_sqlite_leaves_no_thread(tmp_path: Path) -> None:
    before = {t.ident for t in threading.enumerate()}
    async with open_runtime(
        scripted_engines(), default_engine="echo", store=f"sqlite:{tmp_path / 's'}"
    ) as runtime:
        assert [t for t in threading.enumerate() if t.name == "yoi-store-writer"]
        worker = await runtime.create_worker()
        await runtime.send_input(worker.worker_id, "hi")
    left = [
        t
        for t in threading.enumerate()
        if t.ident not in before and t.name == "yoi-store-writer"
    ]
    assert left == []


async def test_one_block_at_a_time() -> None:
    thread = StoreThread("yoi-store-test")
    async with thread.open():
        with pytest.raises(RuntimeError, match="already running"):
            async with thread.open():
                pass  # pragma: no cover
        assert await thread.run_sync(lambda: 1) == 1
    assert _store_threads() == []
