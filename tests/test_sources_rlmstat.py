"""RLM rlmstat -a snapshots: hand-made fixtures in the documented layout (tests/fixtures/rlm).

Every expected figure was counted by hand from the fixture files (the comments say how), never
by the code under test.
"""

from __future__ import annotations

import json
import shlex
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from licusage import actions, catalog, db, queries
from licusage.errors import InvalidInput
from licusage.models import checkouts_t, reservations_t, sessions_t
from licusage.sources import remove
from licusage.sources.lmstat import import_lmstat
from licusage.sources.poll import Poller, PollTarget
from licusage.sources.rlmstat import import_rlmstat, parse
from licusage.sources.snapshot import ServerDown, read_text
from tests.sources_checks import assert_refused, cli
from tests.test_hostile import store_checksum
from tests.test_sources_remove import RECORD

FIXTURES = Path(__file__).parent / "fixtures" / "rlm"
FIRST = FIXTURES / "rlmstat-1.txt"


def _import(engine, name: str, server: str = "rlm1", **options):
    path = FIXTURES / name
    text = read_text(str(path), "rlmstat -a output")
    return import_rlmstat(engine, text, server=server, source=str(path), **options)


def _usage(engine) -> dict[str, tuple]:
    frame = queries.pool_usage(engine)
    return {row.product: (row.seats, row.in_use, row.reserved) for row in frame.itertuples()}


def _printer(tmp_path, name: str) -> str:
    script = tmp_path / "rlmstat.py"
    script.write_text(
        f"import sys; sys.stdout.write(open({str(FIXTURES / name)!r}).read())", encoding="utf-8"
    )
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


def test_a_snapshot_then_the_next(engine):
    first = _import(engine, "rlmstat-1.txt")
    # usage lines: acme 41, 4a, 4b, 42 and mech 1f, 2B; users ana, bo, cy, Dee Dee
    assert (first.counts.checkouts, first.counts.sessions_started) == (6, 4)
    assert first.features == 3  # solver, mesher (acme), viewer (mech)
    # solver: inuse 6 + 2 reserved printed; listed 4 + (1+1) + 1 out and 2 - 1 reserved unused
    assert first.mismatched == {}
    # seats = count + # reservations: solver 8 + 2, mesher 3 + 0, viewer 20 + 0
    assert _usage(engine) == {"solver": (10, 8, 1), "mesher": (3, 1, 0), "viewer": (20, 2, 0)}
    usage = queries.session_usage(engine).set_index("user")
    assert sorted(usage.index) == ["Dee Dee", "ana", "bo", "cy"]
    assert set(usage["source"]) == {"rlm1"}
    assert usage.loc["ana", "started_at"] == pd.Timestamp("2026-03-02 09:15", tz="UTC")
    assert usage.loc["cy", "started_at"] == pd.Timestamp("2026-03-01 17:30", tz="UTC")
    assert usage.loc["Dee Dee", "started_at"] == pd.Timestamp("2026-02-28 08:05", tz="UTC")
    with engine.connect() as conn:
        bo = conn.execute(
            sa.select(checkouts_t.c.handle, checkouts_t.c.licenses, checkouts_t.c.version)
            .where(checkouts_t.c.user_name == "bo")
            .order_by(checkouts_t.c.handle)
        ).all()
    # 4a is 1 free + 1 reserved license, 4b one free one
    assert [tuple(row) for row in bo] == [
        ("acme rlm1/5055 4a", 2, "v2026.0"),
        ("acme rlm1/5055 4b", 1, "v2026.0"),
    ]
    # the same snapshot again changes nothing
    before = store_checksum(engine)
    again = _import(engine, "rlmstat-1.txt")
    assert (again.counts.checkouts, again.counts.checkins, again.seats_changed) == (0, 0, 0)
    assert store_checksum(engine) == before
    second = _import(engine, "rlmstat-2.txt")
    # gone: ana's solver (41), bo's 4b, cy's viewer (1f); new: ed's solver (50)
    assert (second.counts.checkins, second.counts.sessions_ended) == (3, 1)
    assert (second.counts.checkouts, second.counts.sessions_started) == (1, 1)
    assert second.seats_changed == 1  # solver: count 10 + 2 reserved
    assert second.mismatched == {}
    # solver: bo 2 + ed 3 out, 1 reservation unused; viewer: Dee Dee's 1
    assert _usage(engine) == {"solver": (12, 6, 1), "mesher": (3, 1, 0), "viewer": (20, 1, 0)}
    assert sorted(queries.session_usage(engine)["user"]) == ["Dee Dee", "ana", "bo", "ed"]
    with engine.connect() as conn:
        cy = conn.execute(
            sa.select(sessions_t.c.ended_at, sessions_t.c.end_reason).where(
                sessions_t.c.user_name == "cy"
            )
        ).one()
    assert cy.end_reason == "checked_in"
    assert str(cy.ended_at)[:16] == "2026-03-02 10:30"
    history = catalog.seat_history(engine)
    solver = history[history["product"] == "solver"]
    assert solver["seats"].tolist() == [10, 12]


