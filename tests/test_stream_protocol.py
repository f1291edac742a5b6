"""The event-stream protocol without sockets (``yoi_runtime._stream_protocol``).

A server end (:class:`ServerStream` over a fake log, framed with
:func:`websocket_message`) and a client end (:class:`ClientStream`) are
wired back to back, as h11's ``tests/helpers.py`` does: every message one
end produces is handed to the other. Time is a number the test moves.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest

from yoi_runtime import (
    Event,
    EventData,
    EventType,
    Gap,
    InternalError,
    RuntimeUnavailableError,
    TurnError,
    TurnTextDeltaData,
    WorkerFailedData,
    WorkerNotFoundError,
    WorkerStoppedData,
    YoiRuntimeError,
)
from yoi_runtime._stream_protocol import (
    CLIENT_TRANSITIONS,
    CLOSE_CODES,
    SERVER_TRANSITIONS,
    Backoff,
    ClientState,
    ClientStream,
    CloseAction,
    CloseFrame,
    Closing,
    Heartbeat,
    Items,
    Next,
    Reset,
    ServerState,
    ServerStream,
    TextFrame,
    close_action,
    close_code_table,
    decode_frame,
    position_of,
    reconnect_rules,
    sse_text,
    websocket_message,
)
from yoi_runtime._wire import item_to_json

DOCS = Path(__file__).resolve().parent.parent / "docs"
AT = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)


#: A payload of each type used here, as the Worker emits it.
DATA: dict[EventType, EventData] = {
    EventType.TURN_TEXT_DELTA: TurnTextDeltaData("t-1", "hi"),
    EventType.WORKER_STOPPED: WorkerStoppedData("stopped by the caller"),
    EventType.WORKER_FAILED: WorkerFailedData(TurnError("internal_error", "x")),
}


def event(
    seq: int, kind: EventType = EventType.TURN_TEXT_DELTA, runtime_id: str = "rt-1"
) -> Event:
    # The Runtime-wide cursor runs ahead of the Worker's seq (other Workers).
    return Event(seq, seq + 100, kind, runtime_id, "w-1", AT, DATA[kind])


@attrs.define
class Server:
    """One connection's server end over a fake log of one Worker's events.

    ``retained`` is the first seq the log still holds (older ones expired).
    """

    log: list[Event]
    after: int
    retained: int = 1
    worker_stream: bool = True
    protocol: ServerStream[Event | Gap] = attrs.field(factory=ServerStream)

    def _position(self, item: Event) -> int:
        return position_of(item, worker_stream=self.worker_stream)

    def pending(self) -> list[Event | Gap]:
        """Everything after ``after`` (a gap first if it expired)."""
        items: list[Event | Gap] = []
        kept = [e for e in self.log if self._position(e) > self.after]
        first = self.log[self.retained - 1]
        if kept and self._position(kept[0]) < self._position(first):
            resume = self._position(self.log[self.retained - 2])
            items.append(Gap(after=self.after, resume_after=resume, reason="expired"))
            kept = self.log[self.retained - 1 :]
        return items + kept

    def send(self, count: int | None = None) -> TextFrame | CloseFrame:
        """A frame of the next ``count`` items (None: all)."""
        ready = self.pending()[:count]
        step = self.protocol.items(ready)
        last = ready[-1]
        self.after = (
            last.resume_after if isinstance(last, Gap) else self._position(last)
        )
        return websocket_message(step, item_to_json)


def client(*, worker_stream: bool = True, position: int = 0) -> ClientStream:
    stream = ClientStream(
        url="ws://test/v1/workers/w-1/events",
        runtime_id="rt-1",
        worker_stream=worker_stream,
        position=position,
        reconnect_timeout=5.0,
    )
    stream.connected(0.0)
    return stream


def drain(stream: ClientStream, max_items: int = 256) -> list[Event | Gap]:
    """Everything the client hands out before it needs I/O."""
    items: list[Event | Gap] = []
    while isinstance(batch := stream.next_batch(max_items), list):
        items += batch
    return items


def seqs(items: Sequence[Event | Gap]) -> list[int | str]:
    return [item.seq if isinstance(item, Event) else "gap" for item in items]


# -- frames ----------------------------------------------------------------------------


def test_one_item_is_an_object_and_a_backlog_an_array() -> None:
    server = Server([event(n) for n in range(1, 5)], after=0)
    one = server.send(1)
    batch = server.send()
    assert isinstance(one, TextFrame)
    assert isinstance(batch, TextFrame)
    assert json.loads(one.text) == item_to_json(event(1))
    assert json.loads(batch.text) == [item_to_json(event(n)) for n in (2, 3, 4)]
    stream = client()
    stream.receive_message(one, 0.1)
    stream.receive_message(batch, 0.2)
    assert stream.next_batch(2) == [event(1), event(2)]
    assert stream.position == 2
    assert stream.next_batch(5) == [event(3), event(4)]
    assert stream.position == 4
    assert stream.next_batch(5) is Next.READ


def test_heartbeats_travel_and_are_consumed() -> None:
    server = ServerStream[Event]()
    frame = websocket_message(server.silence(7), item_to_json)
    assert frame == TextFrame('{"type": "stream.heartbeat", "position": 7}')
    assert decode_frame(frame.text, "a frame") == [Heartbeat(7)]
    stream = client(position=7)
    stream.receive_message(frame, 1.0)
    assert stream.next_batch(1) is Next.READ
    assert (stream.state, stream.position, stream.resume_after()) == (
        ClientState.CONNECTED,
        7,
        7,
    )


def test_a_gap_moves_the_position_to_its_resume_after() -> None:
    log = [event(n) for n in range(1, 11)]
    server = Server(log, after=2, retained=6)
    frame = server.send()
    stream = client(position=2)
    stream.receive_message(frame, 0.0)
    items = drain(stream)
    assert seqs(items) == ["gap", 6, 7, 8, 9, 10]
    assert items[0] == Gap(after=2, resume_after=5, reason="expired")
    assert stream.position == 10
    # A gap alone leaves the position at its resume_after.
    stream = client(position=2)
    stream.receive_message(TextFrame(json.dumps(item_to_json(items[0]))), 0.0)
    assert drain(stream) == [items[0]]
    assert stream.position == 5


def test_the_sse_form_carries_the_same_items_as_the_websocket_form() -> None:
    log = [event(n) for n in range(1, 4)]
    frame = Server(log, after=0).send()
    assert isinstance(frame, TextFrame)
    text = sse_text(Items(log), item_to_json, lambda item: str(item.seq))
    events = [chunk.split("\n") for chunk in text.split("\n\n") if chunk]
    assert [lines[0] for lines in events] == ["id: 1", "id: 2", "id: 3"]
    assert [json.loads(lines[1].removeprefix("data: ")) for lines in events] == (
        json.loads(frame.text)
    )
    assert sse_text(Heartbeat(3), item_to_json, str) == ": heartbeat position=3\n\n"
    end = sse_text(Closing(1011, "worker_not_found"), item_to_json, str)
    assert end == (
        'data: {"type": "stream.end", "code": 1011, "reason": "worker_not_found"}\n\n'
    )


def test_reset_items() -> None:
    assert Reset("rt-2").to_json() == {
        "type": "stream.reset",
        "runtime_id": "rt-2",
        "reason": "restarted",
    }


@pytest.mark.parametrize(
    "text",
    ["not json", '{"type": "turn.started"}', '[{"type": "stream.heartbeat"}]', "[1]"],
)
def test_a_malformed_frame_breaks_the_stream_for_good(text: str) -> None:
    with pytest.raises(InternalError):
        decode_frame(text, "a frame")
    stream = client()
    stream.receive_message(TextFrame(json.dumps(item_to_json(event(1)))), 0.0)
    stream.receive_message(TextFrame(text), 0.0)
    # What came before is handed out, then the error, on every call.
    assert stream.next_batch(9) == [event(1)]
    assert stream.next_batch(9) is Next.FAIL
    assert stream.next_batch(9) is Next.FAIL
    assert isinstance(stream.error, InternalError)


def test_an_event_of_another_runtime_means_the_process_was_replaced() -> None:
    stream = client()
    frame = TextFrame(json.dumps(item_to_json(event(1, runtime_id="rt-other"))))
    stream.receive_message(frame, 0.0)
    assert stream.next_batch(1) is Next.FAIL
    assert isinstance(stream.error, RuntimeUnavailableError)
    assert "replaced: runtime rt-other, not rt-1" in stream.error.message


# -- the server's decisions ------------------------------------------------------------


def test_the_server_closes_1000_when_the_stream_ended() -> None:
    server = ServerStream[int]()
    assert server.items([1]) == Items([1])
    assert server.silence(1) == Heartbeat(1)
    assert server.source_ended(draining=False) == Closing(1000, "stream ended")
    assert server.state is ServerState.CLOSED
    with pytest.raises(RuntimeError, match="closed"):
        server.items([2])


def test_the_server_flushes_then_closes_1001_when_draining() -> None:
    server = ServerStream[int]()
    assert server.source_ended(draining=True) is None
    assert server.state is ServerState.FLUSHING
    assert server.items([3, 4]) == Items([3, 4])
    with pytest.raises(RuntimeError, match="flushing: silence not allowed"):
        server.silence(4)
    assert server.flushed("shutting down") == Closing(1001, "shutting down")
    assert websocket_message(Closing(1001, "bye"), item_to_json) == CloseFrame(
        1001, "bye"
    )


def test_the_server_closes_1011_with_the_error_code_when_the_source_broke() -> None:
    server = ServerStream[int]()
    assert server.source_broke("worker_not_found") == Closing(1011, "worker_not_found")
    with pytest.raises(RuntimeError):
        server.flushed("too late")


def test_every_server_state_is_reachable_and_closed_is_final() -> None:
    targets = set(SERVER_TRANSITIONS.values())
    assert targets == set(ServerState)
    assert not [key for key in SERVER_TRANSITIONS if key[0] is ServerState.CLOSED]


# -- close codes, end to end -----------------------------------------------------------


def test_the_close_code_table() -> None:
    assert {row.code: row.action for row in CLOSE_CODES} == {
        1000: CloseAction.END,
        1001: CloseAction.RESUME,
        1006: CloseAction.RESUME,
        1011: CloseAction.RAISE,
    }
    # Codes the server never sends are not in the table: 4401 and 4008 are
    # no longer special, and any code not listed is retried.
    assert close_action(4401) is CloseAction.RESUME
    assert close_action(4008) is CloseAction.RESUME
    assert close_action(1002) is CloseAction.RESUME


def closed_with(close: CloseFrame | None) -> ClientStream:
    """A client that received two events, then ``close`` (None: the
    connection dropped)."""
    stream = client()
    stream.receive_message(Server([event(1), event(2)], after=0).send(), 1.0)
    if close is None:
        stream.connection_lost(1.5)
    else:
        stream.receive_message(close, 1.5)
    return stream


@pytest.mark.parametrize(
    "code", [row.code for row in CLOSE_CODES if row.action is CloseAction.RESUME]
)
def test_resume_codes_reconnect_after_the_last_item(code: int) -> None:
    stream = closed_with(CloseFrame(code, "shutting down"))
    assert seqs(drain(stream)) == [1, 2]
    assert stream.next_batch(1) is Next.RECONNECT
    assert stream.state is ClientState.BROKEN
    assert stream.resume_after() == 2
    assert stream.reconnect_delay(1.5) == 0.0


def test_a_dropped_connection_or_an_unknown_code_is_resumed() -> None:
    for stream in (closed_with(None), closed_with(CloseFrame(4008, "too slow"))):
        assert seqs(drain(stream)) == [1, 2]
        assert stream.next_batch(1) is Next.RECONNECT


def test_1000_ends_the_stream_after_what_was_received() -> None:
    stream = closed_with(CloseFrame(1000, "stream ended"))
    assert stream.next_batch(1) == [event(1)]
    assert stream.next_batch(1) == [event(2)]
    assert stream.next_batch(1) is Next.END
    assert stream.state is ClientState.ENDED


def test_1011_raises_the_error_its_reason_names_without_retrying() -> None:
    made: list[tuple[str, str]] = []

    def errors(code: str, message: str) -> YoiRuntimeError:
        made.append((code, message))
        return WorkerNotFoundError(message, worker_id="w-1")

    stream = client()
    stream.errors = errors
    stream.receive_message(Server([event(1)], after=0).send(), 0.0)
    stream.receive_message(CloseFrame(1011, "worker_not_found"), 0.0)
    assert stream.next_batch(5) == [event(1)]
    assert stream.next_batch(5) is Next.FAIL
    assert isinstance(stream.error, WorkerNotFoundError)
    assert made == [
        (
            "worker_not_found",
            "the event stream ws://test/v1/workers/w-1/events broke for good "
            "(worker_not_found)",
        )
    ]
    # Without a translation, an unknown code is an InternalError.
    stream = closed_with(CloseFrame(1011, "store_damaged"))
    drain(stream)
    assert isinstance(stream.error, InternalError)
    assert stream.error.message.startswith("store_damaged: ")


# -- resume, end to end ----------------------------------------------------------------


@pytest.mark.parametrize("worker_stream", [True, False])
def test_resume_across_reconnects_without_gap_or_duplicate(worker_stream: bool) -> None:
    log = [event(n) for n in range(1, 14)]
    start = 0 if worker_stream else 100
    stream = client(worker_stream=worker_stream, position=start)
    server = Server(log, after=start, worker_stream=worker_stream)
    seen: list[Event | Gap] = []
    now = 0.0
    while len(seen) < len(log):
        # Three frames of up to two items, then the connection drops while
        # the client still holds items it has not handed out.
        for _ in range(3):
            if server.pending():
                stream.receive_message(server.send(2), now)
        first = stream.next_batch(1)
        assert isinstance(first, list)
        seen += first
        stream.connection_lost(now)
        seen += drain(stream)
        assert stream.next_batch(1) is Next.RECONNECT
        now += stream.reconnect_delay(now)
        server = Server(log, after=stream.resume_after(), worker_stream=worker_stream)
        stream.connected(now)
    assert seen == log
    assert stream.position == position_of(log[-1], worker_stream=worker_stream)


def test_a_resume_older_than_retention_gets_a_gap_first() -> None:
    log = [event(n) for n in range(1, 9)]
    stream = client()
    stream.receive_message(Server(log, after=0).send(2), 0.0)
    stream.connection_lost(0.0)
    assert seqs(drain(stream)) == [1, 2]
    stream.connected(0.0)
    # While it was away, events 3 and 4 expired.
    stream.receive_message(
        Server(log, after=stream.resume_after(), retained=5).send(), 0
    )
    assert seqs(drain(stream)) == ["gap", 5, 6, 7, 8]


# -- final events ----------------------------------------------------------------------


@pytest.mark.parametrize("final", [EventType.WORKER_STOPPED, EventType.WORKER_FAILED])
def test_a_workers_stream_ends_after_its_final_event(final: EventType) -> None:
    log = [event(1), event(2, final)]
    stream = client()
    stream.receive_message(Server(log, after=0).send(), 0.0)
    assert stream.state is ClientState.ENDED
    # Whatever close follows (1001 at shutdown) changes nothing.
    stream.receive_message(CloseFrame(1001, "shutting down"), 0.0)
    stream.connection_lost(0.0)
    assert drain(stream) == log
    assert stream.next_batch(1) is Next.END


def test_the_runtime_stream_goes_on_after_a_workers_final_event() -> None:
    log = [event(1, EventType.WORKER_STOPPED), event(2)]
    stream = client(worker_stream=False, position=100)
    stream.receive_message(Server(log, after=100, worker_stream=False).send(), 0)
    assert stream.state is ClientState.CONNECTED
    stream.receive_message(CloseFrame(1001, "shutting down"), 0.0)
    assert drain(stream) == log
    assert stream.next_batch(1) is Next.RECONNECT


# -- the reconnect budget --------------------------------------------------------------


def test_the_backoff_schedule() -> None:
    assert [Backoff().delay(n) for n in range(8)] == [
        0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0,
    ]  # fmt: skip


def test_reconnecting_gives_up_at_the_deadline() -> None:
    stream = closed_with(None)  # broke at 1.5; the budget is 5 s
    drain(stream)
    now = 1.5
    delays = []
    while stream.state is ClientState.BROKEN:
        delay = stream.reconnect_delay(now)
        delays.append(delay)
        now += delay
        stream.attempt_failed(now)
    # The last wait is cut short by the deadline.
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 1.9])
    assert now == pytest.approx(6.5)
    assert stream.next_batch(1) is Next.FAIL
    assert isinstance(stream.error, RuntimeUnavailableError)
    assert "could not reconnect within 5.0 s" in stream.error.message


def test_a_connection_that_worked_gets_a_fresh_budget() -> None:
    stream = closed_with(None)
    drain(stream)
    stream.reconnect_delay(1.5)
    stream.attempt_failed(4.0)
    stream.reconnect_delay(4.0)
    stream.connected(4.0)
    # It breaks at once without a frame: the running budget (from 1.5) goes on.
    stream.connection_lost(4.1)
    assert stream.deadline == 6.5
    assert stream.reconnect_delay(4.1) == 0.2  # the third attempt
    stream.connected(4.3)
    # A frame (a heartbeat counts) proves it worked: a new budget.
    stream.receive_message(websocket_message(Heartbeat(2), item_to_json), 4.4)
    stream.connection_lost(4.5)
    assert stream.deadline == 9.5
    assert stream.reconnect_delay(4.5) == 0.0
    # So does staying up for backoff.maximum seconds without a frame.
    stream.connected(4.5)
    stream.connection_lost(6.5)
    assert stream.deadline == 11.5


def test_a_refusal_while_reconnecting_is_raised() -> None:
    stream = closed_with(CloseFrame(1001, "shutting down"))
    drain(stream)
    refusal = WorkerNotFoundError("no such worker", worker_id="w-1")
    stream.refused(refusal)
    assert stream.next_batch(1) is Next.FAIL
    assert stream.error is refusal


def test_closing_drops_what_was_not_handed_out() -> None:
    stream = closed_with(CloseFrame(1000, "stream ended"))
    stream.close()
    assert stream.next_batch(1) is Next.CLOSED
    assert stream.state is ClientState.CLOSED


def test_the_client_table() -> None:
    # Every state but the start is reached.
    assert set(CLIENT_TRANSITIONS.values()) == set(ClientState) - {ClientState.IDLE}
    finals = {ClientState.ENDED, ClientState.FAILED, ClientState.CLOSED}
    for (state, _), new in CLIENT_TRANSITIONS.items():
        if state in finals:
            assert new is ClientState.CLOSED  # only closing leaves an end state
    stream = client()
    stream.connection_lost(0.0)
    with pytest.raises(RuntimeError, match="broken: frame not allowed"):
        stream.receive_message(TextFrame("[]"), 0.0)


# -- the documentation -----------------------------------------------------------------


def test_the_protocol_document_holds_the_modules_tables() -> None:
    text = (DOCS / "protocol.md").read_text()
    assert close_code_table() in text
    assert reconnect_rules() in text
