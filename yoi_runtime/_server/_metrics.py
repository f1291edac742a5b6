"""``GET /metrics``: the Prometheus text format, for both processes.

Each app has its own :class:`prometheus_client.CollectorRegistry` (never
the global one, so several apps in one process do not clash), filled by
collectors that read state when scraped, and by plain counters that the
serving layer bumps without a lock (one Trio thread):

- :class:`HTTPMetrics`: requests by method, route template and status, and
  their durations (fed by :class:`~._observe.ObservedApp`).
- :class:`StreamMetrics`: live event-stream subscribers (the app's
  :class:`~._streams.StreamControl`), items delivered and gaps served
  (counted per batch by :class:`CountedStream`).
- :class:`RuntimeMetrics`: a Runtime's Workers by status, tokens, events
  published, engine turns in flight and queued (its engines'
  :class:`trio.CapacityLimiter` statistics), read at scrape time; turns by
  outcome and code, turn duration, time to first token and retries, from
  one subscriber of the Runtime-wide event stream (:meth:`RuntimeMetrics.
  follow`), so the turn path itself does nothing more.

``docs/operations.md`` lists every metric. The route is behind the app's
own authentication; ``metrics = false`` (``--no-metrics``) leaves it out.
"""

from __future__ import annotations

import bisect
import datetime
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import attrs
import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from quart import Quart, Response

from .._events import Event, EventType, Gap
from .._runtime import Runtime
from .._store._journal import (
    BATCH_SIZE_BOUNDS,
    COMMIT_SECONDS_BOUNDS,
    JournalStatistics,
)
from .._types import RuntimeSummary, WorkerStatus
from ..serving._streams import MAX_BATCH, EventSource, StreamControl

__all__ = [
    "DURATION_BUCKETS",
    "AppMetrics",
    "HTTP_BUCKETS",
    "CountedStream",
    "HTTPMetrics",
    "Histogram",
    "RuntimeMetrics",
    "StreamMetrics",
    "install_metrics_route",
    "new_registry",
]

T = TypeVar("T")

#: Bucket bounds of HTTP request durations, in seconds.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Bucket bounds of turn durations and times to first token, in seconds.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

#: Methods counted by name; any other is ``OTHER`` (bounded label values).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

#: Turns followed at once by the subscriber at most; past it (events lost
#: to a gap left ends unseen) the oldest are forgotten.
_MAX_TRACKED_TURNS = 10_000


def new_registry() -> CollectorRegistry:
    """A registry of one app, with the process's CPU, memory and files."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    return registry


class Histogram:
    """A lock-free histogram (one Trio thread), exposed by a collector.

    Args:
        bounds: Upper bounds of the buckets, ascending, in seconds.
    """

    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = tuple(bounds)
        self._counts = [0] * (len(self._bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Count one value (seconds)."""
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sum += value

    def add_to(self, family: HistogramMetricFamily, labels: Sequence[str]) -> None:
        """Add this histogram as one labelled series of ``family``."""
        buckets = _cumulative(self._bounds, self._counts)
        family.add_metric(list(labels), buckets, self._sum)


class _Collector:
    """A custom collector: its :meth:`collect` is called at each scrape."""

    def collect(self) -> Iterator[Metric]:
        raise NotImplementedError

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self)


class HTTPMetrics(_Collector):
    """HTTP requests by method, route template and status; their durations.

    :meth:`record` is the :class:`~._observe.ObservedApp` callback.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], int] = {}
        self._durations: dict[str, Histogram] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request (``seconds`` from first byte to end)."""
        if method not in _METHODS and method != "WS":
            method = "OTHER"
        key = (method, route, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        histogram = self._durations.get(route)
        if histogram is None:
            histogram = self._durations[route] = Histogram(HTTP_BUCKETS)
        histogram.observe(seconds)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "yoi_http_requests",
            "HTTP requests and WebSockets served, by method (WS for a "
            "WebSocket), route template (- when none matched) and status.",
            labels=["method", "route", "status"],
        )
        for (method, route, status), count in sorted(self._counts.items()):
            requests.add_metric([method, route, str(status)], count)
        yield requests
        durations = HistogramMetricFamily(
            "yoi_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer (a "
            "WebSocket: to its close), by route template.",
            labels=["route"],
        )
        for route, histogram in sorted(self._durations.items()):
            histogram.add_to(durations, [route])
        yield durations


