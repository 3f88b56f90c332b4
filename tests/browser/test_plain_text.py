"""Stored text is shown as plain text (issue 15, findings 2 and 5), in Chromium against a real
``licusage serve --auth``: user names carrying Markdown, HTML and links appear literally in the
table, the Logout dialog and notifications, and no heading, link, image or script is made from
them."""

from __future__ import annotations

import pytest

from licusage import accounts, catalog, db, sessions
from tests.browser.conftest import ADMIN, ADMIN_PASSWORD, expect, seed_store, sign_in, tick_row
from tests.browser.test_dashboard import notification, row_of, run, set_user

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser_plain_text")]

PAYLOADS = [
    "victim ### Logout 0 sessions (nobody)? This frees nothing",
    '=HYPERLINK("http://127.0.0.1:9/victim","click")',
    "victim <img src=x onerror=window.__pwned=1>",
    "[victim](http://127.0.0.1:9/x) ![victim](http://127.0.0.1:9/i.png)",
    "victim <script>window.__pwned=2</script> **bold** _em_",
    "<h1>victim</h1><a href='http://127.0.0.1:9/'>link</a>",
]
HOSTILE_VIEWER = "<img src=x onerror=window.__pwned=3>viewer"
HOSTILE_PASSWORD = "hostile-pass-1"


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'store.sqlite'}"
    seed_store(url)
    engine = db.connect(url)
    try:
        for payload in PAYLOADS:
            result = sessions.login(
                engine, payload, {"Case Management": catalog.CONCURRENT_USER}, host=payload
            )
            assert result.ok
        accounts.add_account(engine, HOSTILE_VIEWER, HOSTILE_PASSWORD, "viewer")
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="module")
def server(server_factory, hostile_store):
    return server_factory(hostile_store, "--auth", "--cookie-secret", "plain-text-secret")


def _made_elements(scope) -> dict[str, int]:
    return {tag: scope.locator(tag).count() for tag in ("h1", "h2", "h4", "a", "img", "script")}


def test_dialog_and_table_show_stored_names_as_plain_text(server, browser_page):
    page = browser_page()
    sign_in(page, server, ADMIN, ADMIN_PASSWORD)
    set_user(page, "victim")
    run(page, expected_count=len(PAYLOADS))
    for ticked, payload in enumerate(PAYLOADS, 1):
        row = row_of(page, payload)
        expect()(row).to_have_count(1)
        expect()(row.locator("[tabulator-field=User]")).to_have_text(payload)
        assert row.locator("img, a, script, h1").count() == 0
        tick_row(page, row, f"{ticked} selected")
    page.get_by_role("button", name="Logout Session").click()
    dialog = page.get_by_role("dialog")
    expect()(dialog).to_be_visible()
    message = dialog.locator(".licusage-plain")
    expect()(message).to_contain_text(f"Log out {len(PAYLOADS)} sessions of {len(PAYLOADS)} users")
    text = message.inner_text()
    for payload in PAYLOADS:
        assert payload in text
    # the only heading is the dialog's own title; nothing else was made from the names
    assert dialog.locator("h3").all_inner_texts() == ["Logout Session"]
    assert _made_elements(dialog) == dict.fromkeys(("h1", "h2", "h4", "a", "img", "script"), 0)
    assert page.evaluate("() => window.__pwned === undefined")
    page.get_by_role("button", name="Cancel").click()
    expect()(dialog).to_be_hidden()
    assert browser_page.outside == []


def test_a_notification_naming_a_hostile_account_is_plain_text(server, browser_page):
    page = browser_page()
    sign_in(page, server, HOSTILE_VIEWER, HOSTILE_PASSWORD)
    run(page)
    tick_row(page, row_of(page, "erin.smith"), "1 selected")
    # a tampered browser enables the button the viewer may not use; the server refuses and
    # says so, naming the account
    page.evaluate(
        """() => {
          for (const doc of Bokeh.documents) {
            for (const model of doc._all_models.values()) {
              if (model.label === 'Logout Session') { model.disabled = false; }
            }
          }
        }"""
    )
    page.get_by_role("button", name="Logout Session").click()
    toast = notification(page, "may not log sessions out")
    expect()(toast).to_be_visible()
    expect()(toast).to_contain_text(HOSTILE_VIEWER)
    assert toast.locator("img, a, script").count() == 0
    assert page.locator(".notyf img, .notyf script, .notyf a").count() == 0
    assert page.evaluate("() => window.__pwned === undefined")
    assert browser_page.outside == []
