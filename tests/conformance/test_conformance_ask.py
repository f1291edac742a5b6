"""``ask`` and ``open_turn`` behave the same on the embedded Runtime and over
the network: the answer, the typed failures, and cancel on leaving early."""

from __future__ import annotations

import pytest
import trio
from conformance.support import events_until

from yoi_runtime import (
    Event,
    RuntimeAPI,
    TurnCancelledData,
    TurnCancelledError,
    TurnCompletedData,
    TurnFailedError,
    TurnNotCompletedError,
    TurnResult,
    TurnStatus,
    TurnStream,
    Usage,
    WorkerBusyError,
    WorkerNotFoundError,
    WorkerStatus,
    WorkerStoppedError,
    to_json,
)
from yoi_runtime._ask import ABANDONED


async def read_into(deltas: list[str], turn: TurnStream) -> None:
    async for delta in turn:
        deltas.append(delta)


async def test_ask_returns_the_answer(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker_id = (await runtime.create_worker()).worker_id
        result = await runtime.ask(worker_id, "hello there")
        detail = await runtime.get_worker(worker_id)
    assert isinstance(result, TurnResult)
    assert result.text == "echo: hello there"
    assert result.worker_id == worker_id
    last = detail.last_turn
    assert last is not None
    assert last.status is TurnStatus.COMPLETED
    assert result.turn_id == last.turn_id
    assert result.usage == last.usage == Usage(2, 1)
    # The same finish as the Runtime recorded for the turn.
    assert (result.finish_reason, result.truncated) == (
        last.finish_reason,
        last.truncated,
    )
    assert detail.status is WorkerStatus.IDLE


async def test_ask_twice_in_a_row(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker_id = (await runtime.create_worker()).worker_id
        first = await runtime.ask(worker_id, "one")
        second = await runtime.ask(worker_id, "two")
    assert (first.text, second.text) == ("echo: one", "echo: two")
    assert first.turn_id != second.turn_id


async def test_open_turn_streams_the_deltas_then_the_result(
    runtime: RuntimeAPI,
) -> None:
    with trio.fail_after(10):
        worker_id = (await runtime.create_worker(engine="slow")).worker_id
        async with runtime.open_turn(worker_id, "spell") as turn:
            with pytest.raises(RuntimeError, match="has not ended"):
                _ = turn.result
            assert turn.turn.input == "spell"
            assert turn.worker_id == worker_id
            deltas = [delta async for delta in turn]
            assert turn.ended
        result = turn.result
    assert deltas == ["a ", "b ", "c "]
    assert result.text == "a b c "
    assert result.turn_id == turn.turn_id


async def test_a_failed_turn_raises_its_error(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker_id = (await runtime.create_worker(engine="fail")).worker_id
        with pytest.raises(TurnFailedError) as caught:
            await runtime.ask(worker_id, "anything")
        deltas: list[str] = []
        async with runtime.open_turn(worker_id, "again") as turn:
            with pytest.raises(TurnFailedError) as streamed:
                await read_into(deltas, turn)
        with pytest.raises(TurnFailedError):
            _ = turn.result
    error = caught.value
    assert error.code == "turn_failed"
    assert error.error.code == "engine_http_error"
    assert "503" in error.error.message
    assert error.worker_id == worker_id
    assert error.text == "x"
    assert isinstance(error, TurnNotCompletedError)
    assert deltas == ["x"]
    assert streamed.value.turn_id == turn.turn_id != error.turn_id
    assert to_json(error) == {
        "code": "turn_failed",
        "message": error.message,
        "details": {
            "worker_id": worker_id,
            "turn_id": error.turn_id,
            "error": {"code": "engine_http_error", "message": error.error.message},
        },
    }


async def test_a_turn_cancelled_by_someone_else_raises(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker_id = (await runtime.create_worker(engine="hang")).worker_id
        async with runtime.open_turn(worker_id, "wait") as turn:
            assert await anext(turn) == "partial "
            await runtime.cancel(worker_id, reason="changed my mind")
            with pytest.raises(TurnCancelledError) as caught:
                await turn.wait_result()
    assert caught.value.reason == "changed my mind"
    assert caught.value.turn_id == turn.turn_id
    assert caught.value.text == "partial "


async def test_stop_during_ask_raises_cancelled(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker_id = (await runtime.create_worker(engine="hang")).worker_id
        async with runtime.subscribe(worker_id) as events:

            async def stop_once_started() -> None:
                await events_until(events, "turn.text_delta")
                await runtime.stop(worker_id, reason="closing the tab")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(stop_once_started)
                with pytest.raises(TurnCancelledError) as caught:
                    await runtime.ask(worker_id, "wait")
    assert caught.value.reason == "closing the tab"


async def test_leaving_open_turn_early_cancels_the_turn(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker_id = (await runtime.create_worker(engine="hang")).worker_id
        async with runtime.subscribe(worker_id) as events:
            async with runtime.open_turn(worker_id, "wait") as turn:
                async for _ in turn:
                    break
            seen = await events_until(events, "turn.cancelled")
        detail = await runtime.get_worker(worker_id)
        # The Worker takes input again at once.
        again = await runtime.send_input(worker_id, "again")
    assert seen[-1].data == TurnCancelledData(turn.turn_id, ABANDONED)
    assert detail.status is WorkerStatus.IDLE
    assert detail.last_turn is not None
    assert detail.last_turn.turn_id == turn.turn_id
    assert detail.last_turn.status is TurnStatus.CANCELLED
    assert again.status is TurnStatus.ACCEPTED


async def test_cancelling_ask_cancels_the_turn(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker_id = (await runtime.create_worker(engine="hang")).worker_id
        async with runtime.subscribe(worker_id) as events:
            async with trio.open_nursery() as nursery:

                async def cancel_once_streaming() -> None:
                    await events_until(events, "turn.text_delta")
                    nursery.cancel_scope.cancel()

                nursery.start_soon(cancel_once_streaming)
                await runtime.ask(worker_id, "wait")
            seen = await events_until(events, "turn.cancelled")
        detail = await runtime.get_worker(worker_id)
    assert isinstance(seen[-1].data, TurnCancelledData)
    assert seen[-1].data.reason == ABANDONED
    assert detail.status is WorkerStatus.IDLE


async def test_ask_refusals_start_no_turn(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        busy = (await runtime.create_worker(engine="hang")).worker_id
        async with runtime.open_turn(busy, "first") as turn:
            with pytest.raises(WorkerBusyError) as refused:
                await runtime.ask(busy, "second")
            assert refused.value.turn_id == turn.turn_id
        stopped = (await runtime.create_worker()).worker_id
        await runtime.stop(stopped)
        with pytest.raises(WorkerStoppedError):
            await runtime.ask(stopped, "hello")
        with pytest.raises(WorkerNotFoundError):
            async with runtime.open_turn("w-nobody", "hello"):
                pass  # pragma: no cover
        assert (await runtime.get_worker(stopped)).turns == 0


async def test_results_and_events_have_one_json_form(runtime: RuntimeAPI) -> None:
    with trio.fail_after(10):
        worker_id = (await runtime.create_worker()).worker_id
        async with runtime.subscribe(worker_id) as events:
            result = await runtime.ask(worker_id, "hi")
            completed = (await events_until(events, "turn.completed"))[-1]
    assert isinstance(completed, Event)
    assert to_json(result) == {
        "turn_id": result.turn_id,
        "worker_id": worker_id,
        "text": "echo: hi",
        "finish_reason": result.finish_reason,
        "truncated": result.truncated,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    as_json = to_json(completed)
    assert as_json["type"] == "turn.completed"
    assert completed.data == TurnCompletedData(
        result.turn_id, Usage(1, 1), result.finish_reason, result.truncated
    )
    assert as_json["data"] == {
        "turn_id": result.turn_id,
        "usage": {"input_tokens": 1, "output_tokens": 1},
        "finish_reason": result.finish_reason,
        "truncated": result.truncated,
    }
    assert as_json["at"] == completed.at.isoformat()
