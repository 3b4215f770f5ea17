"""Prometheus metrics of the outbox, on a registry the gateway serves at /metrics.

Counters and the latency histogram are updated by the dispatcher as rows move. Row counts
by state come from the store: the database is the truth shared by all replicas, so the
gauge is a snapshot refreshed by `refresh(store)` (call it from the /metrics handler or a
periodic task) rather than a number each process would keep for itself. The snapshot is
a GROUP BY over the whole outbox, so /metrics calls `refresh_if_stale`: at most one per
`max_age_s`, however many scrapers there are. Labels are target and action only: bounded,
and nothing personal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from outbox.messages import OutboxStats
from outbox.schema import State
from outbox.store import OutboxStore

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _RowsCollector(Collector):
    """Yields the last stats snapshot as gauges."""

    def __init__(self) -> None:
        self.stats: OutboxStats | None = None

    def collect(self) -> Iterator[Metric]:
        rows = GaugeMetricFamily(
            "outbox_rows", "Outbox rows by target and state", labels=["target", "state"]
        )
        totals = GaugeMetricFamily("outbox_rows_by_state", "Outbox rows by state", labels=["state"])
        oldest = GaugeMetricFamily(
            "outbox_oldest_pending_age_seconds", "Age of the oldest pending outbox row"
        )
        stats = self.stats
        if stats is not None:
            for state in State:
                totals.add_metric([state.value], stats.by_state.get(state.value, 0))
            for target, per_state in sorted(stats.by_target.items()):
                for state in State:
                    rows.add_metric([target, state.value], per_state.get(state.value, 0))
            oldest.add_metric([], stats.oldest_pending_age_s or 0.0)
        yield totals
        yield rows
        yield oldest


class ActionMetrics:
    """The label children of one (target, action)."""

    __slots__ = ("_handler", "_labels", "_seconds", "claimed", "completed", "dead_lettered",
                 "rejected", "retried")

    def __init__(self, metrics: OutboxMetrics, target: str, action: str) -> None:
        self.claimed = metrics.claimed.labels(target, action)
        self.completed = metrics.completed.labels(target, action)
        self.retried = metrics.retried.labels(target, action)
        self.dead_lettered = metrics.dead_lettered.labels(target, action)
        self.rejected = metrics.rejected.labels(target, action)
        self._handler = metrics.handler_seconds
        self._labels = (target, action)
        self._seconds: dict[str, Histogram] = {}

    def handler_seconds(self, outcome: str) -> Histogram:
        child = self._seconds.get(outcome)
        if child is None:
            child = self._seconds[outcome] = self._handler.labels(*self._labels, outcome)
        return child


class OutboxMetrics:
    """The outbox's metrics. Pass the gateway's registry, or expose `.registry`."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_age_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._max_age_s = max_age_s
        self._clock = clock
        self._refreshed_at: float | None = None
        self._refreshing = asyncio.Lock()
        labels = ["target", "action"]
        self.claimed = Counter(
            "outbox_claimed", "Rows claimed by this process", labels, registry=self.registry
        )
        self.completed = Counter(
            "outbox_completed", "Rows completed", labels, registry=self.registry
        )
        self.retried = Counter(
            "outbox_retries", "Failed attempts scheduled for retry", labels, registry=self.registry
        )
        self.dead_lettered = Counter(
            "outbox_dead_letters", "Rows moved to dead letters", labels, registry=self.registry
        )
        self.rejected = Counter(
            "outbox_outcomes_rejected",
            "Outcomes refused because the lease had been lost",
            labels,
            registry=self.registry,
        )
        self.leases_lost = Counter(
            "outbox_leases_lost", "Leases lost while the handler ran", registry=self.registry
        )
        self.reclaimed = Counter(
            "outbox_reclaimed", "Expired leases returned to the queue", registry=self.registry
        )
        self.handler_seconds = Histogram(
            "outbox_handler_seconds",
            "Handler (adapter call) duration by outcome",
            ["target", "action", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._rows = _RowsCollector()
        self.registry.register(self._rows)
        self._children: dict[tuple[str, str], ActionMetrics] = {}

    def of(self, target: str, action: str) -> ActionMetrics:
        """The counters of one (target, action), looked up once: `.labels()` costs a
        lock and a dict walk per call, and the dispatcher counts every row."""
        key = (target, action)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = ActionMetrics(self, target, action)
        return child

    def observe_stats(self, stats: OutboxStats) -> None:
        self._rows.stats = stats

    async def refresh(self, store: OutboxStore) -> OutboxStats:
        """Read row counts from the store into the gauges; returns them too."""
        stats = await store.stats()
        self.observe_stats(stats)
        self._refreshed_at = self._clock()
        return stats

    async def refresh_if_stale(self, store: OutboxStore) -> None:
        """Refresh when the snapshot is older than `max_age_s`; concurrent scrapes share
        one refresh."""
        async with self._refreshing:
            if self._refreshed_at is None or self._clock() - self._refreshed_at >= self._max_age_s:
                await self.refresh(store)
