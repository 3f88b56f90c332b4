"""FlexLM lmstat -a snapshots and polling: real outputs and hand-made fixtures.

The expected numbers of the real files were counted apart from licusage with awk (see the
comment at each figure), never by the code under test.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from licusage import catalog, queries
from licusage.cli import main
from licusage.errors import InvalidInput
from licusage.models import checkouts_t, reservations_t, sessions_t
from licusage.sources.lmstat import ServerDown, import_lmstat, read_text
from licusage.sources.lmstat_info import import_lmstat_i
from tests.helpers import realdata
from tests.test_hostile import store_checksum

FIXTURES = Path(__file__).parent / "fixtures" / "flexlm"


def _import(engine, name: str, server: str = "lic1", **options):
    path = FIXTURES / name
    return import_lmstat(engine, read_text(str(path)), server=server, source=str(path), **options)


def _cli(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def _usage(engine) -> dict[str, tuple]:
    frame = queries.pool_usage(engine)
    return {row.product: (row.seats, row.in_use, row.reserved) for row in frame.itertuples()}


def test_a_snapshot_then_the_next(engine):
    first = _import(engine, "lmstat-1.txt")
    assert (first.counts.checkouts, first.counts.sessions_started) == (4, 2)
    assert first.mismatched == {}  # 4 + 3 out + 2 reserved = 9, as printed
    assert _usage(engine) == {"solver": (10, 9, 2), "mesher": (3, 1, 0)}
    usage = queries.session_usage(engine).set_index("user")
    assert sorted(usage.index) == ["ana", "bo"]
    assert usage.loc["ana", "started_at"] == pd.Timestamp("2026-03-02 09:15", tz="UTC")
    with engine.connect() as conn:
        handles = conn.execute(
            sa.select(checkouts_t.c.display, checkouts_t.c.handle).where(
                checkouts_t.c.user_name == "bo"
            )
        ).all()
    assert sorted(handles) == [("/dev/pts/1", "lic1/27000 202"), ("/dev/pts/2", "lic1/27000 203")]
    # the same snapshot again changes nothing
    before = store_checksum(engine)
    again = _import(engine, "lmstat-1.txt")
    assert (again.counts.checkouts, again.counts.checkins, again.seats_changed) == (0, 0, 0)
    assert store_checksum(engine) == before
    second = _import(engine, "lmstat-2.txt")
    assert (second.counts.checkins, second.counts.sessions_ended) == (3, 1)
    assert _usage(engine) == {"solver": (12, 7, 3), "mesher": (3, 0, 0)}
    assert list(queries.session_usage(engine)["user"]) == ["ana"]
    with engine.connect() as conn:
        bo = conn.execute(
            sa.select(sessions_t.c.ended_at, sessions_t.c.end_reason).where(
                sessions_t.c.user_name == "bo"
            )
        ).one()
        reservations = conn.execute(
            sa.select(reservations_t.c.licenses, reservations_t.c.seen_until).order_by(
                reservations_t.c.id
            )
        ).all()
    assert bo.end_reason == "checked_in"
    assert str(bo.ended_at)[:16] == "2026-03-02 10:30"
    assert [r.licenses for r in reservations] == [2, 3]
    assert reservations[1].seen_until is None
    # the seats in force over time: 10 from the first snapshot, 12 from the second
    history = catalog.seat_history(engine)
    solver = history[history["product"] == "solver"]
    assert solver["seats"].tolist() == [10, 12]
    assert solver["valid_from"].tolist() == [
        pd.Timestamp("2026-03-02 10:00", tz="UTC"),
        pd.Timestamp("2026-03-02 10:30", tz="UTC"),
    ]


def test_an_earlier_snapshot_imported_later_keeps_the_seats_known_since(engine, tmp_path):
    _import(engine, "lmstat-2.txt")  # 12 solver seats from 10:30
    earlier = tmp_path / "lmstat-0945.txt"
    text = (FIXTURES / "lmstat-2.txt").read_text()
    earlier.write_text(text.replace("3/2/2026 10:30", "3/2/2026 9:45").replace("of 12 ", "of 10 "))
    result = import_lmstat(engine, earlier.read_text(), server="lic1")
    assert result.seats_changed == 2  # solver 10 and mesher 3, both unknown at 9:45 until now
    assert _usage(engine)["solver"][0] == 12  # today's seats are still the later count
    history = catalog.seat_history(engine)
    solver = history[history["product"] == "solver"]
    assert solver["valid_from"].dt.strftime("%H:%M").tolist() == ["09:45", "10:30"]
    assert solver["seats"].tolist() == [10, 12]
    # an earlier count equal to today's is still a fact of its moment, noted once
    same = tmp_path / "lmstat-0930.txt"
    same.write_text(text.replace("3/2/2026 10:30", "3/2/2026 9:30"))
    assert import_lmstat(engine, same.read_text(), server="lic1").seats_changed == 2
    assert import_lmstat(engine, same.read_text(), server="lic1").seats_changed == 0
    history = catalog.seat_history(engine)
    assert history[history["product"] == "solver"]["seats"].tolist() == [12, 10, 12]
    assert _usage(engine)["solver"][0] == 12


def test_a_snapshot_stamped_ahead_of_our_clock_gives_todays_seats(engine, frozen):
    _import(engine, "lmstat-1.txt")  # 10:00, as the frozen clock
    _import(engine, "lmstat-2.txt")  # 10:30: the server's clock runs 30 minutes fast
    assert _usage(engine)["solver"][0] == 12


def test_seats_issued_after_a_license_files_expiry_clear_it(engine, frozen, tmp_path):
    heading = "Feature  Version  #licenses  Expires  Vendor\n"
    listing = heading + "solver  1.0  12  28-feb-2026  acme\nmesher  1.0  3  31-dec-2026  acme\n"
    import_lmstat_i(engine, listing, server="lic1", timezone="UTC", at=datetime(2026, 1, 1))
    expiry = datetime(2026, 3, 1)  # the end of 28 February
    before_it = tmp_path / "lmstat-0227.txt"
    before_it.write_text((FIXTURES / "lmstat-2.txt").read_text().replace("3/2/2026", "2/27/2026"))
    assert import_lmstat(engine, before_it.read_text(), server="lic1").outlived == {}
    assert _expiries(engine) == {"solver": expiry, "mesher": datetime(2027, 1, 1)}
    # on 2 March the server still issues 12 solver licenses: the file was renewed
    result = _cli(
        "import",
        "lmstat",
        str(FIXTURES / "lmstat-2.txt"),
        "--server",
        "lic1",
        "--db",
        engine.url.render_as_string(hide_password=False),
    )
    assert result.exit_code == 0, result.output
    assert (
        "note: solver: lmstat lists licenses issued after the expiry its license file gave "
        "(2026-03-01 00:00 UTC): expiry cleared" in result.stderr
    )
    assert _expiries(engine) == {"solver": None, "mesher": datetime(2027, 1, 1)}
    assert _usage(engine)["solver"][0] == 12
    assert (
        import_lmstat(engine, (FIXTURES / "lmstat-2.txt").read_text(), server="lic1").outlived == {}
    )


def _expiries(engine) -> dict[str, datetime | None]:
    frame = queries.pool_usage(engine)
    return {
        r.product: None if pd.isna(r.expires_at) else r.expires_at.tz_localize(None).to_pydatetime()
        for r in frame.itertuples()
    }


def test_the_analytics_count_reservations_in_use_while_listed(engine, frozen):
    from licusage import analytics
    from licusage.analytics import loading, usage

    _import(engine, "lmstat-1.txt")  # 10:00: solver 4 + 3 out, 2 reserved: 9 in use, as printed
    frozen.advance(minutes=30)
    _import(engine, "lmstat-2.txt")  # 10:30: solver 4 out, 3 reserved: 7 in use, as printed
    frozen.advance(minutes=40)  # 11:10: the hour 10:00-11:00 is complete (rolled up)
    start, end = datetime(2026, 3, 2, 10, 0, tzinfo=UTC), datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    quarters = analytics.concurrency(engine, start, end, freq="15min")
    assert quarters[("solver", "Floating")].tolist() == [9, 9, 7, 7]
    assert quarters[("mesher", "Floating")].tolist() == [1, 1, 0, 0]
    hourly = analytics.concurrency(engine, start, end, freq="1h")  # from the roll-up
    assert hourly[("solver", "Floating")].tolist() == [9]
    peaks = analytics.peaks(engine, start, end).set_index("product")
    assert (peaks.loc["solver", "peak"], peaks.loc["solver", "peak_at"]) == (9, pd.Timestamp(start))
    reference = usage.peaks_from_holds(engine, loading.window_of(start, end)).set_index("product")
    assert reference.loc["solver", "peak"] == 9
    # now: what pool_usage counts in use (reservations included) is the analytics' in use
    now = analytics.concurrency(engine, end, end + timedelta(minutes=10), freq="10min")
    assert now[("solver", "Floating")].tolist() == [_usage(engine)["solver"][1]] == [7]
    # right-sizing: every reserved license is a request too (9 at once at 10:00, not 7)
    sized = analytics.right_size(engine, start - timedelta(hours=1), end, max_denial_rate=0)
    assert sized.set_index("product").loc["solver", "needed"] == 9


def test_in_a_pool_counted_per_user_every_reserved_license_is_in_use(engine, frozen):
    from licusage import analytics
    from licusage.models import PER_USER
    from licusage.sources.mapping import FeatureMap, Target

    mapping = FeatureMap({"solver": Target("solver", counting=PER_USER)}, strict=False)
    _import(engine, "lmstat-1.txt", mapping=mapping)  # users ana and bo, 2 reserved: 4
    frozen.advance(minutes=70)
    assert _usage(engine)["solver"][1] == 4
    start, end = datetime(2026, 3, 2, 9, 0, tzinfo=UTC), datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    quarters = analytics.concurrency(engine, start, end, freq="30min")
    assert quarters[("solver", "Floating")].tolist() == [1, 2, 4, 4]  # ana 9:15, bo 9:40
    sized = analytics.right_size(engine, start, end, max_denial_rate=0).set_index("product")
    assert sized.loc["solver", "needed"] == 4


def test_a_reservation_seen_changing_later_redoes_the_hours_rolled_up(engine, frozen, tmp_path):
    from licusage import analytics

    frozen.set(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    _import(engine, "lmstat-1.txt")  # 10:00: 7 checked out and 2 reserved
    start, end = datetime(2026, 3, 2, 10, 0, tzinfo=UTC), datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert analytics.concurrency(engine, start, end)[("solver", "Floating")].tolist() == [9, 9]
    more = (FIXTURES / "lmstat-1.txt").read_text()
    more = more.replace("3/2/2026 10:00", "3/2/2026 10:30").replace(
        "2 RESERVATIONs", "5 RESERVATIONs"
    )
    result = import_lmstat(engine, more, server="lic1")  # the same checkouts, 5 reserved
    assert (result.counts.checkouts, result.counts.checkins, result.reservations_started) == (
        0,
        0,
        1,
    )
    assert analytics.concurrency(engine, start, end)[("solver", "Floating")].tolist() == [12, 12]


def test_a_server_that_is_down_changes_nothing(engine):
    _import(engine, "lmstat-1.txt")
    before = store_checksum(engine)
    with pytest.raises(ServerDown, match=r"lic1: Cannot connect.*nothing was changed"):
        _import(engine, "lmstat-down.txt")
    assert store_checksum(engine) == before
    result = _cli(
        "import", "lmstat", str(FIXTURES / "lmstat-down.txt"), "--server", "lic1",
        "--db", engine.url.render_as_string(hide_password=False),
    )  # fmt: skip
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert store_checksum(engine) == before


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("not-a-log.txt", "is not lmstat -a output"),
        ("details.log", "is not lmstat -a output"),
        ("no-such.txt", "cannot read"),
    ],
)
def test_bad_snapshots_exit_2_and_change_nothing(store_url, name, message):
    assert _cli("import", "lmstat", str(FIXTURES / "lmstat-1.txt"), "--server", "lic1",
                "--db", store_url).exit_code == 0  # fmt: skip
    from licusage import db

    engine = db.connect(store_url)
    before = store_checksum(engine)
    result = _cli("import", "lmstat", str(FIXTURES / name), "--server", "lic1", "--db", store_url)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
    assert store_checksum(engine) == before
    engine.dispose()


def test_a_truncated_checkout_line_is_refused(sqlite_engine, tmp_path):
    text = (FIXTURES / "lmstat-1.txt").read_text()
    cut = text.replace("(lic1/27000 202), start Mon 3/2 9:40, 2 licenses", "(lic1/27000 2")
    with pytest.raises(InvalidInput, match="line 21: truncated or malformed checkout line"):
        import_lmstat(sqlite_engine, cut, server="lic1", source="cut")


def test_poll_runs_the_command_and_a_hanging_one_is_killed(sqlite_url):
    command = f'{sys.executable} -c "print(open({str(FIXTURES / "lmstat-1.txt")!r}).read())"'
    result = _cli("poll", "flexlm", "--server", "lic1", "--command", command, "--once",
                  "--db", sqlite_url)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "4 new checkouts" in result.output
    hang = f'{sys.executable} -c "import time; time.sleep(60)"'
    from licusage import db

    engine = db.connect(sqlite_url)
    before = store_checksum(engine)
    started = datetime.now()
    result = _cli("poll", "flexlm", "--server", "lic1", "--command", hang, "--timeout", "1s",
                  "--once", "--db", sqlite_url)  # fmt: skip
    assert result.exit_code == 2
    assert "did not finish within 1 s" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (datetime.now() - started).total_seconds() < 30
    # two rounds in a row of the same output: the second changes nothing, the poll goes on
    result = _cli("poll", "flexlm", "--server", "lic1", "--command", command, "--rounds", "2",
                  "--every", "1s", "--db", sqlite_url)  # fmt: skip
    assert result.exit_code == 0
    assert result.output.count("0 new checkouts") == 2
    assert store_checksum(engine) == before
    engine.dispose()


def test_poll_flexlm_takes_an_lmstat_i_command_for_the_license_files_seats(sqlite_url, tmp_path):
    listing = tmp_path / "lmstat-i.txt"
    listing.write_text(
        "Feature  Version  #licenses  Expires  Vendor\nsolver  1.0  10  permanent  mech\n"
    )
    command = f'{sys.executable} -c "print(open({str(listing)!r}).read())"'
    result = _cli("poll", "flexlm", "--server", "lic1", "--command", command, "--once",
                  "--db", sqlite_url)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 features, 1 seat counts changed, 0 expiries changed." in result.output
    from licusage import db

    engine = db.connect(sqlite_url)
    try:
        assert _usage(engine) == {"solver": (10, 0, 0)}
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- real snapshots


def test_the_real_snapshot_of_app2_and_a_later_empty_one(engine):
    path = realdata("lmstat-a-app2.txt")
    result = import_lmstat(engine, read_text(str(path)), server="app2", source=str(path))
    # awk: 38 lines with ", start " (22 + 15 + 1); 22 distinct user host pairs
    assert (result.counts.checkouts, result.counts.sessions_started) == (38, 22)
    assert result.mismatched == {}
    usage = _usage(engine)
    # "Users of featureN: (Total of A licenses issued; Total of B licenses in use)"
    printed = {f"feature{n}": (144, 0, 0) for n in range(1, 10)}
    printed |= {"feature2": (144, 22, 0), "feature5": (144, 15, 0), "feature7": (144, 1, 0)}
    printed["feature10"] = (1, 0, 0)
    assert usage == printed
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(sessions_t)).scalar_one()
    later = import_lmstat(
        engine, read_text(str(FIXTURES / "lmstat-empty.txt")), server="app2", source="empty"
    )
    assert later.counts.sessions_ended == 22
    assert queries.session_usage(engine).empty
    with engine.connect() as conn:
        after = conn.execute(sa.select(sa.func.count()).select_from(sessions_t)).scalar_one()
    assert after == total  # ended, none deleted


def test_the_real_snapshot_of_app1_with_reservations(engine):
    path = realdata("lmstat-a-app1.txt")
    result = import_lmstat(engine, read_text(str(path)), server="app1", source=str(path))
    # awk: 127 lines with ", start "; 65 distinct user/host pairs (a listing of 2 words is
    # "user host", of more the last two are host and display); 54 "Users of" blocks, one of
    # them (feature42) listed twice -> 53 features; 319 distinct reservations (feature, kind,
    # holder) of 4,140 licenses
    assert (result.counts.checkouts, result.counts.sessions_started) == (127, 65)
    assert result.counts.queued == 2  # grep -c "queued for"
    assert result.features == 53
    assert result.reservations_started == 319
    with engine.connect() as conn:
        reserved = conn.execute(sa.select(sa.func.sum(reservations_t.c.licenses))).scalar_one()
    assert reserved == 4140
    usage = queries.pool_usage(engine).set_index("product")
    assert usage.loc["feature1", "seats"] == 1814
    assert usage.loc["feature30", ["in_use", "reserved"]].tolist() == [169, 169]
    assert usage.loc["feature11", "in_use"] == 80  # one checkout of 80 licenses
    # where lmstat's own total disagrees with what it lists, the difference is reported
    assert result.mismatched == {
        "feature1": (1206, 1217),  # 1,085 out + 132 reserved
        "feature100": (2, 4),
        "feature31": (299, 316),
        "feature34": (1076, 1090),
    }
    assert usage.loc["feature1", "in_use"] == 1217


def test_the_real_snapshot_with_a_server_down_changes_nothing(engine):
    path = realdata("lmstat-a-server-down.txt")
    before = store_checksum(engine)
    with pytest.raises(ServerDown, match="host3: Cannot connect"):
        import_lmstat(engine, read_text(str(path)), server="app1", source=str(path))
    assert store_checksum(engine) == before


def test_the_real_windows_snapshot_has_no_features(engine):
    path = realdata("lmstat-a-server-up-windows.txt")
    result = import_lmstat(engine, read_text(str(path)), server="win", source=str(path))
    assert (result.features, result.counts.checkouts) == (0, 0)
