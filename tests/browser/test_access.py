"""Access control with sign-in on: the server decides who may log sessions out.

* An unauthenticated request gets the login page, never the dashboard.
* A viewer's logout is refused and audited, even when the browser sends the button's click
  event straight to the server (bypassing the disabled button) or clicks the hidden dialog.
* An admin's logout succeeds, audited with the admin's name.
* A non-loopback bind without sign-in is refused unless explicitly allowed.
* The role is read from the store at each action: a demoted admin is refused at once.
"""

from __future__ import annotations

import http.cookiejar
import json
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest

from licusage import accounts, catalog, queries, sessions
from licusage.app.identity import Identity
from licusage.app.main import create_app
from tests.browser.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    ROOT,
    VIEWER,
    VIEWER_PASSWORD,
    expect,
    free_port,
    sign_in,
    tick_row,
)
from tests.browser.test_dashboard import run
from tests.helpers import wait_until

pytestmark = pytest.mark.xdist_group("browser_access")
browser = pytest.mark.browser

# what a tampered browser can do: send a button's click event to the server directly
FIRE_CLICK = """(label) => {
  const {ButtonClick} = Bokeh.require("core/bokeh_events");
  let fired = 0;
  for (const doc of Bokeh.documents) {
    for (const model of doc._all_models.values()) {
      if (model.label === label) { model.trigger_event(new ButtonClick()); fired++; }
    }
  }
  return fired;
}"""


@pytest.fixture(scope="module")
def server(server_factory, seeded_store):
    return server_factory(seeded_store, "--auth", "--cookie-secret", "access-test-secret")


def session_of(engine, user: str) -> int:
    usage = queries.session_usage(engine, user=user)
    assert len(usage) == 1, usage
    return int(usage["session_id"].iloc[0])


def row_of(page, user: str):
    return page.locator(".tabulator-row").filter(
        has=page.locator("[tabulator-field=User]", has_text=user)
    )


def select_row(page, user: str) -> None:
    run(page)  # waits until the Run's rows replaced those shown on open
    tick_row(page, row_of(page, user), "1 selected")


def _fetch(url: str, cookies: http.cookiejar.CookieJar | None = None) -> tuple[str, int, str]:
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    with opener.open(url, timeout=10) as response:
        return response.geturl(), response.status, response.read().decode("utf-8", "replace")


@browser
def test_an_unauthenticated_request_gets_the_login_page(server):
    for path in ("", "?user=admin", "../"):
        final, status, body = _fetch(urllib.parse.urljoin(server.url, path))
        assert status == 200
        assert urllib.parse.urlparse(final).path == "/login"
        assert 'id="username"' in body
        assert 'type="password"' in body
        assert "docs_json" not in body  # no dashboard document in it
    jar = http.cookiejar.CookieJar()
    forged = http.cookiejar.Cookie(
        0, "user", '"ada.admin"', None, False, "127.0.0.1", False, False, "/", True, False,
        None, False, None, None, {}
    )  # fmt: skip
    jar.set_cookie(forged)
    final, _, body = _fetch(server.url, jar)
    assert urllib.parse.urlparse(final).path == "/login"
    assert "docs_json" not in body