class StreamMetrics(_Collector):
    """Event streams of one app: live subscribers, items delivered, gaps.

    Args:
        control: The app's open streams (read at scrape time).
    """

    def __init__(self, control: StreamControl) -> None:
        self._control = control
        #: Items (events, gaps, resets) handed to subscribers' sockets.
        self.delivered = 0
        #: Gaps among them.
        self.gaps = 0

    def counted(
        self, stream: EventSource[T], gaps: Callable[[Sequence[T]], int] | None = None
    ) -> CountedStream[T]:
        """``stream``, counting what it yields (see :class:`CountedStream`)."""
        return CountedStream(stream, self, gaps or _leading_gap)

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "yoi_event_subscribers",
            "Event streams open now (WebSocket and server-sent events).",
            value=self._control._open,
        )
        yield CounterMetricFamily(
            "yoi_events_delivered",
            "Stream items (events, gaps, resets) handed to subscribers.",
            value=self.delivered,
        )
        yield CounterMetricFamily(
            "yoi_stream_gaps",
            "Gaps served: a subscriber fell behind what the log retains.",
            value=self.gaps,
        )


def _leading_gap(batch: Sequence[Any]) -> int:
    """Gaps in a Subscription's batch: only ever its first item."""
    return 1 if type(batch[0]) is Gap else 0


@attrs.define(eq=False)
class CountedStream(Generic[T]):
    """An :class:`~._streams.EventSource` that counts each batch it yields
    in a :class:`StreamMetrics` (per batch, not per item)."""

    _stream: EventSource[T]
    _metrics: StreamMetrics
    _gaps: Callable[[Sequence[T]], int]

    @property
    def position(self) -> int | str:
        return self._stream.position

    async def receive_batch(self, max_items: int = MAX_BATCH) -> Sequence[T]:
        batch = await self._stream.receive_batch(max_items)
        metrics = self._metrics
        metrics.delivered += len(batch)
        if batch:
            metrics.gaps += self._gaps(batch)
        return batch


class RuntimeMetrics(_Collector):
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
        kind = event.type
        if kind is EventType.TURN_TEXT_DELTA:
            if self._no_text:
                turn_id = event.data["turn_id"]
                accepted = self._accepted.get(turn_id)
                if turn_id in self._no_text and accepted is not None:
                    self._no_text.discard(turn_id)
                    seconds = (event.at - accepted).total_seconds()
                    self._first_token.observe(seconds)
            return
        if kind is EventType.TURN_ACCEPTED:
            if len(self._accepted) >= _MAX_TRACKED_TURNS:
                oldest = next(iter(self._accepted))
                del self._accepted[oldest]
                self._no_text.discard(oldest)
            turn_id = event.data["turn_id"]
            self._accepted[turn_id] = event.at
            self._no_text.add(turn_id)
        elif kind is EventType.TURN_RETRYING:
            self._retries += 1
        elif kind in _ENDS:
            outcome = _ENDS[kind]
            data = event.data
            turn_id = data["turn_id"]
            error = data.get("error")
            code = error.get("code", "") if isinstance(error, dict) else ""
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
        # The Hub's limiters (one per engine with max_concurrent); an engine
        # without one runs every turn at once: its Workers that are running.
        hub = runtime._hub
        running: dict[str, int] = {}
        for worker in runtime._ordered:
            if worker.status is WorkerStatus.RUNNING:
                running[worker.engine_name] = running.get(worker.engine_name, 0) + 1
        for engine in summary.capabilities.engines:
            limiter = hub.limiters.get(engine.name)
            if limiter is None:
                busy, waiting = running.get(engine.name, 0), 0
            else:
                statistics = limiter.statistics()
                busy, waiting = statistics.borrowed_tokens, statistics.tasks_waiting
            in_flight.add_metric([engine.name, engine.kind], busy)
            queued.add_metric([engine.name, engine.kind], waiting)
        yield in_flight
        yield queued
        if hub.journal is not None:
            yield from _store_metrics(hub.journal.statistics())


