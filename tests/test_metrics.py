"""``/metrics``: served by ``licusage serve``, parsed by prometheus-client, equal to the store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from licusage import catalog, clock, db, metrics, queries, sessions
from tests.browser.conftest import start_server

CM, RO = "Case Management", "Reports Only"
CU, NU = catalog.CONCURRENT_USER, catalog.NAMED_USER


def _fill(engine) -> None:
    catalog.add_pool(engine, CM, CU, 3, expires_at=datetime(2031, 1, 1, tzinfo=UTC))
    catalog.add_pool(engine, CM, NU, 2)
    catalog.add_pool(engine, RO, CU, 1)
    catalog.assign_named(engine, CM, "nina")
    for user in ("a", "b", "c", "d"):  # d is denied
        sessions.login(engine, user, {CM: CU})
    sessions.login(engine, "a", {CM: CU, RO: CU})  # a's second session: same seat
    sessions.login(engine, "zed", {CM: NU})  # not named: denied
    sessions.login(engine, "nina", {CM: NU})


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value of a text exposition."""
    result = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


def expected_samples(engine) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    pools = queries.pool_usage(engine)
    counters = queries.pool_counters(engine)
    expected: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {("licusage_store_up", ()): 1}
    for row in pools.itertuples():
        labels = (("license_type", row.license_type), ("product", row.product))
        if not pd_isna(row.seats):
            expected[("licusage_seats", labels)] = row.seats
        expected[("licusage_seats_in_use", labels)] = row.in_use
        if not pd_isna(row.expires_at):
            expected[("licusage_pool_expiry_timestamp_seconds", labels)] = (
                row.expires_at.timestamp()
            )
    for row in counters.itertuples():
        labels = (("license_type", row.license_type), ("product", row.product))
        expected[("licusage_sessions_active", labels)] = row.sessions_active
        expected[("licusage_denials_total", labels)] = row.denials_total
    return expected


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, object]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('metrics') / 'store.sqlite'}"
    engine = db.connect(url)
    _fill(engine)
    server = start_server(
        url, log_dir=tmp_path_factory.mktemp("metrics-server"), ready_path="/metrics"
    )
    yield server.url.rstrip("/"), engine
    server.stop()
    engine.dispose()


def test_metrics_parse_and_equal_pool_usage(served):
    base, engine = served
    response = httpx.get(f"{base}/metrics", timeout=60)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    got = {k: v for k, v in samples(response.text).items() if not k[0].endswith("_created")}
    assert got == expected_samples(engine)
    labels = (("license_type", CU), ("product", CM))
    assert got[("licusage_seats_in_use", labels)] == 3  # a, b, c: a's two sessions one seat
    assert got[("licusage_sessions_active", labels)] == 4
    assert got[("licusage_denials_total", labels)] == 1
    assert got[("licusage_denials_total", (("license_type", NU), ("product", CM)))] == 1
    # no per-user or per-host label anywhere
    assert {name for _, labels_ in got for name, _ in labels_} <= {"product", "license_type"}


def test_metrics_follow_the_store(served):
    base, engine = served
    result = sessions.login(engine, "late", {RO: CU})
    assert result.denied == {RO: "pool_full"}
    got = samples(httpx.get(f"{base}/metrics", timeout=60).text)
    assert got[("licusage_denials_total", (("license_type", CU), ("product", RO)))] == 1
    assert {k: v for k, v in got.items() if not k[0].endswith("_created")} == expected_samples(
        engine
    )


def test_registered_source_status_is_exposed(sqlite_engine):
    polled = clock.now() - timedelta(minutes=3)

    def status(engine):
        return [
            metrics.SourceStatus("flexlm-a", True, polled),
            metrics.SourceStatus("rlm-b", False, None),
        ]

    metrics.register_source_status(status)
    try:
        text = generate_latest(metrics.registry(lambda: sqlite_engine)).decode()
    finally:
        metrics._source_status.remove(status)
    got = samples(text)
    assert got[("licusage_source_up", (("source", "flexlm-a"),))] == 1
    assert got[("licusage_source_up", (("source", "rlm-b"),))] == 0
    assert got[("licusage_source_last_poll_timestamp_seconds", (("source", "flexlm-a"),))] == (
        pytest.approx(polled.timestamp())
    )
    assert ("licusage_source_last_poll_timestamp_seconds", (("source", "rlm-b"),)) not in got


def test_an_unreachable_store_scrapes_as_down(tmp_path):
    engine = db.create_engine(f"sqlite:///{tmp_path / 'missing' / 'x.sqlite'}")
    got = samples(generate_latest(metrics.registry(lambda: engine)).decode())
    assert got == {("licusage_store_up", ()): 0}
