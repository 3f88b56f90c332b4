"""Alert rules: decided from the store, fired once until cleared, delivered by e-mail (a local
SMTP server) and webhook (a local HTTP receiver), every firing kept."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from licusage import alerts, catalog, db, sessions
from licusage.errors import InvalidInput
from tests.browser.conftest import free_port
from tests.helpers import wait_until

CM = "Case Management"
CU = catalog.CONCURRENT_USER


class Mailbox:
    """An aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def receiver() -> Iterator[tuple[list[dict], str]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(
                {"type": self.headers["Content-Type"], **json.loads(self.rfile.read(length))}
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield received, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def _config(rules: str, smtp_port: int | None = None, hook: str | None = None):
    text = rules
    if smtp_port is not None:
        text += f'\n[email]\nhost = "127.0.0.1"\nport = {smtp_port}\nfrom = "lu@example.org"\nto = ["ops@example.org"]\n'
    if hook is not None:
        text += f'\n[webhook]\nurl = "{hook}"\n'
    return alerts.parse_config(text)


FULL = """
[[rule]]
name = "CM nearly full"
kind = "pool_usage"
pool = "Case Management=Concurrent User"
above_percent = 70
for = "10m"
"""


def test_an_alert_fires_once_is_delivered_clears_and_fires_again(engine, frozen, mailbox, receiver):
    box, smtp_port = mailbox
    hooks, hook_url = receiver
    config = _config(FULL, smtp_port, hook_url)
    catalog.add_pool(engine, CM, CU, 4)
    logins = [sessions.login(engine, u, {CM: CU}) for u in ("a", "b", "c")]  # 75 %
    assert alerts.evaluate(engine, config).fired == ()  # not yet for 10 minutes
    frozen.advance(minutes=11)
    first = alerts.evaluate(engine, config)
    assert [(f.rule, f.subject) for f in first.fired] == [("CM nearly full", f"{CM}={CU}")]
    assert first.fired[0].delivery == {"email": "sent", "webhook": "sent"}
    wait_until(lambda: len(box.messages) == 1)
    assert box.messages[0]["Subject"] == f"[licusage] CM nearly full: {CM}={CU}"
    assert "3 of 4 seats" in box.messages[0].get_payload()
    assert len(hooks) == 1
    assert hooks[0]["type"] == "application/json"
    assert hooks[0]["rule"] == "CM nearly full"
    assert hooks[0]["state"] == "firing"
    # still true: not delivered again
    frozen.advance(minutes=5)
    assert alerts.evaluate(engine, config) == alerts.Evaluation()
    assert len(box.messages) == 1
    assert len(hooks) == 1
    # a seat comes back: it clears
    sessions.end(engine, logins[0].session_id)
    frozen.advance(minutes=1)
    cleared = alerts.evaluate(engine, config)
    assert [f.id for f in cleared.cleared] == [first.fired[0].id]
    # it returns, and stays for 10 minutes: fires again
    sessions.login(engine, "d", {CM: CU})
    frozen.advance(minutes=3)
    assert alerts.evaluate(engine, config).fired == ()
    frozen.advance(minutes=8)
    again = alerts.evaluate(engine, config)
    assert len(again.fired) == 1
    assert again.fired[0].id != first.fired[0].id
    wait_until(lambda: len(box.messages) == 2)
    assert len(hooks) == 2
    kept = alerts.firings(engine)
    assert kept["id"].tolist() == [again.fired[0].id, first.fired[0].id]
    assert kept["cleared_at"].isna().tolist() == [True, False]
    assert json.loads(kept["delivery"].iloc[1]) == {"email": "sent", "webhook": "sent"}


def test_a_dip_inside_the_period_keeps_the_usage_alert_quiet(engine, frozen):
    config = _config(FULL)
    catalog.add_pool(engine, CM, CU, 4)
    a = sessions.login(engine, "a", {CM: CU})
    sessions.login(engine, "b", {CM: CU})
    sessions.login(engine, "c", {CM: CU})
    frozen.advance(minutes=5)
    sessions.end(engine, a.session_id)
    frozen.advance(seconds=30)
    sessions.login(engine, "a", {CM: CU})
    frozen.advance(minutes=6)  # 11 minutes above, but with a 30 s dip at 50 %
    assert alerts.evaluate(engine, config).fired == ()
    frozen.advance(minutes=5)  # now 10.5 minutes without a dip
    assert len(alerts.evaluate(engine, config).fired) == 1


def test_denials_expiry_and_session_age_rules(engine, frozen):
    config = _config(
        """
[[rule]]
kind = "denials"
name = "denied"
more_than = 1
within = "1h"

[[rule]]
kind = "pool_expiry"
name = "expiry"
days = [30, 7]

[[rule]]
kind = "session_age"
name = "old sessions"
older_than = "8h"
"""
    )
    catalog.add_pool(engine, CM, CU, 1, expires_at=frozen.now + timedelta(days=20))
    sessions.login(engine, "a", {CM: CU})
    sessions.login(engine, "b", {CM: CU})  # denied
    fired = {(f.rule, f.subject) for f in alerts.evaluate(engine, config).fired}
    assert fired == {("expiry", f"{CM}={CU} within 30 days")}
    sessions.login(engine, "c", {CM: CU})  # second denial
    frozen.advance(hours=9)  # the denials are now older than the hour; a is 9 h old
    result = alerts.evaluate(engine, config)
    assert {(f.rule, f.subject) for f in result.fired} == {("old sessions", "sessions")}
    frozen.set(frozen.now - timedelta(hours=9))
    frozen.advance(minutes=1)
    fired = {f.rule for f in alerts.evaluate(engine, config).fired}
    assert "denied" in fired
    frozen.advance(days=14)  # 5 days left: the 7-day threshold fires too
    fired = {(f.rule, f.subject) for f in alerts.evaluate(engine, config).fired}
    assert ("expiry", f"{CM}={CU} within 7 days") in fired
    # renewed: both expiry alerts clear
    catalog.add_pool(engine, CM, CU, 1, expires_at=frozen.now + timedelta(days=365))
    cleared = {(f.rule, f.subject) for f in alerts.evaluate(engine, config).cleared}
    assert {("expiry", f"{CM}={CU} within 30 days"), ("expiry", f"{CM}={CU} within 7 days")} <= (
        cleared
    )


def test_a_delivery_that_fails_is_recorded_and_not_retried(engine, frozen):
    config = _config(
        '[[rule]]\nkind = "session_age"\nname = "old"\nolder_than = "1h"\n',
        smtp_port=free_port(),  # nobody listens there
        hook="http://127.0.0.1:9/nothing",
    )
    catalog.add_pool(engine, CM, CU, 3)
    sessions.login(engine, "a", {CM: CU})
    frozen.advance(hours=2)
    fired = alerts.evaluate(engine, config).fired
    assert len(fired) == 1
    assert fired[0].delivery["email"].startswith("failed: ")
    assert fired[0].delivery["webhook"].startswith("failed: ")
    assert alerts.evaluate(engine, config).fired == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[rule]]\nkind = "nope"', "kind must be one of"),
        ('[[rule]]\nkind = "pool_usage"\nabove_percent = 120', "above_percent"),
        ('[[rule]]\nkind = "pool_usage"\nabove_percent = 90\nfor = "5"', "for: duration '5'"),
        ('[[rule]]\nkind = "denials"\nmore_than = -1', "more_than"),
        ('[[rule]]\nkind = "pool_expiry"\ndays = [0]', "days must be"),
        ('[[rule]]\nkind = "session_age"\ncolour = 1', "unknown setting 'colour'"),
        ('[[rule]]\nkind = "denials"\nmore_than = 1\npool = "CM"', "PRODUCT=TYPE"),
        ("[[rule]\n", "not valid TOML"),
        ('[webhook]\nurl = "ftp://x"', "http:// or https://"),
        ('[email]\nhost = "h"\nfrom = "f"', "to must name"),
        (
            '[[rule]]\nkind="session_age"\nname="x"\n[[rule]]\nkind="session_age"\nname="x"',
            "two rules",
        ),
    ],
)
def test_bad_rule_files_are_refused_naming_the_setting(text, message):
    with pytest.raises(InvalidInput, match=message):
        alerts.parse_config(text)


