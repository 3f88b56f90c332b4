"""FlexLM lmstat -i listings: a license file's seats, their history and their expiry.

The expected numbers of the real file were counted apart from licusage with awk (see the
comment at each figure), never by the code under test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest
from click.testing import CliRunner

from licusage import alerts, analytics, catalog, queries
from licusage.cli import main
from licusage.errors import InvalidInput
from licusage.sources.flexlm_log import import_flexlm_log
from licusage.sources.lmstat_info import import_lmstat_i, parse
from licusage.sources.mapping import FeatureMap, Target
from licusage.sources.snapshot import read_text
from tests.helpers import realdata
from tests.test_hostile import store_checksum

HEADING = """\
Feature                         Version     #licenses    Expires      Vendor
_______                         _________   _________    __________   ______
"""


def _listing(*rows: str) -> str:
    return "lmstat -i output of a test\n\n" + HEADING + "".join(row + "\n" for row in rows)


def _history(engine) -> dict[str, list[tuple[str, int | None]]]:
    frame = catalog.seat_history(engine)
    history: dict[str, list[tuple[str, int | None]]] = {}
    for row in frame.itertuples():
        seats = None if pd.isna(row.seats) else int(row.seats)
        history.setdefault(row.product, []).append((f"{row.valid_from:%Y-%m-%d %H:%M}", seats))
    return history


def _seats(engine) -> dict[str, int | None]:
    frame = queries.pool_usage(engine)
    return {r.product: None if pd.isna(r.seats) else int(r.seats) for r in frame.itertuples()}


def _expiries(engine) -> dict[str, str | None]:
    frame = queries.pool_usage(engine)
    return {
        r.product: None if pd.isna(r.expires_at) else f"{r.expires_at:%Y-%m-%d %H:%M}"
        for r in frame.itertuples()
    }


def test_the_real_listing_of_app1(engine, frozen):
    path = realdata("lmstat-i-app1.txt")
    text = read_text(str(path))
    result = import_lmstat_i(
        engine,
        text,
        server="app1",
        source=str(path),
        at=datetime(2018, 6, 1, tzinfo=UTC),
        timezone="Europe/Paris",
    )
    # awk 'NR > 6 { n[$1] += $3 } END { for (f in n) print f, n[f] }': 17 increments of 16
    # features, feature12 twice (50 to 31-dec-2018 + 2 to 30-sep-2018)
    assert result.features == 16
    history = _history(engine)
    first = {feature: entries[0] for feature, entries in history.items()}
    assert {feature: seats for feature, (_, seats) in first.items()} == {
        "feature1": 2,
        "feature2": 25,
        "feature3": 5,
        "feature4": 1,
        "feature5": 1,
        "feature6": 2,
        "feature7": 600,
        "feature8": 100,
        "feature9": 20,
        "feature10": 50,
        "feature_11": 150,
        "feature12": 52,
        "feature13": 2,
        "feature14": 2,
        "feature15": 2,
        "feature16": 1,
    }
    assert {at for at, _ in first.values()} == {"2018-06-01 00:00"}
    # the 3 increments to 30-sep-2018 end at midnight, Paris (22:00 UTC, summer time); the 12
    # to 31-dec-2018 at 23:00 UTC; "1-jan-0" and "01-jan-0000" are permanent
    assert history["feature12"] == [
        ("2018-06-01 00:00", 52),
        ("2018-09-30 22:00", 50),
        ("2018-12-31 23:00", 0),
    ]
    assert history["feature13"] == [("2018-06-01 00:00", 2), ("2018-09-30 22:00", 0)]
    assert history["feature7"] == [("2018-06-01 00:00", 600), ("2018-12-31 23:00", 0)]
    assert history["feature15"] == [("2018-06-01 00:00", 2)]
    assert [(f"{at:%Y-%m-%d %H:%M}", features) for at, features in result.drops] == [
        ("2018-09-30 22:00", ["feature12", "feature13", "feature14"]),
        (
            "2018-12-31 23:00",
            [*sorted(f"feature{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12)), "feature_11"],
        ),
    ]
    # today (the frozen clock, 2026) only the permanent ones are left
    seats = _seats(engine)
    assert {f: n for f, n in seats.items() if n} == {"feature15": 2, "feature16": 1}
    # a pool expires with its last increment: feature12's 50 at the end of 31-dec-2018, the
    # two permanent ones never
    assert result.expiries_changed == 14
    expected = {f"feature{n}": "2018-12-31 23:00" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12)}
    expected |= {"feature_11": "2018-12-31 23:00", "feature13": "2018-09-30 22:00"}
    expected |= {"feature14": "2018-09-30 22:00", "feature15": None, "feature16": None}
    assert _expiries(engine) == expected
    # the same listing again changes nothing
    before = store_checksum(engine)
    again = import_lmstat_i(
        engine, text, server="app1", at=datetime(2018, 6, 1, tzinfo=UTC), timezone="Europe/Paris"
    )
    assert again.seats_changed == 0
    assert store_checksum(engine) == before


def test_a_renewed_file_replaces_the_expiries_foreseen(engine, frozen):
    old = _listing("solver  1.0  10  31-dec-2026  acme", "mesher  1.0  2  permanent  acme")
    result = import_lmstat_i(engine, old, server="lic1", at=datetime(2026, 1, 1, tzinfo=UTC))
    assert (result.seats_changed, result.expired, result.uncounted) == (2, [], [])
    assert _history(engine)["solver"] == [("2026-01-01 00:00", 10), ("2027-01-01 00:00", 0)]
    assert _seats(engine) == {"solver": 10, "mesher": 2}  # now: 2026-03-02
    renewed = _listing("solver  2.0  12  31-dec-2027  acme", "mesher  1.0  2  permanent  acme")
    result = import_lmstat_i(engine, renewed, server="lic1", at=datetime(2026, 6, 1, tzinfo=UTC))
    assert result.seats_changed == 1
    assert _history(engine)["solver"] == [
        ("2026-01-01 00:00", 10),
        ("2026-06-01 00:00", 12),
        ("2028-01-01 00:00", 0),
    ]
    assert _history(engine)["mesher"] == [("2026-01-01 00:00", 2)]
    assert _seats(engine) == {"solver": 10, "mesher": 2}  # 12 only from June on
    # the renewed file moves the expiry on, and says so
    assert result.expiries_changed == 1
    assert _expiries(engine) == {"solver": "2028-01-01 00:00", "mesher": None}


def test_expired_uncounted_and_mapped_features(engine, frozen):
    mapping = FeatureMap({"cad_a": Target("CAD"), "cad_b": Target("CAD")}, strict=False)
    text = _listing(
        "cad_a  1.0  3  permanent  acme",
        "cad_b  1.0  4  1-jan-0  acme",
        "old  1.0  5  31-dec-2020  acme",
        "viewer  1.0  uncounted  permanent  acme",
    )
    result = import_lmstat_i(engine, text, server="lic1", mapping=mapping)
    assert (result.expired, result.uncounted) == (["old"], ["viewer"])
    assert _seats(engine) == {"CAD": 7, "old": 0, "viewer": None}  # mapped features add up
    # CAD has a permanent increment; the uncounted viewer's license never expires either
    assert _expiries(engine) == {"CAD": None, "old": "2021-01-01 00:00", "viewer": None}


def test_a_pool_expires_with_its_last_increment_and_the_alert_says_so(engine, frozen):
    mapping = FeatureMap({"cad_a": Target("CAD"), "cad_b": Target("CAD")}, strict=False)
    text = _listing("cad_a  1.0  3  15-mar-2026  acme", "cad_b  1.0  4  20-mar-2026  acme")
    result = import_lmstat_i(engine, text, server="lic1", mapping=mapping, timezone="UTC")
    assert result.expiries_changed == 1
    assert _expiries(engine) == {"CAD": "2026-03-21 00:00"}  # cad_b's day ends the pool
    config = alerts.parse_config('[[rule]]\nname = "expiry"\nkind = "pool_expiry"\ndays = [30]')
    assert [alert.message for alert in alerts.decide(engine, config.rules)] == [
        "CAD=Floating expires in 18d 14h (2026-03-21 00:00 UTC)",
        "CAD=Floating: 3 of 7 seats expire in 13d 14h (2026-03-16 00:00 UTC)",  # cad_a's
    ]


def test_seats_follow_the_license_file_as_its_increments_expire(engine, frozen):
    text = _listing("solver  1.0  3  15-mar-2026  acme", "solver  1.0  4  20-mar-2026  acme")
    import_lmstat_i(engine, text, server="lic1", timezone="UTC")  # now: 2026-03-02
    assert _seats(engine) == {"solver": 7}
    frozen.set(datetime(2026, 3, 17, tzinfo=UTC))  # no import since: the first 3 have gone
    assert _seats(engine) == {"solver": 4}
    assert queries.pool_usage(engine)["free"].tolist() == [4]
    frozen.set(datetime(2026, 3, 21, tzinfo=UTC))
    assert _seats(engine) == {"solver": 0}
    frozen.set(datetime(2026, 3, 10, tzinfo=UTC))  # and the clock that goes back
    assert _seats(engine) == {"solver": 7}
    # what the history has in store next: 4 from the end of 15 March, then 0
    usage = queries.pool_usage(engine).iloc[0]
    assert (usage["next_seats"], usage["next_seats_at"]) == (
        4,
        pd.Timestamp("2026-03-16", tz="UTC"),
    )
    frozen.set(datetime(2026, 3, 17, tzinfo=UTC))
    usage = queries.pool_usage(engine).iloc[0]
    assert (usage["next_seats"], usage["next_seats_at"]) == (
        0,
        pd.Timestamp("2026-03-21", tz="UTC"),
    )
    frozen.set(datetime(2026, 3, 22, tzinfo=UTC))
    assert queries.pool_usage(engine)[["next_seats", "next_seats_at"]].isna().all(axis=None)


def test_seats_that_expire_before_the_pool_are_alerted(engine, frozen):
    path = realdata("lmstat-i-app1.txt")
    at = datetime(2018, 6, 1, tzinfo=UTC)
    import_lmstat_i(engine, read_text(str(path)), server="app1", at=at, timezone="Europe/Paris")
    config = alerts.parse_config('[[rule]]\nname = "expiry"\nkind = "pool_expiry"\ndays = [30]')
    frozen.set(datetime(2018, 9, 15, tzinfo=UTC))
    fired = {f.subject: f.message for f in alerts.evaluate(engine, config).fired}
    # feature13 and feature14 end on 30-sep-2018 (midnight in Paris); feature12 loses its
    # increment of 2 that day and keeps its 50 to 31-dec-2018, more than 30 days away
    assert fired == {
        "feature13=Floating within 30 days": (
            "feature13=Floating expires in 15d 22h (2018-09-30 22:00 UTC)"
        ),
        "feature14=Floating within 30 days": (
            "feature14=Floating expires in 15d 22h (2018-09-30 22:00 UTC)"
        ),
        "feature12=Floating seats drop 2018-09-30 22:00 within 30 days": (
            "feature12=Floating: 2 of 52 seats expire in 15d 22h (2018-09-30 22:00 UTC)"
        ),
    }
    frozen.set(datetime(2018, 10, 1, tzinfo=UTC))  # the drop is past: its alert clears
    result = alerts.evaluate(engine, config)
    assert [f.subject for f in result.cleared] == [
        "feature12=Floating seats drop 2018-09-30 22:00 within 30 days"
    ]
    assert result.fired == ()  # feature13 and feature14 stay alerted: expired
    rule = alerts.parse_config(
        '[[rule]]\nkind = "pool_expiry"\npool = "feature7=Floating"\ndays = [30]'
    ).rules
    assert alerts.decide(engine, rule, now=datetime(2018, 9, 15, tzinfo=UTC)) == []


def test_the_seats_reach_a_debug_logs_analytics(engine, frozen):
    log = realdata("flexlm-debug-autodesk-2016.log")
    import_flexlm_log(engine, [str(log)], server="SERVER01", timezone="Europe/Paris")
    start, end = datetime(2016, 3, 29, tzinfo=UTC), datetime(2016, 5, 1, tzinfo=UTC)
    assert analytics.peaks(engine, start, end)["seats"].isna().all()  # a log says nothing
    text = _listing("64300ACD_F  1.000  15  permanent  adskflex")
    import_lmstat_i(engine, text, server="SERVER01", at=datetime(2016, 3, 1, tzinfo=UTC))
    peaks = analytics.peaks(engine, start, end).set_index("product")
    assert peaks.loc["64300ACD_F", ["peak", "seats"]].tolist() == [12, 15]
    assert peaks.drop("64300ACD_F")["seats"].isna().all()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Users of f: (Total of 1 license issued; Total of 0 licenses in use)\n", "no 'Feature"),
        (HEADING, "lists no features"),
        (_listing("solver 1.0 10 31-dec-2026"), "line 5: not a feature line"),
        (_listing("solver 1.0 ten 31-dec-2026 acme"), "line 5: not a feature line"),
        (_listing("solver 1.0 10 31-foo-2026 acme"), "expiry date '31-foo-2026'"),
        (_listing("solver 1.0 10 31-feb-2026 acme"), "expiry date '31-feb-2026'"),
    ],
)
def test_bad_listings_change_nothing(engine, text, message):
    before = store_checksum(engine)
    with pytest.raises(InvalidInput, match=message):
        import_lmstat_i(engine, text, server="lic1", source="f.txt")
    assert store_checksum(engine) == before


def test_parse_reads_permanent_forms():
    increments = parse(
        _listing("a 1 1 1-jan-0 v", "b 1 1 01-jan-0000 v", "c 1 1 PERMANENT v"), source="t"
    )
    assert [i.expires for i in increments] == [None, None, None]


def test_the_cli(sqlite_url, tmp_path, frozen):
    listing = tmp_path / "file.txt"
    listing.write_text(_listing("solver  1.0  10  31-dec-2026  acme"))
    runner = CliRunner()
    result = runner.invoke(
        main, ["import", "lmstat-i", str(listing), "--server", "lic1", "--db", sqlite_url]
    )
    assert result.exit_code == 0, result.output
    assert "1 features, 1 seat counts changed, 1 expiries changed" in result.output
    assert "from 2027-01-01 00:00 UTC fewer seats of: solver" in result.output
    pools = runner.invoke(main, ["pools", "--format", "json", "--db", sqlite_url])
    (solver,) = json.loads(pools.output)
    assert (solver["seats"], solver["next_seats"]) == (10, 0)
    assert solver["next_seats_at"] == "2027-01-01T00:00:00+00:00"
    table = runner.invoke(main, ["pools", "--db", sqlite_url], env={"TZ": "UTC"})
    assert "Next Seats" in table.output.splitlines()[0]
    assert "0 from 2027-01-01 00:00" in table.output.splitlines()[-1]
    bad = runner.invoke(
        main,
        [
            "import",
            "lmstat-i",
            str(listing),
            "--server",
            "lic1",
            "--at",
            "soon",
            "--db",
            sqlite_url,
        ],
    )
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines() == [
        "Error: --at must be an ISO 8601 time such as 2026-03-02T10:00, not 'soon'"
    ]
    missing = runner.invoke(
        main,
        ["import", "lmstat-i", str(tmp_path / "nope.txt"), "--server", "lic1", "--db", sqlite_url],
    )
    assert missing.exit_code == 2
    assert "cannot read" in missing.output
    assert "Traceback" not in missing.output
