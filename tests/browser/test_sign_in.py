"""Sign-in that holds, against a real ``licusage serve --auth`` (issue 14).

Attacks, each against the served process: forged session tokens (a raw websocket client and a
browser whose page token is rewritten), no cookie, a cookie signed with another secret, a stale
cookie, a cookie from before sign-out, a page still open after sign-out, CSRF on the login form,
open redirects, failed-sign-in floods; and the headers, cookie flags, ``--trust-proxy``,
``--num-procs 2`` and a restart.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import time
import urllib.parse
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any, TypeVar

import pytest
from bokeh.client.websocket import WebSocketClientConnectionWrapper
from bokeh.core.serialization import Deserializer
from bokeh.document import Document
from bokeh.document.events import DocumentPatchedEvent, MessageSentEvent
from bokeh.events import ButtonClick, DocumentReady
from bokeh.models import ColumnDataSource
from bokeh.protocol import Protocol
from bokeh.protocol.message import Message
from bokeh.protocol.receiver import Receiver
from bokeh.util.token import (
    generate_jwt_token,
    generate_session_id,
    get_session_id,
    get_token_payload,
)
from panel.models.tabulator import DataTabulator
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.web import create_signed_value
from tornado.websocket import WebSocketClientConnection, websocket_connect

from licusage import accounts, actions, clock, db, queries
from licusage.app import auth
from licusage.audit import END_SESSION
from licusage.errors import PermissionDenied
from tests.browser.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    VIEWER,
    VIEWER_PASSWORD,
    expect,
    tick_row,
)
from tests.browser.conftest import (
    sign_in as browser_sign_in,
)
from tests.helpers import wait_until

pytestmark = pytest.mark.xdist_group("browser_sign_in")
browser = pytest.mark.browser
SECRET = "sign-in-test-secret-0123456789abcdef"
T = TypeVar("T")


@pytest.fixture(scope="module")
def server(server_factory, seeded_store):
    return server_factory(seeded_store, "--auth", "--cookie-secret", SECRET)


# --- a small HTTP client that does not follow redirects -------------------------------------------
class Response:
    def __init__(self, raw: http.client.HTTPResponse) -> None:
        self.status = raw.status
        self.headers = raw.headers
        self.body = raw.read().decode("utf-8", "replace")
        self.cookies = SimpleCookie()
        for header in raw.headers.get_all("Set-Cookie") or []:
            self.cookies.load(header)

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")


def request(
    server,
    path: str,
    *,
    cookies: dict[str, str] | None = None,
    method: str = "GET",
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    parts = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    all_headers = dict(headers or {})
    if cookies:
        all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=body, headers=all_headers)
    try:
        return Response(conn.getresponse())
    finally:
        conn.close()


def login_form(server, headers: dict[str, str] | None = None) -> tuple[dict[str, str], str]:
    """The login page's CSRF cookie and form token."""
    page = request(server, "/login", headers=headers)
    token = re.search(r'name="_xsrf" value="([^"]+)"', page.body)
    assert token, page.body
    return {"_xsrf": page.cookies["_xsrf"].value}, token.group(1)


def post_login(server, user: str, password: str, *, next_url: str = "/", headers=None) -> Response:
    cookies, token = login_form(server, headers)
    form = {"_xsrf": token, "username": user, "password": password, "next": next_url}
    return request(server, "/login", method="POST", form=form, cookies=cookies, headers=headers)


def signed_in_cookie(server, user: str, password: str) -> dict[str, str]:
    response = post_login(server, user, password)
    assert response.status == 302, response.body
    return {auth.COOKIE_NAME: response.cookies[auth.COOKIE_NAME].value}


def page_token(server, cookies: dict[str, str]) -> str:
    page = request(server, "/", cookies=cookies)
    assert page.status == 200, (page.status, page.location)
    match = re.search(r'"token":\s*"([^"]+)"', page.body)
    assert match, "no session token in the page"
    return match.group(1)


