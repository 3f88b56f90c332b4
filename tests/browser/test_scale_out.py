"""Scale-out: several server processes on one PostgreSQL store see each other's changes.

Two ``licusage serve`` processes (as two hosts behind a reverse proxy would run) share a store:
a logout made in one is seen by the next Run in the other, and in the other's Audit tab. Then
one ``licusage serve --num-procs 2`` does the same across its own worker processes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta

import pandas as pd
import pytest

from licusage import catalog, clock, db, queries, sessions
from tests.browser.conftest import seed_store, tick_row, wait_for_dashboard
from tests.helpers import fresh_pg_database, wait_until

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.xdist_group("browser_scale_out"),
]


@pytest.fixture
def pg_store() -> Iterator[str]:
    with fresh_pg_database() as url:
        seed_store(url)
        yield url


def expect():
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def open_and_run(browser_page, url: str, count: int):
    page = browser_page()
    page.goto(url)
    wait_for_dashboard(page)
    try:
        run(page, count)
    except AssertionError as failure:  # say so when the page tried to load assets from outside
        raise AssertionError(
            f"{failure}\nrequests off loopback: {browser_page.outside[:5]}"
        ) from None
    return page


def run(page, count: int) -> None:
    page.bring_to_front()  # several pages are open: act on a visible one
    page.get_by_role("button", name="Run").click()
    line = page.get_by_text(re.compile(rf"^{count} sessions of \d+ distinct users"))
    expect()(line).to_be_visible()
    expect()(page.locator(".tabulator-row")).to_have_count(count)


def row_of(page, user: str):
    return page.locator(".tabulator-row").filter(
        has=page.locator("[tabulator-field=User]", has_text=user)
    )


def log_out(page, user: str) -> None:
    """Select `user`'s row, Logout Session, confirm with Logout; wait until the row is gone."""
    page.bring_to_front()
    tick_row(page, row_of(page, user), "1 selected")
    page.get_by_role("button", name="Logout Session").click()
    expect()(page.get_by_role("dialog")).to_be_visible()
    page.get_by_role("button", name="Logout", exact=True).click()
    expect()(row_of(page, user)).to_have_count(0)


@pytest.mark.browser
def test_a_logout_in_one_server_is_seen_by_a_run_in_another(pg_store, server_factory, browser_page):
    first = server_factory(pg_store)
    second = server_factory(pg_store)
    assert first.process.pid != second.process.pid
    page_a = open_and_run(browser_page, first.url, 7)
    page_b = open_and_run(browser_page, second.url, 7)
    expect()(row_of(page_b, "erin.smith")).to_have_count(1)

    log_out(page_a, "erin.smith")
    run(page_b, 6)
    expect()(row_of(page_b, "erin.smith")).to_have_count(0)

    log_out(page_b, "carol.100%")
    run(page_a, 5)
    expect()(row_of(page_a, "carol.100%")).to_have_count(0)

    # the other server's Audit tab shows the logout made through the first one
    page_b.bring_to_front()
    page_b.locator(".bk-tab", has_text="Audit").click()
    audit_rows = page_b.locator(".tabulator-row", has_text="erin.smith")
    expect()(audit_rows).to_have_count(1)
    expect()(audit_rows).to_contain_text("admin_logout")
    expect()(audit_rows).to_contain_text("Case Management: Concurrent User")

    engine = db.connect(pg_store)
    try:
        events = queries.audit_log(engine)
    finally:
        engine.dispose()
    assert sorted(events["user"]) == ["carol.100%", "erin.smith"]


@pytest.mark.browser
def test_num_procs_workers_share_the_store(pg_store, server_factory, browser_page):
    server = server_factory(pg_store, "--num-procs", "2")
    pages = [open_and_run(browser_page, server.url, 7) for _ in range(3)]
    log_out(pages[0], "bob.o'brien")
    for page in pages[1:]:
        run(page, 6)
        expect()(row_of(page, "bob.o'brien")).to_have_count(0)


def test_the_in_server_idle_policy_runs_once_per_host(pg_store, server_factory):
    engine = db.connect(pg_store)
    try:
        stale = sessions.login(
            engine,
            "stale.user",
            {"Case Management": catalog.CONCURRENT_USER},
            at=clock.now() - timedelta(days=2),
        ).session_id
        server_factory(pg_store, "--num-procs", "2", "--reap-every", "1s", "--idle-over", "1d")

        def reaped() -> pd.DataFrame:
            log = queries.audit_log(engine)
            return log[log["reason"] == "idle_timeout"]

        wait_until(lambda: len(reaped()) > 0, timeout=180)
        time.sleep(3)  # several more periods: nothing is ended twice
        events = reaped()
        assert events["session_id"].tolist() == [stale]
        assert events["actor"].tolist() == ["policy"]
        assert queries.sessions_by_id(engine, [stale])["end_reason"].tolist() == ["idle_timeout"]
        assert len(queries.session_usage(engine)) == 7  # the seeded sessions are not idle a day
    finally:
        engine.dispose()
