"""No exported cell runs as a formula (issue 15, finding 3): licusage.export, the CLI's
``--format csv`` and the dashboard's downloads, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from click.testing import CliRunner

from licusage import actions, catalog, db, export, sessions
from licusage.app.audit import AuditView
from licusage.cli import main
from tests.test_app import Notes, make_tab

CM = "Case Management"
CONC = catalog.CONCURRENT_USER

FORMULAS = [
    '=HYPERLINK("http://127.0.0.1:9/x","click")',
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-2+3",
    "@SUM(1+1)",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("text", FORMULAS)
def test_text_that_a_spreadsheet_would_run_gets_a_quote(text):
    assert export.neutralise(text) == "'" + text
    assert export.cell(text) == "'" + text


@pytest.mark.parametrize("text", ["alice", "bob o'brien", "1+1", " =x", "a=b", "", "'=x"])
def test_other_text_is_left_alone(text):
    assert export.neutralise(text) == text


def test_numbers_times_and_durations_stay_what_they_are():
    frame = pd.DataFrame(
        {
            "user": ["=1+1", None],
            "seats": [-3, 4],
            "share": [-0.5, float("nan")],
            "at": pd.to_datetime(["2026-03-02 10:00", None]).tz_localize(UTC),
            "idle": pd.to_timedelta([7_500, None], unit="s"),
        }
    )
    rows = list(csv.reader(io.StringIO(export.frame_csv(frame, readable_durations=True))))
    assert rows[0] == ["user", "seats", "share", "at", "idle", "idle_text"]
    assert rows[1] == ["'=1+1", "-3", "-0.5", "2026-03-02T10:00:00+00:00", "7500", "2h 05m"]
    assert rows[2] == ["", "4", "", "", "", ""]
    assert export.iso_utc(datetime(2026, 3, 2, 10, 0)) == "2026-03-02T10:00:00+00:00"
    assert export.seconds(timedelta(minutes=-5)) == 0


@pytest.fixture
def hostile_store(store_url, frozen):
    """Sessions whose user and host are formula payloads, one of them logged out (audited)."""
    engine = db.connect(store_url)
    catalog.add_pool(engine, CM, CONC, 50)
    ids = [
        sessions.login(engine, payload, {CM: CONC}, host=payload).session_id
        for payload in FORMULAS[:5]  # tab / CR user names are refused as control characters
    ]
    frozen.advance(minutes=5)
    actions.logout_sessions(engine, ids[:1], actor="=evil.admin")
    yield store_url, engine
    engine.dispose()


@pytest.fixture
def notes() -> Notes:
    return Notes()


def _assert_no_formula(cells: list[str]) -> None:
    for text in cells:
        assert not text.startswith(export.FORMULA_PREFIXES), text


def test_cli_csv_neutralises_user_and_host(hostile_store):
    url, _ = hostile_store
    result = CliRunner().invoke(main, ["sessions", "--db", url, "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert sorted(r["user"] for r in rows) == sorted("'" + p for p in FORMULAS[1:5])
    assert sorted(r["host"] for r in rows) == sorted("'" + p for p in FORMULAS[1:5])
    for row in rows:
        _assert_no_formula(list(row.values()))
        assert int(row["idle"]) >= 0  # a number, not text
    pools = CliRunner().invoke(main, ["pools", "--db", url, "--format", "csv"])
    assert pools.exit_code == 0
    (pool,) = list(csv.DictReader(io.StringIO(pools.stdout)))
    assert pool["seats"] == "50"
    assert pool["in_use"] == "4"


def test_dashboard_csv_downloads_neutralise(hostile_store, notes):
    _, engine = hostile_store
    tab = make_tab(engine, notes)
    tab.explorer.run()
    rows = list(csv.DictReader(io.StringIO(tab.results._csv().read())))
    assert sorted(r["user"] for r in rows) == sorted("'" + p for p in FORMULAS[1:5])
    for row in rows:
        _assert_no_formula(list(row.values()))
    start = datetime.now(UTC).date() - timedelta(days=400)
    view = AuditView(engine, zone=UTC, first_day=start, last_day=start + timedelta(days=800))
    assert view.refresh()
    trail = list(csv.DictReader(io.StringIO(view.csv().read())))
    assert trail, "the logout was audited"
    for row in trail:
        _assert_no_formula(list(row.values()))
    assert {r["Actor"] for r in trail} == {"'=evil.admin"}