def test_an_empty_snapshot_ends_everything_and_deletes_nothing(engine):
    _import(engine, "rlmstat-1.txt")
    empty = _import(engine, "rlmstat-empty.txt")
    assert (empty.counts.checkins, empty.counts.sessions_ended) == (6, 4)
    assert queries.session_usage(engine).empty
    # both solver reservations unused now: 2 in use, both reserved
    assert _usage(engine) == {"solver": (12, 2, 2), "mesher": (3, 0, 0), "viewer": (20, 0, 0)}
    with engine.connect() as conn:
        ends = conn.execute(sa.select(sessions_t.c.ended_at, sessions_t.c.end_reason)).all()
        reserved = conn.execute(
            sa.select(reservations_t.c.licenses, reservations_t.c.seen_until).order_by(
                reservations_t.c.id
            )
        ).all()
    assert len(ends) == 4
    assert {str(e.ended_at)[:16] for e in ends} == {"2026-03-02 11:00"}
    assert {e.end_reason for e in ends} == {"checked_in"}
    assert [r.licenses for r in reserved] == [1, 2]
    assert reserved[1].seen_until is None
    before = store_checksum(engine)
    _import(engine, "rlmstat-empty.txt")
    assert store_checksum(engine) == before


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("rlmstat-isv-down.txt", "ISV server mech: not running"),
        ("rlmstat-down.txt", "rlm server: cannot connect"),
    ],
)
def test_a_server_that_is_down_changes_nothing(engine, name, message):
    _import(engine, "rlmstat-1.txt")
    before = store_checksum(engine)
    with pytest.raises(ServerDown, match=rf"rlm1 is down \({message}.*nothing was changed"):
        _import(engine, name)
    assert store_checksum(engine) == before
    url = engine.url.render_as_string(hide_password=False)
    result = cli("import", "rlmstat", str(FIXTURES / name), "--server", "rlm1", "--db", url)
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert store_checksum(engine) == before


