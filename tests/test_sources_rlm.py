"""Reprise RLM report logs as a source, on hand-made fixtures in the documented format.

Every expected figure below was counted by hand from tests/fixtures/rlm/details.rl (the comments
say how), never by the code under test.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from licusage import db, queries
from licusage.models import denials_t
from licusage.sources.rlm_log import import_rlm_log
from tests.sources_checks import assert_refused, cli
from tests.test_hostile import store_checksum
from tests.test_sources_flexlm import canonical

FIXTURES = Path(__file__).parent / "fixtures" / "rlm"
DETAILS = FIXTURES / "details.rl"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_every_detail_of_a_report_log(engine):
    result = import_rlm_log(engine, [str(DETAILS)], server="rlm1")
    counts = result.counts
    assert counts is not None
    # 6 OUT records; 4 IN records match a checkout, zed's (handle 99) does not
    assert (counts.checkouts, counts.checkins, counts.unmatched) == (6, 4, 1)
    # 2 DENY, 1 QUE; START, SHUTDOWN, START
    assert (counts.denials, counts.queued, counts.restarts) == (2, 1, 3)
    # ana, bo, cy, bo again; all but bo's second end
    assert (counts.sessions_started, counts.sessions_ended) == (4, 3)
    assert result.lines == 21
    store = canonical(engine)
    # 12/31 -> 01/01 is the next year; IN why 4 = idle timeout, 3 = removed; SHUTDOWN ends bo
    assert store["sessions"] == sorted(
        [
            ("ana", "ws12", "rlm1", at("2026-12-31 22:10"), at("2027-01-01 01:00"),
             at("2027-01-01 01:00"), "idle_timeout"),
            ("bo", "ws3", "rlm1", at("2026-12-31 23:50"), at("2027-01-01 03:00"),
             at("2027-01-01 03:00"), "server_restart"),
            ("cy", "ws7", "rlm1", at("2027-01-01 01:05"), at("2027-01-01 02:00"),
             at("2027-01-01 02:00"), "removed"),
            ("bo", "ws3", "rlm1", at("2027-01-01 03:10"), at("2027-01-01 04:00"), None, None),
        ]
    )  # fmt: skip
    bo = at("2027-01-01 03:10")
    # counts are licenses: 3, then 3 + 1, then 1 once the checkout of 3 (handle 1) is in
    assert [h for h in store["holds"] if h[:2] == ("bo", bo)] == [
        ("bo", bo, "solver", 1, at("2027-01-01 04:00"), None),
        ("bo", bo, "solver", 3, at("2027-01-01 03:10"), at("2027-01-01 03:20")),
        ("bo", bo, "solver", 4, at("2027-01-01 03:20"), at("2027-01-01 04:00")),
    ]
    ana = at("2026-12-31 22:10")
    assert [h for h in store["holds"] if h[:2] == ("ana", ana)] == [
        ("ana", ana, "mesher", 1, at("2026-12-31 22:15"), at("2027-01-01 01:00")),
        ("ana", ana, "solver", 2, at("2026-12-31 22:10"), at("2027-01-01 00:20")),
    ]
    reasons = {(c[0], c[1], c[4]): (c[3], c[6]) for c in store["checkouts"]}
    assert reasons == {
        ("solver", "ana", at("2026-12-31 22:10")): (2, "checked_in"),
        ("mesher", "ana", at("2026-12-31 22:15")): (1, "idle_timeout"),
        ("solver", "bo", at("2026-12-31 23:50")): (2, "server_restart"),
        ("solver", "cy", at("2027-01-01 01:05")): (1, "removed"),
        ("solver", "bo", at("2027-01-01 03:10")): (3, "checked_in"),
        ("solver", "bo", at("2027-01-01 03:20")): (1, None),
    }
    assert store["denials"] == [
        (at("2026-12-31 23:55"), "cy", "pool_full"),  # status -22: all licenses in use
        (at("2027-01-01 02:10"), "dee", "server_denied"),
    ]
    assert store["queued"] == [(at("2026-12-31 23:55:30"), "solver")]
    with engine.connect() as conn:
        details = conn.execute(sa.select(denials_t.c.detail).order_by(denials_t.c.at)).scalars()
        assert list(details) == ["rlm status -22", "rlm status -5"]
    pools = queries.pool_usage(engine).set_index("product")
    assert sorted(pools.index) == ["mesher", "solver"]
    assert pools["seats"].isna().all()  # a report log says nothing about seats: unknown
    assert pools.loc["solver", "in_use"] == 1  # bo's checkout of 1 (handle 2) is out
    assert pools.loc["mesher", "in_use"] == 0
    assert list(queries.session_usage(engine)["user"]) == ["bo"]


def test_timezone_converts_the_servers_local_times_to_utc(engine):
    import_rlm_log(engine, [str(DETAILS)], server="rlm1", timezone="Europe/Paris")
    store = canonical(engine)
    assert store["sessions"][0][3] == at("2026-12-31 21:10")  # 22:10 in Paris (UTC+1)


def test_reimporting_changes_nothing_and_a_grown_log_adds_only_its_new_lines(engine, tmp_path):
    lines = DETAILS.read_bytes().splitlines(keepends=True)
    log = tmp_path / "acme.rl"
    # the first part ends inside line 12 (ana's IN of 01:00), after the new year began
    log.write_bytes(b"".join(lines[:11]) + lines[11][:20])
    first = import_rlm_log(engine, [str(log)], server="rlm1")
    assert first.lines == 11
    before = store_checksum(engine)
    again = import_rlm_log(engine, [str(log)], server="rlm1")
    assert (again.lines, again.skipped_bytes) == (0, len(b"".join(lines[:11])))
    assert store_checksum(engine) == before
    log.write_bytes(b"".join(lines))
    grown = import_rlm_log(engine, [str(log)], server="rlm1")
    assert grown.lines == 21 - 11
    two_steps = canonical(engine)
    other = db.connect(f"sqlite:///{tmp_path / 'one-step.sqlite'}")
    import_rlm_log(other, [str(DETAILS)], server="rlm1")
    assert canonical(other) == two_steps
    other.dispose()
    assert import_rlm_log(engine, [str(DETAILS)], server="rlm1").lines == 0


@pytest.mark.parametrize(
    ("files", "extra", "message"),
    [
        ([FIXTURES / "not-a-log.txt"], [], "is not an RLM report log"),
        ([FIXTURES / "truncated.rl"], [], "line 4: truncated or malformed OUT record"),
        ([FIXTURES / "no-such-file.rl"], [], "cannot read"),
        ([DETAILS], ["--timezone", "Mars/Olympus"], "unknown time zone"),
        ([DETAILS, FIXTURES / "truncated.rl"], [], "truncated"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_changes_nothing(store_url, files, extra, message):
    engine = db.connect(store_url)
    import_rlm_log(engine, [str(DETAILS)], server="other")
    engine.dispose()
    args = ["import", "rlm-log", *map(str, files), "--server", "rlm1", *extra]
    assert_refused(store_url, args, message)


def test_the_cli_imports_and_reports(store_url):
    result = cli("import", "rlm-log", str(DETAILS), "--server", "rlm1", "--db", store_url)
    assert result.exit_code == 0, result.output
    assert "6 checkouts, 4 check-ins, 4 sessions started, 3 ended" in result.output
    assert "2 denials, 1 queued, 3 restarts, 1 check-ins of unseen checkouts" in result.output
    result = cli("import", "rlm-log", str(DETAILS), "--server", "rlm1", "--db", store_url)
    assert "Read 0 new lines" in result.output


def test_a_flexlm_server_name_is_refused(sqlite_engine):
    from licusage.errors import InvalidInput
    from licusage.sources.flexlm_log import import_flexlm_log

    import_flexlm_log(sqlite_engine, [str(FIXTURES.parent / "flexlm" / "details.log")], server="s")
    with pytest.raises(InvalidInput, match="is a flexlm server"):
        import_rlm_log(sqlite_engine, [str(DETAILS)], server="s")