async def connect_websocket(
    server, cookies: dict[str, str] | None, token: str
) -> WebSocketClientConnection:
    """The page's websocket, opened as a raw client with `cookies` and the session `token`
    (raises HTTPClientError when the upgrade is refused)."""
    parts = urllib.parse.urlsplit(server.url)
    url = f"ws://{parts.hostname}:{parts.port}/ws"
    headers = {"Origin": f"http://{parts.hostname}:{parts.port}"}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return await websocket_connect(
        HTTPRequest(url, headers=headers, request_timeout=60), subprotocols=["bokeh", token]
    )


def run_apart(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` in an event loop of its own thread, apart from Playwright's."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def open_websocket(server, cookies: dict[str, str] | None, token: str) -> str:
    """Connect to the page's websocket as a raw client: ``ack`` (a session), ``closed`` (the
    server refused the token) or ``http NNN`` (the upgrade was refused)."""

    async def run() -> str:
        try:
            conn = await connect_websocket(server, cookies, token)
        except HTTPClientError as error:
            return f"http {error.code}"
        try:
            message = await asyncio.wait_for(conn.read_message(), 60)
        finally:
            conn.close()
        if message is None:
            return "closed"
        return "ack" if '"msgtype":"ACK"' in str(message).replace(" ", "") else str(message)

    return run_apart(run())


def forged_tokens(real: str) -> dict[str, str]:
    """Tokens a client makes up: claiming a valid admin sign-in (and no cookie at all)."""
    claim = {
        auth.PAYLOAD_KEY: {
            "user": ADMIN,
            "issued_at": clock.current_db_time().isoformat(),
            "valid": True,
            "reason": "ok",
        },
        "cookies": {},
        "headers": {},
        "arguments": {},
    }
    session_id = generate_session_id(secret_key=None, signed=False)
    unsigned = generate_jwt_token(session_id, signed=False, extra_payload=claim)
    other_key = generate_jwt_token(
        generate_session_id(secret_key=b"x" * 64, signed=True),
        secret_key=b"x" * 64,
        signed=True,
        extra_payload=claim,
    )
    # the real token's signature on a rewritten payload
    payload = get_token_payload(real)
    payload.update(claim)
    payload.pop("session_expiry")
    rewritten = generate_jwt_token(get_session_id(real), signed=False, extra_payload=payload)
    return {
        "unsigned": unsigned,
        "signed with another key": other_key,
        "real signature, rewritten payload": rewritten + "." + real.split(".", 1)[1],
    }


def stale_cookie(user: str) -> dict[str, str]:
    issued = clock.current_db_time() - auth.DEFAULT_MAX_AGE - timedelta(days=2)
    payload = json.dumps({"u": user, "t": issued.isoformat()})
    value = create_signed_value(SECRET, auth.COOKIE_NAME, payload).decode()
    return {auth.COOKIE_NAME: value}


def other_secret_cookie(user: str) -> dict[str, str]:
    other = auth.AuthSettings(cookie_secret="another-secret-0123456789abcdef")
    return {auth.COOKIE_NAME: auth.make_cookie(other, user, clock.current_db_time())}


# --- forged sessions ------------------------------------------------------------------------------
def test_forged_session_tokens_get_no_session(server):
    viewer = signed_in_cookie(server, VIEWER, VIEWER_PASSWORD)
    real = page_token(server, viewer)
    assert open_websocket(server, viewer, real) == "ack"  # the genuine article works
    for name, token in forged_tokens(real).items():
        assert open_websocket(server, viewer, token) == "closed", name
    # the session learns who it serves from the checked request, not from the browser
    assert get_token_payload(real)[auth.PAYLOAD_KEY]["user"] == VIEWER
    assert auth.COOKIE_NAME not in json.dumps(get_token_payload(real))  # no cookie in the page


@pytest.mark.parametrize("kind", ["none", "other secret", "stale", "garbage"])
def test_requests_without_a_valid_sign_in_get_no_session(server, kind):
    cookies = {
        "none": {},
        "other secret": other_secret_cookie(ADMIN),
        "stale": stale_cookie(ADMIN),
        "garbage": {auth.COOKIE_NAME: "ada.admin", "user": "ada.admin", "is_guest": "1"},
    }[kind]
    page = request(server, "/", cookies=cookies)
    assert page.status == 302
    assert "/login" in page.location
    viewer = signed_in_cookie(server, VIEWER, VIEWER_PASSWORD)
    token = page_token(server, viewer)
    assert open_websocket(server, cookies, token) == "http 403"  # the websocket path: the same


def test_a_cookie_from_before_sign_out_stops_working(server, store):
    cookies = signed_in_cookie(server, ADMIN, ADMIN_PASSWORD)
    token = page_token(server, cookies)
    signed_out = request(server, "/logout", cookies=cookies)
    assert signed_out.status == 200
    assert "signed out" in signed_out.body
    assert signed_out.cookies[auth.COOKIE_NAME].value == ""  # cleared in the browser too
    page = request(server, "/", cookies=cookies)  # a copy captured before the sign-out
    assert page.status == 302
    assert "/login" in page.location
    assert open_websocket(server, cookies, token) == "http 403"
    log = queries.audit_log(store, actor=ADMIN)
    assert accounts.SIGN_OUT in set(log["action"])


@browser
def test_a_page_open_before_sign_out_may_not_act_and_is_audited(server, browser_page, store):
    page = browser_page()
    browser_sign_in(page, server, ADMIN, ADMIN_PASSWORD)
    expect()(page.get_by_text(f"{ADMIN} (admin)")).to_be_visible()
    other_tab = page.context.new_page()
    other_tab.goto(server.url.rstrip("/") + "/logout")
    expect()(other_tab.get_by_text("You are signed out.")).to_be_visible()

    page.get_by_role("button", name="Run").click()
    row = page.locator(".tabulator-row").filter(
        has=page.locator("[tabulator-field=User]", has_text="carol.100%")
    )
    tick_row(page, row, "1 selected")
    page.get_by_role("button", name="Logout Session").click()  # refused before any dialog
    expect()(
        page.locator(".notyf__message", has_text="may not log sessions out").first
    ).to_be_visible()

    def refusals():
        log = queries.audit_log(store, actor=ADMIN)
        return log[log["action"] == "logout_refused"]

    wait_until(lambda: len(refusals()) > 0, timeout=30)
    refused = refusals()
    assert json.loads(refused["detail"].iloc[-1])["role"] == "signed_out"
    assert len(queries.session_usage(store, user="carol.100%")) == 1  # still active
    page.reload()
    expect()(page.locator("#username")).to_be_visible()  # the page itself is gone too


# what a tampered page can do: open the websocket itself, with the browser's own cookies
OPEN_SOCKET = """([url, token]) => new Promise((resolve) => {
  const socket = new WebSocket(url, ["bokeh", token]);
  let acked = false;
  socket.onmessage = (event) => {
    if (String(event.data).replace(/ /g, "").includes('"msgtype":"ACK"')) acked = true;
  };
  socket.onclose = () => resolve(acked ? "ack" : "closed");
  setTimeout(() => { socket.close(); resolve(acked ? "ack" : "timeout"); }, 60000);
})"""


@browser
def test_a_browser_rewriting_its_page_token_gets_no_session(server, browser_page, store):
    page = browser_page()
    browser_sign_in(page, server, VIEWER, VIEWER_PASSWORD)
    before = len(queries.audit_log(store, actor=ADMIN))
    real = page_token(server, signed_in_cookie(server, VIEWER, VIEWER_PASSWORD))
    ws_url = server.url.replace("http://", "ws://").rstrip("/") + "/ws"
    assert page.evaluate(OPEN_SOCKET, [ws_url, real]) == "ack"  # the page's way works
    for name, token in forged_tokens(real).items():
        assert page.evaluate(OPEN_SOCKET, [ws_url, token]) == "closed", name
    assert page.get_by_text(f"{ADMIN} (admin)").count() == 0
    assert len(queries.audit_log(store, actor=ADMIN)) == before


# --- a viewer speaking the Bokeh protocol itself -------------------------------------------------
class BokehClient:
    """A raw client of the page's websocket: Bokeh protocol messages made by
    ``Protocol().create``, models of the pulled document named by their ids."""

    def __init__(self, conn: WebSocketClientConnection) -> None:
        self.conn = conn
        self.socket = WebSocketClientConnectionWrapper(conn)
        self.receiver = Receiver(Protocol())
        self.doc = Document()  # the client's side: the models it sends events about
        self.changes: list[DocumentPatchedEvent] = []
        self.doc.on_change(self.changes.append)
        self.received: list[str] = []  # the content of every message read

    async def receive(self, timeout: float = 120) -> Message[Any]:
        while True:
            fragment = await asyncio.wait_for(self.conn.read_message(), timeout)
            assert fragment is not None, "the server closed the websocket"
            message = await self.receiver.consume(fragment)
            if message is not None:
                self.received.append(json.dumps(message.content, default=str))
                return message

    async def until(self, text: str, timeout: float = 120) -> None:
        """Read messages until one carries `text` (a patch of the document, a reply)."""
        deadline = time.monotonic() + timeout
        while not any(text in content for content in self.received):
            await self.receive(max(1.0, deadline - time.monotonic()))

    async def send(self, events: list[DocumentPatchedEvent]) -> None:
        """PATCH-DOC with `events`; returns once the server answered OK."""
        message = Protocol().create("PATCH-DOC", events)
        await message.send(self.socket)
        while True:
            reply = await self.receive()
            if reply.header.get("reqid") == message.header["msgid"]:
                assert reply.msgtype == "OK", reply.content
                return

    def model(self, rep: dict[str, Any]) -> Any:
        """The client's copy of the document's model `rep` (its type and id; no attributes)."""
        model = Deserializer().decode({"type": "object", "name": rep["name"], "id": rep["id"]})
        if isinstance(model, DataTabulator):
            model.source = ColumnDataSource()  # a required property; never sent
        self.doc.add_root(model)
        self.doc.models.flush_synced()  # known to the server: events name it by its id
        return model

    def click(self, button: Any) -> MessageSentEvent:
        """What BokehJS sends for a click on `button`."""
        return MessageSentEvent(self.doc, "bokeh_event", ButtonClick(button))


def audited(store, action: str, actor: str | None = None):
    """The audit events of `action` (by `actor`)."""
    log = queries.audit_log(store, actor=actor)
    return log[log["action"] == action]


def document_objects(tree: Any) -> Iterator[dict[str, Any]]:
    """Every model of a serialized document, depth first."""
    if isinstance(tree, dict):
        if tree.get("type") == "object" and "attributes" in tree:
            yield tree
        for value in tree.values():
            yield from document_objects(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from document_objects(value)


def test_a_viewer_sending_the_logout_events_itself_is_refused_and_audited(server, store):
    """A viewer's own client, not its page: the genuine cookie and token, the document pulled
    over the websocket, then what a Logout click sends (row ticked, Logout Session, the
    dialog's Logout) as PATCH-DOC messages. The server refuses and audits the viewer."""
    cookies = signed_in_cookie(server, VIEWER, VIEWER_PASSWORD)
    token = page_token(server, cookies)
    target = "erin.smith"
    [target_id] = queries.session_usage(store, user=target)["session_id"].tolist()
    ended_before = audited(store, END_SESSION)

    async def conversation() -> BokehClient:
        client = BokehClient(await connect_websocket(server, cookies, token))
        assert (await client.receive()).msgtype == "ACK"
        await Protocol().create("PULL-DOC-REQ").send(client.socket)
        reply = await client.receive()
        assert reply.msgtype == "PULL-DOC-REPLY"
        objects = list(document_objects(reply.content["doc"]))
        buttons = {
            o["attributes"].get("label"): o for o in objects if o["name"].endswith(".Button")
        }
        # the viewer's page has the buttons (Logout Session disabled), and the table
        assert buttons["Logout Session"]["attributes"].get("disabled") is True
        [table] = [o for o in objects if o["name"].endswith(".DataTabulator")]
        source = table["attributes"]["source"]
        users = dict(source["attributes"]["data"]["entries"])["User"]["array"]
        row = users.index(target)
        logout, confirm = client.model(buttons["Logout Session"]), client.model(buttons["Logout"])
        selected = client.model(source["attributes"]["selected"])
        # the page is ready: the server runs its first Run (the same rows, the same order)
        await client.send([MessageSentEvent(client.doc, "bokeh_event", DocumentReady())])
        await client.until("7 sessions of 7 distinct users")
        selected.indices = [row]  # the checkbox of the row: a change of the table's selection
        await client.send(client.changes[-1:])
        await client.until("1 selected")
        await client.send([client.click(logout)])  # the disabled button, clicked all the same
        await client.until("may not log sessions out")
        await client.send([client.click(confirm)])  # and the dialog's confirmation
        client.conn.close()
        return client

    client = run_apart(conversation())
    assert any(f"{VIEWER} (viewer) may not log sessions out" in c for c in client.received)
    assert queries.session_usage(store, user=target)["session_id"].tolist() == [target_id]
    assert len(audited(store, END_SESSION)) == len(ended_before)
    refused = audited(store, "logout_refused", VIEWER)
    assert len(refused) == 1, refused
    assert json.loads(refused["detail"].iloc[0]) == {"role": "viewer", "session_ids": [target_id]}
    # the role check itself, in the library: the same refusal, audited the same way
    with pytest.raises(PermissionDenied):
        actions.authorized_logout(store, [target_id], VIEWER, actions.VIEWER)
    assert len(audited(store, "logout_refused", VIEWER)) == 2
    assert len(queries.session_usage(store, user=target)) == 1


# --- the login form ---------------------------------------------------------------------------------
def test_the_login_form_needs_its_csrf_token(server):
    form = {"username": VIEWER, "password": VIEWER_PASSWORD, "next": "/"}
    assert request(server, "/login", method="POST", form=form).status == 403
    cookies, token = login_form(server)
    wrong = {**form, "_xsrf": token[:-4] + "abcd"}
    assert request(server, "/login", method="POST", form=wrong, cookies=cookies).status == 403
    assert request(server, "/login", method="POST", form={**form, "_xsrf": token}).status == 403
    right = request(server, "/login", method="POST", form={**form, "_xsrf": token}, cookies=cookies)
    assert right.status == 302


@pytest.mark.parametrize(
    "next_url",
    [
        "///evil.example/x",
        "//evil.example/x",
        "/\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
    ],
)
def test_sign_in_never_redirects_to_another_origin(server, next_url):
    response = post_login(server, VIEWER, VIEWER_PASSWORD, next_url=next_url)
    assert response.status == 302
    assert response.location == "/"
    page = request(server, "/login?next=" + urllib.parse.quote(next_url))
    assert 'name="next" value="/"' in page.body


def test_sign_in_keeps_a_path_of_this_server(server):
    response = post_login(server, VIEWER, VIEWER_PASSWORD, next_url="/?theme=dark")
    assert response.location == "/?theme=dark"


def test_headers_and_cookie_flags(server):
    login = request(server, "/login")
    viewer = post_login(server, VIEWER, VIEWER_PASSWORD)
    page = request(server, "/", cookies={auth.COOKIE_NAME: viewer.cookies[auth.COOKIE_NAME].value})
    for response in (login, viewer, page):
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    cookie = viewer.cookies[auth.COOKIE_NAME]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert not cookie["secure"]  # plain http, and no proxy is trusted: X-Forwarded-Proto ignored
    spoofed = post_login(
        server,
        VIEWER,
        VIEWER_PASSWORD,
        headers={"X-Forwarded-Proto": "https", "X-Real-Ip": "6.6.6.6"},
    )
    assert not spoofed.cookies[auth.COOKIE_NAME]["secure"]
    assert page.headers["Cache-Control"] == "no-store"


def test_behind_a_trusted_proxy_cookies_are_secure_and_origins_real(server_factory, seeded_store):
    proxied = server_factory(seeded_store, "--auth", "--cookie-secret", SECRET, "--trust-proxy")
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    response = post_login(proxied, VIEWER, VIEWER_PASSWORD, headers=headers)
    assert response.status == 302
    assert response.cookies[auth.COOKIE_NAME]["secure"]
    assert "max-age" in response.headers["Strict-Transport-Security"]
    engine = db.connect(seeded_store)
    try:
        log = queries.audit_log(engine, actor=VIEWER)
        assert "203.0.113.7" in set(log.loc[log["action"] == accounts.SIGN_IN, "origin"])
    finally:
        engine.dispose()


def test_failed_sign_ins_are_locked_out(server, store):
    accounts.add_account(store, "lou.locked", "lou-password-1", "admin")
    started = time.monotonic()
    statuses = [post_login(server, "lou.locked", f"wrong-{n}").status for n in range(5)]
    assert statuses == [401] * 5
    locked = post_login(server, "lou.locked", "lou-password-1")  # right, but too late
    assert locked.status == 429
    assert "Too many failed sign-ins" in locked.body
    assert auth.COOKIE_NAME not in locked.cookies
    # refused attempts cost no bcrypt: 20 more come back fast, and write nothing
    quick = time.monotonic()
    assert {post_login(server, "lou.locked", "x").status for _ in range(20)} == {429}
    print(
        f"5 wrong passwords: {quick - started:.2f} s; 20 locked-out tries: {time.monotonic() - quick:.2f} s"
    )
    log = queries.audit_log(store, actor="lou.locked")
    assert list(log["action"]) == [accounts.SIGN_IN_FAILED] * 5


# --- processes and restarts -----------------------------------------------------------------------------
def test_num_procs_and_a_restart_keep_sign_ins_and_sign_outs(
    server_factory, seeded_store, tmp_path
):
    """Without --cookie-secret: a generated secret beside the store, shared by both worker
    processes and kept across a restart; a sign-out holds in every process."""
    args = ("--auth", "--num-procs", "2")
    first = server_factory(seeded_store, *args)
    cookies = signed_in_cookie(first, VIEWER, VIEWER_PASSWORD)
    for _ in range(6):  # connections land on either worker
        assert open_websocket(first, cookies, page_token(first, cookies)) == "ack"
    first.stop()
    again = server_factory(seeded_store, *args)
    for _ in range(4):
        assert open_websocket(again, cookies, page_token(again, cookies)) == "ack"
    assert request(again, "/logout", cookies=cookies).status == 200
    for _ in range(6):
        page = request(again, "/", cookies=cookies)
        assert page.status == 302
        assert "/login" in page.location
    secret = db.sqlite_file(seeded_store).with_name("store.sqlite.cookie-secret")
    assert secret.stat().st_mode & 0o077 == 0


@browser
def test_the_dashboard_works_under_its_content_security_policy(server, browser_page):
    page = browser_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    browser_sign_in(page, server, VIEWER, VIEWER_PASSWORD)
    page.get_by_role("button", name="Run").click()
    expect()(page.locator(".tabulator-row").first).to_be_visible()
    page.get_by_text("Utilisation", exact=True).click()
    page.wait_for_function("() => Bokeh.documents[0].is_idle")
    assert problems == []
