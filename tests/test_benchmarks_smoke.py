"""Smoke check of ``python -m benchmarks --quick``: every case runs, results agree with their
references. No timing is asserted: the targets are for the full store, on a quiet machine."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from benchmarks.__main__ import main
from tests.helpers import PG_SERVER_URL, require

ROOT = Path(__file__).resolve().parents[1]
LIBRARY_CASES = (
    "session_usage() all active",
    "session_usage(user=",
    "session_usage(license_types=",
    "logout_sessions(",
    "concurrency(hourly, 30 days)",
    "concurrency(hourly, 30 days) vs pandas",
    "right_size(",
)


def _bench(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "results.json"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "| case " in completed.stdout
    return json.loads(out.read_text())


def _check_rows(results: dict, expected: tuple[str, ...]) -> None:
    rows = results["rows"]
    for prefix in expected:
        found = [r for r in rows if r["case"].startswith(prefix)]
        assert found, f"no case {prefix!r} in {[r['case'] for r in rows]}"
        for row in found:
            assert row["problem"] is None, row
            assert row["times"], row
            assert all(t > 0 for t in row["times"]), row
    for row in rows:
        if row["ratio"] is not None:
            assert row["reference_times"], row


@pytest.mark.slow
def test_quick_run_executes_every_library_case_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'bench.sqlite'}"
    results = _bench(tmp_path, "--db", url, "--no-dashboard")
    _check_rows(results, LIBRARY_CASES)
    assert results["backend"] == "sqlite"
    # the cached store is reused, and the logout case left it as it was
    again = _bench(tmp_path, "--db", url, "--no-dashboard", "--cases", "logout,all active")
    assert again["built_in"] is None
    assert len(again["rows"]) == 2


@pytest.mark.slow
@pytest.mark.postgres
def test_quick_run_executes_every_library_case_on_postgres(tmp_path):
    name = f"licusage_test_bench_{uuid.uuid4().hex[:10]}"
    url = sa.make_url(PG_SERVER_URL).set(database=name).render_as_string(hide_password=False)
    admin = sa.create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    try:
        results = _bench(tmp_path, "--db", url, "--no-dashboard")
        _check_rows(results, LIBRARY_CASES)
        assert results["backend"].startswith("postgresql")
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.mark.slow
@pytest.mark.browser
def test_quick_run_executes_the_dashboard_cases(tmp_path):
    from benchmarks import dashboard

    require(dashboard.available() is None, f"browser cases unavailable: {dashboard.available()}")
    url = f"sqlite:///{tmp_path / 'bench.sqlite'}"
    results = _bench(tmp_path, "--db", url, "--cases", "dashboard,memory")
    assert (
        len(results["rows"]) == 6
    )  # page open and Run, each at the store's size and 1M, Run settled, memory
    _check_rows(results, ("dashboard page open", "dashboard Run", "served app memory"))


def test_refuses_to_overwrite_a_store_it_did_not_build(tmp_path, capsys):
    path = tmp_path / "mine.sqlite"
    path.write_bytes(b"")
    assert main(["--quick", "--db", f"sqlite:///{path}", "--no-dashboard"]) == 2
    assert "not a benchmark store" in capsys.readouterr().err
    assert path.read_bytes() == b""


def test_refuses_an_unsupported_database(capsys):
    assert main(["--quick", "--db", "mysql://nobody@localhost/x", "--no-dashboard"]) == 2
    assert "unsupported database" in capsys.readouterr().err
