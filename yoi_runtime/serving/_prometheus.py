"""Prometheus building blocks of ``GET /metrics``: registries, histograms,
collectors (:mod:`._metrics` and :mod:`._runtime_metrics` build on them)."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

__all__ = [
    "DURATION_BUCKETS",
    "HTTP_BUCKETS",
    "Collector",
    "Histogram",
    "cumulative",
    "new_registry",
]

#: Bucket bounds of HTTP request durations, in seconds.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Bucket bounds of turn durations and times to first token, in seconds.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


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
        buckets = cumulative(self._bounds, self._counts)
        family.add_metric(list(labels), buckets, self._sum)


class Collector:
    """A custom collector: its :meth:`collect` is called at each scrape."""

    def collect(self) -> Iterator[Metric]:
        raise NotImplementedError

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self)


def cumulative(
    bounds: Sequence[float], counts: Sequence[int]
) -> list[tuple[str, float]]:
    """Prometheus buckets (``le`` label, cumulative count) from bucket counts."""
    buckets: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip((*map(str, bounds), "+Inf"), counts, strict=True):
        total += count
        buckets.append((bound, total))
    return buckets
