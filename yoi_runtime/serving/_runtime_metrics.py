"""The metrics of one Runtime: Workers, turns, tokens, events, engines, store.

Read at scrape time from the Runtime's summary, and from one subscriber of
the Runtime-wide event stream (:meth:`RuntimeMetrics.follow`), so the turn
path itself does nothing more. ``docs/operations.md`` lists every metric.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import trio
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from .._event_data import (
    TurnAcceptedData,
    TurnCancelledData,
    TurnCompletedData,
    TurnFailedData,
    TurnInterruptedData,
    TurnRetryingData,
    TurnTextDeltaData,
)
from .._events import Event, EventType
from .._runtime import Runtime
from .._store._base import StoreStatistics
from .._store._journal import (
    BATCH_SIZE_BOUNDS,
    COMMIT_SECONDS_BOUNDS,
)
from .._types import RuntimeSummary
from ._prometheus import DURATION_BUCKETS, Collector, Histogram, cumulative
from ._streams import MAX_BATCH

__all__ = ["RuntimeMetrics"]

#: Turns followed at once by the subscriber at most; past it (events lost
#: to a gap left ends unseen) the oldest are forgotten.
_MAX_TRACKED_TURNS = 10_000

#: The payloads of the events that end a turn.
_ENDED = (TurnCompletedData, TurnFailedData, TurnCancelledData, TurnInterruptedData)

_ENDS = {
    EventType.TURN_COMPLETED: "completed",
    EventType.TURN_FAILED: "failed",
    EventType.TURN_CANCELLED: "cancelled",
    EventType.TURN_INTERRUPTED: "interrupted",
}


class RuntimeMetrics(Collector):
    """A Runtime's Workers, turns, tokens, events and engines.

    Call :meth:`refresh` before each scrape (it reads the summary) and run
    :meth:`follow` for the Runtime's lifetime (it reads the event stream).

    Args:
        runtime: The Runtime observed.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._summary: RuntimeSummary | None = None
        self._turns: dict[tuple[str, str], int] = {}
        self._durations: dict[str, Histogram] = {}
        self._first_token = Histogram(DURATION_BUCKETS)
        self._retries = 0
        #: Turns accepted and not ended: when they were accepted.
        self._accepted: dict[str, datetime.datetime] = {}
        #: Turns accepted that have not streamed text yet.
        self._no_text: set[str] = set()

    async def refresh(self) -> None:
        """Read the Runtime's summary for the next :meth:`collect`."""
        self._summary = await self._runtime.summary()

    async def follow(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Count turns from the Runtime-wide stream until it ends or this is
        cancelled (started once subscribed, so no later turn is missed)."""
        async with self._runtime.subscribe() as subscription:
            task_status.started()
            while True:
                try:
                    batch = await subscription.receive_batch(MAX_BATCH)
                except trio.EndOfChannel:
                    return
                for item in batch:
                    if type(item) is Event:
                        self._on_event(item)

    def _on_event(self, event: Event) -> None:
        data = event.data
        if isinstance(data, TurnTextDeltaData):
            if self._no_text:
                turn_id = data.turn_id
                accepted = self._accepted.get(turn_id)
                if turn_id in self._no_text and accepted is not None:
                    self._no_text.discard(turn_id)
                    seconds = (event.at - accepted).total_seconds()
                    self._first_token.observe(seconds)
            return
        if isinstance(data, TurnAcceptedData):
            if len(self._accepted) >= _MAX_TRACKED_TURNS:
                oldest = next(iter(self._accepted))
                del self._accepted[oldest]
                self._no_text.discard(oldest)
            turn_id = data.turn_id
            self._accepted[turn_id] = event.at
            self._no_text.add(turn_id)
        elif isinstance(data, TurnRetryingData):
            self._retries += 1
        elif isinstance(data, _ENDED):
            outcome = _ENDS[event.type]
            turn_id = data.turn_id
            code = data.error.code if isinstance(data, TurnFailedData) else ""
            key = (outcome, code)
            self._turns[key] = self._turns.get(key, 0) + 1
            accepted = self._accepted.pop(turn_id, None)
            self._no_text.discard(turn_id)
            if accepted is not None:
                histogram = self._durations.get(outcome)
                if histogram is None:
                    histogram = self._durations[outcome] = Histogram(DURATION_BUCKETS)
                histogram.observe((event.at - accepted).total_seconds())

    def collect(self) -> Iterator[Metric]:
        yield from self._collect_state()
        turns = CounterMetricFamily(
            "yoi_turns",
            "Turns ended, by outcome (completed, failed, cancelled, "
            "interrupted) and error code (empty unless failed).",
            labels=["outcome", "code"],
        )
        for (outcome, code), count in sorted(self._turns.items()):
            turns.add_metric([outcome, code], count)
        yield turns
        durations = HistogramMetricFamily(
            "yoi_turn_duration_seconds",
            "Time from a turn's acceptance to its end, by outcome.",
            labels=["outcome"],
        )
        for outcome, histogram in sorted(self._durations.items()):
            histogram.add_to(durations, [outcome])
        yield durations
        first = HistogramMetricFamily(
            "yoi_turn_time_to_first_token_seconds",
            "Time from a turn's acceptance to its first streamed text.",
            labels=[],
        )
        self._first_token.add_to(first, [])
        yield first
        yield CounterMetricFamily(
            "yoi_turn_retries",
            "Engine retries (turn.retrying events).",
            value=self._retries,
        )

    def _collect_state(self) -> Iterator[Metric]:
        summary = self._summary
        if summary is None:
            return
        runtime = self._runtime
        info = GaugeMetricFamily(
            "yoi_runtime_info",
            "The Runtime served: its id and package version (value 1).",
            labels=["runtime_id", "version"],
        )
        info.add_metric([summary.runtime_id, summary.version], 1)
        yield info
        yield GaugeMetricFamily(
            "yoi_runtime_degraded",
            "1 while the durable store cannot be written (commands refused).",
            value=1 if summary.status == "degraded" else 0,
        )
        workers = GaugeMetricFamily(
            "yoi_workers", "Workers by status.", labels=["status"]
        )
        for status, count in sorted(summary.workers.items()):
            workers.add_metric([status], count)
        yield workers
        tokens = CounterMetricFamily(
            "yoi_tokens",
            "Tokens of every turn, by direction (input: the prompt, output: "
            "the answer), as the engines reported them.",
            labels=["direction"],
        )
        tokens.add_metric(["input"], summary.usage.input_tokens)
        tokens.add_metric(["output"], summary.usage.output_tokens)
        yield tokens
        yield CounterMetricFamily(
            "yoi_events_published",
            "Events published on the Runtime-wide stream (its cursor).",
            value=summary.last_cursor,
        )
        in_flight = GaugeMetricFamily(
            "yoi_engine_turns_in_flight",
            "Turns running on each engine now.",
            labels=["engine", "kind"],
        )
        queued = GaugeMetricFamily(
            "yoi_engine_turns_queued",
            "Turns waiting for a slot of an engine with max_concurrent.",
            labels=["engine", "kind"],
        )
        statistics = runtime.statistics()
        for load in statistics.engines:
            in_flight.add_metric([load.name, load.kind], load.running)
            queued.add_metric([load.name, load.kind], load.queued)
        yield in_flight
        yield queued
        if statistics.store is not None:
            yield from _store_metrics(statistics.store)


def _store_metrics(stats: StoreStatistics) -> Iterator[Metric]:
    """The durable store's group commit: latency and batch size."""
    latency = HistogramMetricFamily(
        "yoi_store_commit_seconds",
        "Time to write one batch of the durable store (its SQLite transaction).",
    )
    latency.add_metric(
        [],
        cumulative(COMMIT_SECONDS_BOUNDS, stats.commit_seconds),
        stats.commit_seconds_sum,
    )
    yield latency
    sizes = HistogramMetricFamily(
        "yoi_store_commit_batch_size",
        "Changes (events and rows) written per commit of the durable store.",
    )
    sizes.add_metric(
        [], cumulative(BATCH_SIZE_BOUNDS, stats.batch_sizes), stats.batch_size_sum
    )
    yield sizes
