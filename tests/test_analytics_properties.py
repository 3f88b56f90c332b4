"""Property tests of licusage.analytics against brute-force references (SQLite only)."""

from __future__ import annotations

import threading
import warnings
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from licusage import analytics, catalog, clock, db, demo, sessions
from licusage.analytics import loading, sizing

BASE = datetime(2026, 3, 2, tzinfo=UTC)
NOW_MINUTE = 720
CM, CU = "Case Management", "Concurrent User"
USERS = ["ann", "ben", "cat", "dan"]

session_lists = st.lists(
    st.tuples(
        st.sampled_from(USERS),
        st.integers(0, 700),  # start minute
        st.one_of(st.none(), st.integers(0, 200)),  # duration; None: still open
    ),
    max_size=12,
)


def minute(m: int) -> datetime:
    return BASE + timedelta(minutes=m)


def in_use(sessions_: list[tuple[str, int, int]], t: int) -> int:
    return len({user for user, s, e in sessions_ if s <= t < e})


def brute_force(
    sessions_: list[tuple[str, int, int | None]], lo: int, hi: int, step: int
) -> list[int]:
    """The maximum of in-use over each bucket, by checking every instant where it can change."""
    until = min(hi, NOW_MINUTE)
    spans = [(u, s, until if d is None else s + d) for u, s, d in sessions_]
    instants = sorted({s for _, s, _ in spans} | {e for _, _, e in spans})
    result = []
    for b in range(lo, hi, step):
        b_end = min(b + step, hi)
        candidates = [b] + [t for t in instants if b < t < b_end]
        result.append(max(in_use(spans, t) for t in candidates))
    return result


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    planned=session_lists,
    lo=st.integers(-60, 700),
    length=st.integers(0, 400),
    step=st.sampled_from([1, 7, 15, 60, 90]),
)
def test_concurrency_matches_brute_force(monkeypatch, planned, lo, length, step):
    monkeypatch.setattr(clock, "now", lambda: minute(NOW_MINUTE))
    engine = db.connect("sqlite://")
    try:
        catalog.add_pool(engine, CM, CU, 100)
        for user, start, duration in planned:
            result = sessions.login(engine, user, {CM: CU}, at=minute(start))
            if duration is not None:
                sessions.end(engine, result.session_id, at=minute(start + duration))
        frame = analytics.concurrency(engine, minute(lo), minute(lo + length), f"{step}min")
    finally:
        engine.dispose()
    assert frame[(CM, CU)].tolist() == brute_force(planned, lo, lo + length, step)
    assert list(frame.index) == [pd.Timestamp(minute(m)) for m in range(lo, lo + length, step)]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(planned=session_lists, lo=st.integers(0, 300), length=st.integers(1, 400))