def test_lowest_level_counts_each_user_once():
    import pandas as pd

    t = pd.Timestamp("2026-03-02 10:00").to_pydatetime()
    holds = pd.DataFrame(
        [
            ("p", "t", "a", t, None),
            ("p", "t", "a", t + timedelta(minutes=1), t + timedelta(minutes=2)),
            ("p", "t", "b", t, t + timedelta(minutes=5)),
        ],
        columns=["product", "license_type", "user", "granted_at", "released_at"],
    )
    assert alerts.lowest_level(holds, t, t + timedelta(minutes=4)) == 2
    assert alerts.lowest_level(holds, t, t + timedelta(minutes=6)) == 1
    assert alerts.lowest_level(holds.iloc[:0], t, t + timedelta(minutes=6)) == 0


@pytest.mark.postgres
def test_two_hosts_evaluating_at_once_fire_once(pg_url, frozen):
    engines = [db.connect(pg_url) for _ in range(4)]
    try:
        config = _config('[[rule]]\nkind = "session_age"\nname = "old"\nolder_than = "1h"\n')
        catalog.add_pool(engines[0], CM, CU, 3)
        sessions.login(engines[0], "a", {CM: CU})
        frozen.advance(hours=2)
        barrier = threading.Barrier(len(engines))
        results: list = []

        def run(engine) -> None:
            barrier.wait()
            results.append(alerts.evaluate(engine, config))

        threads = [threading.Thread(target=run, args=(e,)) for e in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sum(len(r.fired) for r in results) == 1
        assert len(alerts.firings(engines[0])) == 1
    finally:
        for engine in engines:
            engine.dispose()


def test_the_alerts_tab_shows_every_firing_as_plain_text(engine, frozen):
    from zoneinfo import ZoneInfo

    import panel as pn

    from licusage.app.alerts import COLUMNS, AlertsView

    view = AlertsView(engine, zone=ZoneInfo("UTC"))
    pn.panel(view).get_root()  # drawn: the view reads (outside a server, at once)
    assert view.table.value.empty
    assert "No alert has fired" in view.summary.object
    config = _config('[[rule]]\nkind = "session_age"\nname = "<b>old</b>"\nolder_than = "1h"\n')
    catalog.add_pool(engine, CM, CU, 3)
    first = sessions.login(engine, "a", {CM: CU})
    frozen.advance(hours=2)
    alerts.evaluate(engine, config)
    sessions.end(engine, first.session_id)
    frozen.advance(minutes=1)
    alerts.evaluate(engine, config)
    sessions.login(engine, "b", {CM: CU})
    frozen.advance(hours=2)
    alerts.evaluate(engine, config)
    view.refresh()
    table = view.table.value
    assert list(table.columns) == COLUMNS
    assert table["State"].tolist() == ["open", "cleared 2026-03-02 12:01"]
    assert table["Fired"].tolist() == ["2026-03-02 14:01", "2026-03-02 12:00"]
    assert table["Rule"].tolist() == ["<b>old</b>", "<b>old</b>"]  # text, never markup
    assert ">1 open, 2 firings shown (newest first)<" in view.summary.object


def test_the_server_evaluates_the_rules_and_delivers(tmp_path, receiver, mailbox):
    from tests.browser.conftest import start_server

    hooks, hook_url = receiver
    box, smtp_port = mailbox
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    engine = db.connect(url)
    try:
        catalog.add_pool(engine, CM, CU, 2)
        first = sessions.login(engine, "a", {CM: CU})
        rules = tmp_path / "alerts.toml"
        rules.write_text(
            '[[rule]]\nname = "half"\nkind = "pool_usage"\nabove_percent = 40\n'
            f'[webhook]\nurl = "{hook_url}"\n'
            f'[email]\nhost = "127.0.0.1"\nport = {smtp_port}\nfrom = "a@b.c"\nto = ["d@e.f"]\n'
        )
        server = start_server(
            url,
            "--alerts",
            str(rules),
            "--alerts-every",
            "1s",
            log_dir=tmp_path,
            ready_path="/api/v1/openapi.json",
        )
        try:
            wait_until(lambda: len(hooks) == 1, timeout=120)
            wait_until(lambda: len(box.messages) == 1, timeout=60)
            assert hooks[0]["subject"] == f"{CM}={CU}"
            sessions.end(engine, first.session_id)
            wait_until(lambda: alerts.firings(engine)["cleared_at"].notna().all(), timeout=60)
            sessions.login(engine, "b", {CM: CU})
            wait_until(lambda: len(hooks) == 2, timeout=60)
            assert len(alerts.firings(engine)) == 2
        finally:
            server.stop()
    finally:
        engine.dispose()
