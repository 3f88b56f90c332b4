"""The `source` filter and column: app sessions beside a license server's, in the library,
the CLI and the HTTP API's filter."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from licusage import catalog, queries, sessions
from licusage.api import schemas
from licusage.api.handlers import session_filter
from licusage.cli import main
from licusage.errors import InvalidInput, NotAnAppSession
from licusage.sources.lmstat import import_lmstat, read_text
from tests.test_sources_lmstat import FIXTURES

CM = "Case Management"


def _two_sources(engine) -> None:
    path = FIXTURES / "lmstat-1.txt"  # ana and bo on server lic1
    import_lmstat(engine, read_text(str(path)), server="lic1", source=str(path))
    catalog.add_pool(engine, CM, catalog.CONCURRENT_USER, 5)
    sessions.login(engine, "carla", {CM: catalog.CONCURRENT_USER}, host="pc-carla")


def test_sessions_by_source(engine):
    _two_sources(engine)
    everyone = queries.session_usage(engine)
    assert everyone.columns[6] == "source"
    assert dict(zip(everyone["user"], everyone["source"], strict=True)) == {
        "ana": "lic1",
        "bo": "lic1",
        "carla": "app",
    }
    assert sorted(queries.session_usage(engine, source="lic1")["user"]) == ["ana", "bo"]
    assert list(queries.session_usage(engine, source="app")["user"]) == ["carla"]
    # exact names: neither a substring nor another case selects a source
    assert queries.session_usage(engine, source="lic").empty
    assert queries.session_usage(engine, source="LIC1").empty
    where = queries.SessionFilter(user="a", source="lic1")
    assert queries.session_usage_counts(engine, where) == (1, 1)  # (sessions, users)
    assert list(queries.session_usage_page(engine, where)["user"]) == ["ana"]
    assert where.code() == "queries.session_usage(engine, user='a', source='lic1')"
    sorted_by_source = queries.session_usage_page(engine, sort=[("source", False)])
    assert list(sorted_by_source["source"]) == ["lic1", "lic1", "app"]


@pytest.mark.parametrize("bad", ["", 7, ["lic1"]])
def test_a_source_that_is_no_name_is_refused(bad):
    with pytest.raises(InvalidInput, match="source filter"):
        queries.SessionFilter(source=bad)


def test_cli_lists_by_source_and_shows_the_column(sqlite_engine, sqlite_url):
    _two_sources(sqlite_engine)
    runner = CliRunner()
    table = runner.invoke(main, ["sessions", "--db", sqlite_url, "--source", "lic1"])
    assert table.exit_code == 0, table.output
    header = table.stdout.splitlines()[0].split()
    assert header[:7] == ["ID", "User", "Host", "Started", "Last", "Activity", "Idle"]
    assert "Source" in header
    assert "2 active sessions" in table.stdout
    listed = runner.invoke(
        main, ["sessions", "--db", sqlite_url, "--source", "app", "--format", "json"]
    )
    assert [(r["user"], r["source"]) for r in json.loads(listed.stdout)] == [("carla", "app")]
    by_host = runner.invoke(
        main, ["sessions", "--db", sqlite_url, "--host", "WS", "--format", "json"]
    )
    assert sorted(r["user"] for r in json.loads(by_host.stdout)) == ["ana", "bo"]


def test_the_api_filter_carries_host_and_source():
    spec = schemas.SessionQuery(host="ws", source="lic1")
    assert session_filter(spec) == queries.SessionFilter(host="ws", source="lic1")


def test_an_application_cannot_touch_or_end_a_license_servers_session(engine):
    _two_sources(engine)
    by_user = queries.session_usage(engine).set_index("user")["session_id"]
    ana, carla = int(by_user["ana"]), int(by_user["carla"])
    columns = ["session_id", "user", "last_activity", "source"]
    before = queries.session_usage(engine)[columns]
    with pytest.raises(NotAnAppSession, match="license server 'lic1'"):
        sessions.touch(engine, ana)
    with pytest.raises(NotAnAppSession, match="license server 'lic1'"):
        sessions.end(engine, ana)
    after = queries.session_usage(engine)[columns]
    pd.testing.assert_frame_equal(
        after, before
    )  # nothing changed: ana still active, same last activity
    assert sessions.touch(engine, carla)  # the application's own session: as before
    assert sessions.end(engine, carla)
    # once the server has checked it in, a late heartbeat or check-in is just "ended"
    import_lmstat(engine, read_text(str(FIXTURES / "lmstat-empty.txt")), server="lic1")
    assert sessions.touch(engine, ana) is False
    assert sessions.end(engine, ana) is False
