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
- :class:`~._runtime_metrics.RuntimeMetrics` (its own module): a Runtime's
  Workers by status, tokens, events published, engine turns in flight and
  queued (its engines' :class:`trio.CapacityLimiter` statistics), read at
  scrape time; turns by outcome and code, turn duration, time to first
  token and retries, from one subscriber of the Runtime-wide event stream
  (:meth:`RuntimeMetrics.follow`), so the turn path itself does nothing
  more.

``docs/operations.md`` lists every metric. The route is behind the app's
own authentication; ``metrics = false`` (``--no-metrics``) leaves it out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import attrs
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from quart import Quart, Response

from .._events import Gap
from .._runtime import Runtime
from ._prometheus import HTTP_BUCKETS, Collector, Histogram, new_registry
from ._runtime_metrics import RuntimeMetrics
from ._streams import MAX_BATCH, EventSource, StreamControl

__all__ = [
    "AppMetrics",
    "CountedStream",
    "HTTPMetrics",
    "StreamMetrics",
    "install_metrics_route",
]

T = TypeVar("T")

#: Methods counted by name; any other is ``OTHER`` (bounded label values).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HTTPMetrics(Collector):
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


class StreamMetrics(Collector):
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
