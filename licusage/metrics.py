"""Prometheus metrics of the store, served at ``/metrics`` by ``licusage serve``.

Every scrape reads the store (:func:`licusage.queries.pool_usage` and
:func:`~licusage.queries.pool_counters`), so the figures are the same whichever server process
or host answers, and equal what the dashboard shows. Labels are bounded: ``product`` and
``license_type`` per pool, ``source`` per license-server source; never a user or a host.

* ``licusage_seats``, ``licusage_seats_in_use``, ``licusage_sessions_active`` (gauges),
  ``licusage_denials_total`` (counter), ``licusage_pool_expiry_timestamp_seconds`` (gauge, only
  for pools that expire);
* ``licusage_source_up`` and ``licusage_source_last_poll_timestamp_seconds`` per source, from
  the functions registered with :func:`register_source_status` (the license-server sources
  register theirs);
* ``licusage_store_up``: 1 when this scrape could read the store, else 0 (and nothing else).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy.engine import Engine

from . import clock, queries
from .errors import LicusageError

log = logging.getLogger(__name__)

POOL_LABELS = ("product", "license_type")


@dataclass(frozen=True)
class SourceStatus:
    """How one license-server source is doing: reachable at its last poll, and when that was."""

    source: str
    up: bool
    last_poll: datetime | None


SourceStatusFunction = Callable[[Engine], Iterable[SourceStatus]]
_source_status: list[SourceStatusFunction] = []
_lock = threading.Lock()


def register_source_status(function: SourceStatusFunction) -> SourceStatusFunction:
    """Register `function(engine) -> SourceStatus...`: the sources' state for the metrics and
    the ``source_down`` alert rule. Usable as a decorator; registering twice is a no-op."""
    with _lock:
        if function not in _source_status:
            _source_status.append(function)
    return function


def source_statuses(engine: Engine) -> list[SourceStatus]:
    """Every registered source's status (a failing function is logged and skipped)."""
    with _lock:
        functions = list(_source_status)
    statuses: list[SourceStatus] = []
    for function in functions:
        try:
            statuses.extend(function(engine))
        except Exception:
            log.exception("source status function %r failed", function)
    return statuses


def _timestamp(value: Any) -> float | None:
    if value is None or pd.isna(value):
        return None
    return clock.to_utc(pd.Timestamp(value).to_pydatetime()).timestamp()


class StoreCollector:
    """A prometheus-client collector reading the store at each scrape."""

    def __init__(self, engine: Callable[[], Engine]) -> None:
        self._engine = engine

    def describe(self) -> list[Metric]:
        return []  # the series depend on the store: do not collect at registration

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("licusage_store_up", "1 if this scrape could read the store")
        try:
            engine = self._engine()
            pools = queries.pool_usage(engine)
            counters = queries.pool_counters(engine)
            sources = source_statuses(engine)
        except LicusageError as error:
            log.warning("metrics: %s", error)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        seats = GaugeMetricFamily("licusage_seats", "Seats the pool owns", labels=POOL_LABELS)
        in_use = GaugeMetricFamily(
            "licusage_seats_in_use",
            "Distinct users holding a license of the pool now",
            labels=POOL_LABELS,
        )
        expiry = GaugeMetricFamily(
            "licusage_pool_expiry_timestamp_seconds",
            "When the pool's licenses expire (Unix time); absent for pools that do not",
            labels=POOL_LABELS,
        )
        for row in pools.itertuples(index=False):
            labels = [str(row.product), str(row.license_type)]
            if not pd.isna(row.seats):  # type: ignore[arg-type]  # unknown seats: no sample
                seats.add_metric(labels, int(row.seats))  # type: ignore[arg-type]
            in_use.add_metric(labels, int(row.in_use))  # type: ignore[arg-type]
            expires = _timestamp(row.expires_at)
            if expires is not None:
                expiry.add_metric(labels, expires)
        active = GaugeMetricFamily(
            "licusage_sessions_active",
            "Active sessions holding a license of the pool",
            labels=POOL_LABELS,
        )
        denials = CounterMetricFamily(
            "licusage_denials",
            "Licenses of the pool asked for and not granted, ever",
            labels=POOL_LABELS,
        )
        for row in counters.itertuples(index=False):
            labels = [str(row.product), str(row.license_type)]
            active.add_metric(labels, int(row.sessions_active))  # type: ignore[arg-type]
            denials.add_metric(labels, int(row.denials_total))  # type: ignore[arg-type]
        yield from (seats, in_use, active, denials, expiry)
        source_up = GaugeMetricFamily(
            "licusage_source_up", "1 if the source answered its last poll", labels=["source"]
        )
        last_poll = GaugeMetricFamily(
            "licusage_source_last_poll_timestamp_seconds",
            "When the source was last polled (Unix time)",
            labels=["source"],
        )
        for status in sources:
            source_up.add_metric([status.source], 1 if status.up else 0)
            polled = _timestamp(status.last_poll)
            if polled is not None:
                last_poll.add_metric([status.source], polled)
        yield from (source_up, last_poll)


def registry(engine: Callable[[], Engine]) -> CollectorRegistry:
    """A registry holding only the store's metrics (no process or platform collectors)."""
    result = CollectorRegistry(auto_describe=False)
    result.register(StoreCollector(engine))
    return result


def exposition(registry_: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of `registry_` and its content type."""
    return generate_latest(registry_), CONTENT_TYPE_LATEST