def _cumulative(
    bounds: Sequence[float], counts: Sequence[int]
) -> list[tuple[str, float]]:
    """Prometheus buckets (``le`` label, cumulative count) from bucket counts."""
    buckets: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip((*map(str, bounds), "+Inf"), counts, strict=True):
        total += count
        buckets.append((bound, total))
    return buckets


def _store_metrics(stats: JournalStatistics) -> Iterator[Metric]:
    """The durable store's group commit: latency and batch size."""
    latency = HistogramMetricFamily(
        "yoi_store_commit_seconds",
        "Time to write one batch of the durable store (its SQLite transaction).",
    )
    latency.add_metric(
        [],
        _cumulative(COMMIT_SECONDS_BOUNDS, stats.commit_seconds),
        stats.commit_seconds_sum,
    )
    yield latency
    sizes = HistogramMetricFamily(
        "yoi_store_commit_batch_size",
        "Changes (events and rows) written per commit of the durable store.",
    )
    sizes.add_metric(
        [], _cumulative(BATCH_SIZE_BOUNDS, stats.batch_sizes), stats.batch_size_sum
    )
    yield sizes


_ENDS = {
    EventType.TURN_COMPLETED: "completed",
    EventType.TURN_FAILED: "failed",
    EventType.TURN_CANCELLED: "cancelled",
    EventType.TURN_INTERRUPTED: "interrupted",
}


@attrs.define(eq=False)
class AppMetrics:
    """The metrics of one app: its registry and what feeds it.

    Make one with :meth:`create`; pass :attr:`http`'s ``record`` to
    :class:`~._observe.ObservedApp`, count streams with :attr:`streams`, and
    :meth:`install` the route.

    Attributes:
        registry: The app's own registry.
        http: HTTP requests (fed by the access wrapper).
        streams: Event streams of the app.
        refresh: Called before each scrape (state that needs an ``await``).
    """

    registry: CollectorRegistry
    http: HTTPMetrics
    streams: StreamMetrics
    refresh: list[Callable[[], Awaitable[None]]] = attrs.field(factory=list)

    @classmethod
    def create(cls, control: StreamControl) -> AppMetrics:
        """A registry with the process, HTTP and stream collectors.

        Args:
            control: The app's open event streams.
        """
        registry = new_registry()
        http = HTTPMetrics()
        streams = StreamMetrics(control)
        http.register(registry)
        streams.register(registry)
        return cls(registry, http, streams)

    def add_runtime(self, runtime: Runtime) -> RuntimeMetrics:
        """Collect ``runtime``'s metrics too; run the result's ``follow``."""
        metrics = RuntimeMetrics(runtime)
        metrics.register(self.registry)
        self.refresh.append(metrics.refresh)
        return metrics

    def install(self, app: Quart) -> None:
        """Serve the registry at ``GET /metrics`` on ``app``."""
        install_metrics_route(app, self.registry, self.refresh)


def install_metrics_route(
    app: Quart,
    registry: CollectorRegistry,
    refresh: Sequence[Callable[[], Awaitable[None]]] = (),
) -> None:
    """Serve ``registry`` at ``GET /metrics`` (behind the app's own auth).

    Args:
        app: The app.
        registry: What to expose.
        refresh: Called (in order) before each scrape, to read state that
            needs an ``await``.
    """

    @app.get("/metrics")
    async def metrics() -> Response:
        for call in refresh:
            await call()
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