def test_peaks_agree_with_minute_sampling(monkeypatch, planned, lo, length):
    """Whole-minute data: peak and time-weighted figures equal those of the minute samples."""
    monkeypatch.setattr(clock, "now", lambda: minute(-100))  # the pool predates the history
    engine = db.connect("sqlite://")
    try:
        catalog.add_pool(engine, CM, CU, 100)
        for user, start, duration in planned:
            result = sessions.login(engine, user, {CM: CU}, at=minute(start))
            if duration is not None:
                sessions.end(engine, result.session_id, at=minute(start + duration))
        catalog.add_pool(engine, CM, CU, 3)  # seats cut afterwards: "near full" means >= 2.7
        monkeypatch.setattr(clock, "now", lambda: minute(NOW_MINUTE))
        row = analytics.peaks(engine, minute(lo), minute(lo + length)).iloc[0]
    finally:
        engine.dispose()
    until = min(lo + length, NOW_MINUTE)
    spans = [(u, s, until if d is None else s + d) for u, s, d in planned]
    samples = np.array([in_use(spans, t) for t in range(lo, until)])
    if not len(samples):
        return
    assert row["peak"] == samples.max()
    assert row["mean"] == pytest.approx(samples.mean())
    assert row["share_near_full"] == pytest.approx(float(np.mean(10 * samples >= 9 * 3)))
    ordered = np.sort(samples)
    assert row["p95"] == ordered[int(np.ceil(0.95 * len(ordered) - 1e-9)) - 1]


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    engine = db.connect(f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.sqlite'}")
    summary = demo.generate(engine, users=60, days=10, seed=3, now=BASE)
    yield engine, summary
    engine.dispose()


def test_replay_at_owned_seats_reproduces_the_demo_denials(demo_store, monkeypatch):
    """The demo applies the login rules first come first served: replaying its history with the
    seats it had must refuse exactly the logins it refused."""
    engine, summary = demo_store
    monkeypatch.setattr(clock, "now", lambda: BASE)
    frame = analytics.replay(engine, BASE - timedelta(days=11), BASE, {})
    assert frame["recorded_denials"].sum() == summary.denials > 0
    assert (frame["denied"] == frame["recorded_denials"]).all()


def test_right_size_is_the_smallest_passing_seat_count(demo_store, monkeypatch):
    engine, _ = demo_store
    monkeypatch.setattr(clock, "now", lambda: BASE)
    start, end = BASE - timedelta(days=11), BASE
    for rate in (0.0, 0.01, 0.05):
        sized = analytics.right_size(engine, start, end, max_denial_rate=rate)
        at_needed = analytics.replay(
            engine,
            start,
            end,
            dict(
                zip(
                    zip(sized["product"], sized["license_type"], strict=True),
                    sized["needed"],
                    strict=True,
                )
            ),
        )
        fewer = analytics.replay(
            engine,
            start,
            end,
            {
                (p, t): max(n - 1, 0)
                for p, t, n in zip(
                    sized["product"], sized["license_type"], sized["needed"], strict=True
                )
            },
        )
        allowed = np.floor(rate * sized["requests"] + 1e-9)
        assert (at_needed["denied"] <= allowed).all()
        assert ((fewer["denied"] > allowed) | (sized["needed"] == 0)).all()
        assert (sized["needed_denial_rate"].fillna(0) <= rate + 1e-12).all()


def test_concurrency_on_the_demo_never_exceeds_seats_of_concurrent_pools(demo_store):
    engine, _ = demo_store
    frame = analytics.concurrency(engine, BASE - timedelta(days=11), BASE, "15min")
    seats = catalog.list_pools(engine).set_index(["product", "license_type"])["seats"]
    for product, license_type in frame.columns:
        assert frame[(product, license_type)].max() <= seats[(product, license_type)]
    assert frame.to_numpy().sum() > 0


@settings(max_examples=300, deadline=None)
@given(
    requests=st.lists(
        st.tuples(st.integers(0, 15), st.integers(-50, 2000), st.integers(1, 400)),
        max_size=150,
    ),
    rate=st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.3, 1.0]),
)
def test_right_size_search_finds_the_smallest_passing_seat_count(requests, rate):
    """The seat search (steered by models and secants) agrees with trying every seat count."""
    user = np.array([u for u, _, _ in requests], dtype=np.int64)
    s = np.array([a for _, a, _ in requests], dtype=np.int64) * 60 * analytics.SECOND_NS
    e = s + np.array([d for _, _, d in requests], dtype=np.int64) * 60 * analytics.SECOND_NS
    demand = sizing._demand(None, s, e, user, 0, 0)  # type: ignore[arg-type]
    allowed = np.floor(rate * demand.requests + 1e-9)
    fresh = sizing._demand(None, s, e, user, 0, 0)  # type: ignore[arg-type]
    ceiling = int(fresh.load.max(initial=0))
    expected = next(n for n in range(ceiling + 1) if fresh.denied(n) <= allowed)
    assert demand.needed(rate) == expected


def test_packed_integers_parse_like_split_text():
    values = np.array([0, -5, 7, 2**62, -(2**62)], dtype=np.int64)
    text = analytics.UNIT_SEPARATOR.join(map(str, values))
    assert (loading._parse_packed(text, "int", len(values)) == values).all()
    assert loading._parse_packed(text, "int", len(values) + 1) is None
    assert loading._parse_packed("1\x1fx", "int", 2) is None
    assert loading._parse_packed("1.5\x1f2", "int", 2) is None
    assert loading._parse_packed(None, "int", 0) is None
    assert loading._parse_packed(text, "time", len(values)) is None


def test_parsing_packed_integers_leaves_other_threads_warnings_alone(monkeypatch):
    """The served app draws a table (bokeh warns of pandas' deprecations) while another of its
    threads reads the analytics: that warning must stay a warning."""
    outcome: list[str] = []

    def warn_elsewhere() -> None:
        try:
            warnings.warn("a warning of another thread", UserWarning, stacklevel=1)
            outcome.append("warned")
        except UserWarning:
            outcome.append("raised")

    parse = np.fromstring

    def parse_while_another_thread_warns(*args, **kwargs):
        other = threading.Thread(target=warn_elsewhere)
        other.start()
        other.join()
        return parse(*args, **kwargs)

    monkeypatch.setattr(loading.np, "fromstring", parse_while_another_thread_warns)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert loading._parse_packed("1\x1f2", "int", 2).tolist() == [1, 2]
    assert outcome == ["warned"]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("rate", [0.0, 0.01, 0.05])
def test_right_size_search_on_larger_random_demand(seed, rate):
    """Many users and requests, so the search takes its secant steps: same answer as trying
    every seat count from the busiest down."""
    rng = np.random.default_rng(seed)
    n = 4000
    user = rng.integers(0, 300, n)
    s = np.sort(rng.integers(0, 30 * 24 * 60, n)) * 60 * analytics.SECOND_NS
    e = s + rng.integers(1, 8 * 60, n) * 60 * analytics.SECOND_NS
    demand = sizing._demand(None, s, e, user, 0, 0)  # type: ignore[arg-type]
    allowed = np.floor(rate * demand.requests + 1e-9)
    fresh = sizing._demand(None, s, e, user, 0, 0)  # type: ignore[arg-type]
    expected = int(fresh.load.max(initial=0))
    while expected > 0 and fresh.denied(expected - 1) <= allowed:
        expected -= 1
    assert demand.needed(rate) == expected
    assert len(demand.memo) < len(fresh.memo) or len(fresh.memo) <= 3
