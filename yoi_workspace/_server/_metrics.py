"""The workspace backend's own metrics: whether each Runtime answers.

``GET /metrics`` of ``yoi-workspace`` has the serving layer's metrics
(HTTP, event streams, the process; :mod:`yoi_runtime.serving`), the
embedded Runtime's (as ``yoi-runtime`` has them), and
:class:`RegistryMetrics`: each Runtime of the registry, asked at scrape
time through its handle (``describe``, concurrently; a remote process that
is down costs at most its ``connect_timeout``).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from .._registry import RuntimeRegistry
from .._views import RuntimeView

__all__ = ["RegistryMetrics"]


class RegistryMetrics:
    """Each Runtime's availability, read at scrape time.

    Args:
        registry: The Runtimes served.
    """

    def __init__(self, registry: RuntimeRegistry) -> None:
        self._registry = registry
        self._views: tuple[RuntimeView, ...] = ()

    async def refresh(self) -> None:
        """Describe every Runtime (concurrently) for the next scrape."""
        self._views = await self._registry.list_runtimes()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "yoi_workspace_runtime_up",
            "1 when the Runtime answers (its handle's status is not "
            "unavailable), else 0; by runtime_id and kind (embedded, remote, "
            "compat-local-pod).",
            labels=["runtime_id", "kind"],
        )
        for view in self._views:
            up.add_metric(
                [view.runtime_id, str(view.kind)],
                0 if view.status == "unavailable" else 1,
            )
        yield up
