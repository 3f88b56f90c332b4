"""Analytics on pools counted per checkout, and on seats that change over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from licusage import analytics, catalog, sessions
from licusage.sources.flexlm_log import import_flexlm_log
from tests.helpers import realdata

DETAILS = Path(__file__).parent / "fixtures" / "flexlm" / "details.log"
CM, CONC = "Case Management", "Concurrent User"


def test_peaks_and_concurrency_sum_the_licenses_checked_out(engine, frozen):
    frozen.set(datetime(2026, 3, 5, tzinfo=UTC))
    import_flexlm_log(engine, [str(DETAILS)], server="lic1")
    start, end = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC)
    peaks = analytics.peaks(engine, start, end).set_index("product")
    # solver: ana's 8 licenses, then bo's 1 at 00:05 -> 9 (the log's details, by hand)
    assert peaks.loc["solver", "peak"] == 9
    assert peaks.loc["solver", "peak_at"] == pd.Timestamp("2026-03-03 00:05", tz="UTC")
    assert peaks.loc["mesher", "peak"] == 1
    assert pd.isna(peaks.loc["solver", "seats"])  # unknown, not 0
    assert pd.isna(peaks.loc["solver", "share_near_full"])
    hourly = analytics.concurrency(engine, start, end, "1h")
    solver = hourly[("solver", "Floating")]
    assert solver[pd.Timestamp("2026-03-02 23:00", tz="UTC")] == 8
    assert solver[pd.Timestamp("2026-03-03 00:00", tz="UTC")] == 9
    assert solver[pd.Timestamp("2026-03-03 01:00", tz="UTC")] == 3  # ana's 2 + bo's 1
    assert solver[pd.Timestamp("2026-03-03 03:00", tz="UTC")] == 3  # restart at 03:10, bo 03:15
    sized = analytics.right_size(engine, start, end).set_index("product")
    # 9 licenses out at 00:06 when cy was denied one: serving cy too takes a 10th
    assert sized.loc["solver", "needed"] == 10
    assert pd.isna(sized.loc["solver", "change"])


def test_time_near_full_uses_the_seats_in_force_then(engine, frozen):
    t0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    frozen.set(t0)
    catalog.add_pool(engine, CM, CONC, 2)
    sessions.login(engine, "alice", {CM: CONC}, at=t0)
    sessions.login(engine, "bob", {CM: CONC}, at=t0)
    frozen.set(t0 + timedelta(hours=1))
    catalog.add_pool(engine, CM, CONC, 10)  # renewed: 10 seats from 11:00
    frozen.set(t0 + timedelta(hours=2))
    peaks = analytics.peaks(engine, t0, t0 + timedelta(hours=2)).set_index("license_type")
    # full (2 of 2) for the first hour, 2 of 10 for the second
    assert peaks.loc[CONC, "share_near_full"] == pytest.approx(0.5)
    assert peaks.loc[CONC, "seats"] == 10
    history = catalog.seat_history(engine)
    assert history["seats"].tolist() == [2, 10]


def test_the_real_autodesk_log_peaks(engine):
    path = realdata("flexlm-debug-autodesk-2016.log")
    import_flexlm_log(engine, [str(path)], server="SERVER01", timezone="Europe/Paris")
    start, end = datetime(2016, 3, 29, tzinfo=UTC), datetime(2016, 5, 1, tzinfo=UTC)
    peaks = analytics.peaks(engine, start, end).set_index("product")
    # awk over the log: OUT +licenses / matching IN -1 per feature, the level after each
    # second's lines; the highest and the first time it was reached (local time, Paris)
    assert peaks["peak"].to_dict() == {
        "64300ACD_F": 12,
        "85730ACD_2012_0F": 12,
        "86295ACD_2015_0F": 1,
        "65400MAP_F": 1,
        "85776MAP_2012_0F": 1,
    }
    assert peaks.loc["64300ACD_F", "peak_at"] == pd.Timestamp("2016-04-15 09:32:07", tz="UTC")
    assert peaks.loc["86295ACD_2015_0F", "peak_at"] == pd.Timestamp("2016-03-31 09:22:11", tz="UTC")
    daily = analytics.concurrency(engine, start, end, "1D")
    assert int(daily[("64300ACD_F", "Floating")].max()) == 12
