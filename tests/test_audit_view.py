"""The Audit tab (licusage.app.audit), driven in-process: filters, table, CSV export, errors."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from licusage import actions, catalog, db, sessions
from licusage.app.audit import ALL_ACTORS, COLUMNS, AuditView, describe_detail
from licusage.app.format import day_bounds
from licusage.errors import PermissionDenied

CM, RO = "Case Management", "Reports Only"
CONCURRENT_USER, NAMED_USER = catalog.CONCURRENT_USER, catalog.NAMED_USER


@pytest.fixture
def trail(engine, frozen):
    """Three days of events: an admin logout, a refused viewer, a reap, a user logging out."""
    catalog.add_pool(engine, CM, CONCURRENT_USER, 20)
    catalog.add_pool(engine, RO, NAMED_USER, 5)
    catalog.assign_named(engine, RO, "carol")
    ids = {
        user: sessions.login(engine, user, licenses).session_id
        for user, licenses in [
            ("alice", {CM: CONCURRENT_USER}),
            ("bob", {CM: CONCURRENT_USER}),
            ("carol", {CM: CONCURRENT_USER, RO: NAMED_USER}),
            ("dave", {CM: CONCURRENT_USER}),
        ]
    }
    frozen.set(datetime(2026, 3, 3, 9, 0, tzinfo=UTC))
    actions.logout_sessions(engine, [ids["carol"]], actor="root.admin", origin="10.0.0.5")
    frozen.set(datetime(2026, 3, 4, 9, 0, tzinfo=UTC))
    with pytest.raises(PermissionDenied):
        actions.authorized_logout(engine, [ids["alice"]], actor="vic.viewer", role="viewer")
    frozen.set(datetime(2026, 3, 5, 9, 0, tzinfo=UTC))
    actions.reap_idle(engine, timedelta(hours=8))  # alice, bob, dave
    return engine, ids


def _view(engine) -> AuditView:
    view = AuditView(engine, zone=UTC, first_day=date(2026, 3, 1), last_day=date(2026, 3, 31))
    assert view.refresh()
    return view


def test_the_trail_names_who_whom_when_why_and_licenses(trail):
    engine, ids = trail
    view = _view(engine)
    frame = view.table.value
    assert list(frame.columns) == COLUMNS
    assert len(frame) == 5  # 1 admin logout + 1 refusal + 3 idle timeouts
    assert frame["When"].tolist() == sorted(frame["When"], reverse=True)  # newest first
    carol = frame[frame["User"] == "carol"].iloc[0]
    assert carol["Actor"] == "root.admin"
    assert carol["When"] == "2026-03-03 09:00:00"
    assert carol["Reason"] == "admin_logout"
    assert carol["Session"] == ids["carol"]
    assert carol["Licenses freed"] == "Case Management: Concurrent User, Reports Only: Named User"
    refused = frame[frame["Action"] == "logout_refused"].iloc[0]
    assert refused["Actor"] == "vic.viewer"
    assert "role: viewer" in refused["Details"]
    assert str(ids["alice"]) in refused["Details"]
    reaped = frame[frame["Reason"] == "idle_timeout"]
    assert set(reaped["User"]) == {"alice", "bob", "dave"}
    assert set(reaped["Actor"]) == {"policy"}
    assert view.actor_select.options == {
        ALL_ACTORS: "",
        "policy": "policy",
        "root.admin": "root.admin",
        "vic.viewer": "vic.viewer",
    }
    assert "**5** audit events" in view.summary.object


def test_filter_by_actor_and_dates(trail):
    engine, _ = trail
    view = _view(engine)
    view.actor_select.value = "root.admin"
    assert view.table.value["User"].tolist() == ["carol"]
    view.actor_select.value = ""
    view.dates.value = (date(2026, 3, 4), date(2026, 3, 4))  # one day, inclusive
    assert view.table.value["Action"].tolist() == ["logout_refused"]
    view.dates.value = (date(2026, 3, 4), date(2026, 3, 5))
    assert len(view.table.value) == 4
    view.actor_select.value = "policy"
    assert len(view.table.value) == 3
    view.dates.value = (date(2026, 4, 1), date(2026, 4, 30))
    assert view.table.value.empty
    assert "**0** audit events by policy" in view.summary.object


def test_days_follow_the_viewers_time_zone():
    from zoneinfo import ZoneInfo

    start, end = day_bounds(date(2026, 3, 3), date(2026, 3, 3), ZoneInfo("America/New_York"))
    assert start == datetime(2026, 3, 3, 5, tzinfo=UTC)
    assert end == datetime(2026, 3, 4, 5, tzinfo=UTC)
    swapped = day_bounds(date(2026, 3, 5), date(2026, 3, 3), UTC)
    assert swapped == (datetime(2026, 3, 3, tzinfo=UTC), datetime(2026, 3, 6, tzinfo=UTC))


def test_csv_holds_the_whole_filtered_trail(trail, frozen):
    engine, _ = trail
    catalog.add_pool(engine, CM, CONCURRENT_USER, 200)
    many = [sessions.login(engine, f"u{n}", {CM: CONCURRENT_USER}).session_id for n in range(60)]
    frozen.advance(minutes=1)
    actions.logout_sessions(engine, many, actor="bulk.admin")
    view = _view(engine)
    view.actor_select.value = "bulk.admin"
    assert len(view.table.value) == 60 > view.table.page_size
    exported = pd.read_csv(io.StringIO(view.csv().read()))
    assert list(exported.columns) == COLUMNS
    assert len(exported) == 60
    assert set(exported["Actor"]) == {"bulk.admin"}
    assert set(exported["Session"]) == set(many)
    assert view.download.filename == "audit_20260301-20260331.csv"


def test_an_unavailable_store_is_a_message_not_a_crash(frozen):
    engine = db.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    view = AuditView(engine, zone=UTC)
    assert not view.refresh()
    assert view.last_error.startswith("Audit: the database is unavailable")
    assert view.table.value.empty
    engine.dispose()


@pytest.mark.parametrize(
    ("action", "detail", "expected"),
    [
        ("end_session", '{"licenses": {}}', ("none held", "")),
        ("end_session", None, ("", "")),
        ("end_session", "not json", ("", "not json")),
        (
            "logout_refused",
            '{"role": "viewer", "session_ids": [1, 2]}',
            ("", "role: viewer; sessions: 1, 2"),
        ),
        (
            "logout_refused",
            '{"role": "viewer", "session_ids": ' + str(list(range(12))) + "}",
            ("", "role: viewer; sessions: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 2 more"),
        ),
    ],
)
def test_describe_detail(action, detail, expected):
    assert describe_detail(action, detail) == expected


def test_create_app_has_the_audit_tab(sqlite_engine):
    from licusage.app.main import create_app
    from tests.helpers import require

    page = create_app(sqlite_engine)
    tabs = page.tabs
    names = list(getattr(tabs, "_names", []))
    require("Audit" in names, "create_app has no Audit tab yet")
    tabs.active = names.index("Audit")  # built when first shown
    audit = page.lazy_tabs["Audit"].view.__panel__()
    view = audit.object.__self__  # drawn lazily: the trail is read when the tab is drawn
    assert isinstance(view, AuditView)
    assert view.table.value.empty
    catalog.add_pool(sqlite_engine, CM, CONCURRENT_USER, 1)
    session_id = sessions.login(sqlite_engine, "ann", {CM: CONCURRENT_USER}).session_id
    actions.logout_sessions(sqlite_engine, [session_id], actor="root.admin")
    audit.get_root()
    assert view.table.value["User"].tolist() == ["ann"]
