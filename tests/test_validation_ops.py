"""Values that would poison the store are refused (issue 15, finding 6), on SQLite and
PostgreSQL: every argument of login / touch / end is checked once (licusage.validation) and a
refused call changes nothing, so the queries and analytics keep working."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from licusage import analytics, catalog, queries, sessions, validation
from licusage.errors import InvalidInput
from tests.test_hostile import store_checksum

CM = "Case Management"
CONC = {CM: catalog.CONCURRENT_USER}

BAD_TIMES = [
    pd.NaT,
    np.datetime64("NaT"),
    datetime(1, 1, 1),
    datetime(1969, 12, 31, 23, 59),
    datetime(9999, 12, 31),
    datetime(2200, 1, 1, tzinfo=UTC),
    "2026-03-02T10:00:00",
    1_772_445_600,
    1.5,
    date(2026, 3, 2),
    float("nan"),
]
BAD_HOSTS = [
    "ws\x00one",
    "x" * 10_000,
    "ws\n1",
    "ws\x1b[2J",
    "\u202ews",
    7,
    b"ws",
    {"a": 1},
    ["ws"],
]


@pytest.fixture
def store(engine, frozen):
    catalog.add_pool(engine, CM, catalog.CONCURRENT_USER, 5)
    session_id = sessions.login(engine, "alice", CONC, host="ws-1").session_id
    assert session_id is not None
    frozen.advance(hours=1)
    return engine, session_id


@pytest.mark.parametrize("at", BAD_TIMES, ids=repr)
def test_bad_times_are_refused_by_every_operation(store, at):
    engine, session_id = store
    before = store_checksum(engine)
    with pytest.raises(InvalidInput, match="at "):
        sessions.login(engine, "bob", CONC, at=at)
    with pytest.raises(InvalidInput, match="at "):
        sessions.touch(engine, session_id, at=at)
    with pytest.raises(InvalidInput, match="at "):
        sessions.end(engine, session_id, at=at)
    assert store_checksum(engine) == before
    # the store still answers every query
    assert len(queries.session_usage(engine)) == 1
    start = datetime(2026, 3, 1, tzinfo=UTC)
    assert analytics.peaks(engine, start, start + timedelta(days=3))["peak"].max() == 1
    assert len(analytics.hour_of_week(engine, start, start + timedelta(days=3))) > 0


@pytest.mark.parametrize("host", BAD_HOSTS, ids=lambda h: repr(h)[:24])
def test_bad_hosts_are_refused(store, host):
    engine, _ = store
    before = store_checksum(engine)
    with pytest.raises(InvalidInput, match="host"):
        sessions.login(engine, "bob", CONC, host=host)
    assert store_checksum(engine) == before


def test_good_values_are_normalised(store):
    engine, _ = store
    paris = timezone(timedelta(hours=1))
    at = datetime(2026, 3, 2, 11, 30, tzinfo=paris)  # 10:30 UTC
    result = sessions.login(engine, "bob", CONC, host="  ws-2  ", at=pd.Timestamp(at))
    assert result.ok
    row = queries.sessions_by_id(engine, [result.session_id]).iloc[0]
    assert row["host"] == "ws-2"
    assert row["started_at"] == pd.Timestamp("2026-03-02 10:30", tz=UTC)
    assert sessions.login(engine, "carol", CONC, host="").ok  # an empty host is no host
    assert validation.check_time(datetime(2026, 3, 2, 10, 0)) == datetime(
        2026, 3, 2, 10, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "licenses", [None, [CM], "Case Management", {CM: None}, {None: "x"}, {"": "x"}, {CM: 7}]
)
def test_malformed_licenses_are_refused(store, licenses):
    engine, _ = store
    before = store_checksum(engine)
    with pytest.raises(InvalidInput):
        sessions.login(engine, "bob", licenses)
    assert store_checksum(engine) == before