@browser
def test_a_wrong_password_is_refused(server, browser_page):
    page = browser_page()
    page.goto(server.url)
    page.locator("#username").fill(ADMIN)
    page.locator("#password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect()(page.locator("#password")).to_be_visible()
    assert page.get_by_role("button", name="Run").count() == 0


@browser
def test_a_viewers_logout_is_refused_and_audited_even_sent_directly(server, browser_page, store):
    target = session_of(store, "dora.named")
    page = browser_page()
    sign_in(page, server, VIEWER, VIEWER_PASSWORD)
    select_row(page, "dora.named")
    expect()(page.get_by_role("button", name="Logout Session")).to_be_disabled()

    assert page.evaluate(FIRE_CLICK, "Logout Session") == 1  # the disabled button's handler
    message = page.locator(".notyf__message", has_text="may not log sessions out")
    expect()(message.first).to_be_visible()
    assert page.evaluate(FIRE_CLICK, "Logout") == 1  # the (hidden) dialog's confirmation

    def refusals():
        log = queries.audit_log(store, actor=VIEWER)
        return log[log["action"] == "logout_refused"]

    wait_until(lambda: len(refusals()) > 0)
    refused = refusals()
    assert target in json.loads(refused["detail"].iloc[0])["session_ids"]
    assert json.loads(refused["detail"].iloc[0])["role"] == "viewer"
    page.wait_for_timeout(500)  # give a (wrongly) accepted dialog click time to act
    assert session_of(store, "dora.named") == target  # still active
    ended_by_viewer = queries.audit_log(store, actor=VIEWER)
    assert set(ended_by_viewer["action"]) == {"logout_refused", "sign_in"}


@browser
def test_an_admins_logout_succeeds_and_is_audited(server, browser_page, store):
    target = session_of(store, "erin.smith")
    page = browser_page()
    sign_in(page, server, ADMIN, ADMIN_PASSWORD)
    select_row(page, "erin.smith")
    page.get_by_role("button", name="Logout Session").click()
    page.get_by_role("button", name="Logout", exact=True).click()
    expect()(row_of(page, "erin.smith")).to_have_count(0)
    ended = queries.sessions_by_id(store, [target]).iloc[0]
    assert ended["ended_by"] == ADMIN
    assert ended["end_reason"] == "admin_logout"
    log = queries.audit_log(store, actor=ADMIN)
    event = log[log["session_id"] == target].iloc[0]
    assert event["action"] == "end_session"
    assert event["origin"] == "127.0.0.1"


def _serve(*args: str, store_url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "licusage", "serve", "--db", store_url, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("address", ["0.0.0.0", "192.0.2.10", "::"])
def test_a_non_loopback_bind_without_sign_in_is_refused(seeded_store, address):
    result = _serve("--address", address, "--port", str(free_port()), store_url=seeded_store)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--auth" in result.stderr
    assert "--allow-unauthenticated-remote" in result.stderr


@browser
def test_a_non_loopback_bind_is_served_when_allowed_or_signed_in(server_factory, seeded_store):
    allowed = server_factory(seeded_store, "--address", "0.0.0.0", "--allow-unauthenticated-remote")
    final, status, body = _fetch(allowed.url)
    assert status == 200
    assert urllib.parse.urlparse(final).path == "/"
    assert "docs_json" in body
    signed = server_factory(
        seeded_store,
        "--address",
        "0.0.0.0",
        "--auth",
        "--cookie-secret",
        "another-secret-of-32-characters!",
    )
    final, _, body = _fetch(signed.url)
    assert urllib.parse.urlparse(final).path == "/login"


def test_the_role_is_read_from_the_store_at_each_action(engine):
    """In-process, calling the server-side handler (the explorer's logout) directly."""
    catalog.add_pool(engine, "Case Management", catalog.CONCURRENT_USER, 5)
    ids = [
        sessions.login(engine, user, {"Case Management": catalog.CONCURRENT_USER}).session_id
        for user in ("u1", "u2")
    ]
    accounts.add_account(engine, "pat", "pat-password-1", "admin")
    app = create_app(engine, identity=Identity("pat", "admin", signed_in=True, origin="10.1.1.1"))
    explorer = app.explorer
    accounts.add_account(engine, "pat", "pat-password-1", "viewer", replace=True)  # demoted
    assert explorer.logout([ids[0]]) is None
    assert "may not log sessions out" in explorer.last_error
    assert set(queries.session_usage(engine)["session_id"]) == set(ids)
    accounts.add_account(engine, "pat", "pat-password-1", "admin", replace=True)  # promoted
    outcome = explorer.logout([ids[0]])
    assert outcome is not None
    assert outcome.logged_out == (ids[0],)
    log = queries.audit_log(engine, actor="pat")
    log = log[log["action"] != "sign_out"]  # each new role came with a new password
    assert sorted(log["action"]) == ["end_session", "logout_refused"]
    assert set(log["origin"]) == {"10.1.1.1"}