@pytest.mark.parametrize(
    ("file", "extra", "message"),
    [
        (FIXTURES / "not-a-log.txt", [], "is not rlmstat -a output"),
        (FIXTURES.parent / "flexlm" / "lmstat-1.txt", [], "is not rlmstat -a output"),
        (FIXTURES / "details.rl", [], "is not rlmstat -a output"),
        (FIXTURES / "rlmstat-truncated.txt", [], "line 60: truncated or malformed license usage"),
        (FIXTURES / "no-such-file.txt", [], "cannot read"),
        (FIXTURES, [], "cannot read"),
        (FIRST, ["--timezone", "Mars/Olympus"], "unknown time zone"),
        (FIRST, ["--at", "yesterday"], "--at must be an ISO 8601 time"),
        (FIRST, ["--map", str(FIXTURES.parent / "flexlm" / "mapping-solver-only.toml")], "not in"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_changes_nothing(store_url, file, extra, message):
    engine = db.connect(store_url)
    _import(engine, "rlmstat-1.txt")
    engine.dispose()
    assert_refused(store_url, ["import", "rlmstat", str(file), "--server", "rlm1", *extra], message)


def test_a_cut_count_line_and_a_binary_file_are_refused(sqlite_engine, tmp_path):
    text = FIRST.read_text()
    cut = text.replace("count: 3, # reservations: 0, inuse: 1, exp: permanent", "count: 3, # re")
    with pytest.raises(InvalidInput, match="line 51: truncated or malformed license pool count"):
        import_rlmstat(sqlite_engine, cut, server="rlm1", source="cut")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"rlm status on\x00\x01")
    with pytest.raises(InvalidInput, match="is not rlmstat -a output"):
        read_text(str(binary), "rlmstat -a output")
    assert queries.session_usage(sqlite_engine).empty


def test_times_are_local_to_the_server_and_the_year_is_inferred():
    text = FIRST.read_text().replace("at 02/28 08:05", "at 12/31 08:05")
    snapshot = parse(text, source="x", tz=__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert str(snapshot.at) == "2026-03-02 09:00:00"  # 10:00 in Paris (UTC+1)
    starts = {c.handle.split()[-1]: str(c.start) for c in snapshot.checkouts}
    assert starts["41"] == "2026-03-02 08:15:00"
    assert starts["2B"] == "2025-12-31 07:05:00"  # a later month/day than today: last year


def test_the_cli_imports_reads_standard_input_and_takes_at(store_url):
    result = cli("import", "rlmstat", str(FIRST), "--server", "rlm1", "--db", store_url)
    assert result.exit_code == 0, result.output
    assert "Snapshot of 2026-03-02 10:00 UTC: 3 features, 6 new checkouts, 0 ended" in result.output
    assert "4 sessions started, 0 ended, 3 seat counts changed, 1 reservations new" in result.output
    result = cli(
        "import", "rlmstat", "-", "--server", "rlm1", "--at", "2026-03-02T10:05:00+00:00",
        "--db", store_url, input=FIRST.read_text(),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Snapshot of 2026-03-02 10:05 UTC: 3 features, 0 new checkouts, 0 ended" in result.output


def test_a_flexlm_server_name_is_refused(sqlite_engine):
    lmstat = FIXTURES.parent / "flexlm" / "lmstat-1.txt"
    import_lmstat(sqlite_engine, lmstat.read_text(), server="s", source="lmstat")
    with pytest.raises(InvalidInput, match="is a flexlm server"):
        _import(sqlite_engine, "rlmstat-1.txt", server="s")


def test_logout_runs_rlmremove_with_the_isv_host_port_and_handle(engine, tmp_path):
    _import(engine, "rlmstat-1.txt")
    ids = dict(
        zip(
            queries.session_usage(engine)["user"],
            queries.session_usage(engine)["session_id"].astype(int),
            strict=True,
        )
    )
    calls = tmp_path / "calls.jsonl"
    script = tmp_path / "record.py"
    script.write_text(RECORD, encoding="utf-8")
    remove.set_remove_command(
        engine,
        "rlm1",
        f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {shlex.quote(str(calls))} "
        "-q {handle_host} {handle_port} {isv} {handle_id}",
    )
    result = actions.logout_sessions(engine, [ids["bo"]], "ada.admin")
    assert result.logged_out == (ids["bo"],)
    runs = [json.loads(line) for line in calls.read_text().splitlines()]
    assert sorted(runs) == [
        ["-q", "rlm1", "5055", "acme", "4a"],
        ["-q", "rlm1", "5055", "acme", "4b"],
    ]
    assert "bo" not in set(queries.session_usage(engine)["user"])


def test_poll_rlm_and_serve_poll_read_rlmstat(sqlite_url, tmp_path):
    command = _printer(tmp_path, "rlmstat-1.txt")
    result = cli("poll", "rlm", "--server", "rlm1", "--command", command, "--once",
                 "--db", sqlite_url)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "6 new checkouts" in result.output
    down = cli("poll", "rlm", "--server", "rlm1", "--command", _printer(tmp_path, "rlmstat-down.txt"),
               "--once", "--db", sqlite_url)  # fmt: skip
    assert down.exit_code == 1
    assert "rlm server: cannot connect" in down.stderr
    # serve --poll tells an rlmstat output from an lmstat one by its text
    poller = Poller(
        sqlite_url,
        [PollTarget("rlm2", _printer(tmp_path, "rlmstat-2.txt"))],
        timedelta(minutes=1),
    )
    poller.poll_once()
    assert poller.last_error["rlm2"] is None
    engine = db.connect(sqlite_url)
    try:
        assert sorted(queries.session_usage(engine, source="rlm2")["user"]) == [
            "Dee Dee", "ana", "bo", "ed"
        ]  # fmt: skip
    finally:
        engine.dispose()
