"""Browser-test fixtures: a real ``licusage serve`` / ``panel serve`` process and headless Chromium.

Reusable by other browser tests::

    def test_x(server_factory, seeded_store, browser_page):
        server = server_factory(seeded_store, "--auth", "--num-procs", "2")
        page = browser_page()
        page.goto(server.url)

Without Chromium or Playwright the tests skip, and fail under ``LICUSAGE_STRICT=1``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from licusage import accounts, catalog, clock, db, sessions
from tests.helpers import require

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "session_license_usage.py"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN, ADMIN_PASSWORD = "ada.admin", "admin-pass-1"
VIEWER, VIEWER_PASSWORD = "vic.viewer", "viewer-pass-1"
LOOPBACK = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A dashboard server running in a subprocess; ``url`` is its page."""

    url: str
    process: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """Stop the server and its worker processes (``--num-procs``): its process group."""
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(timeout=10)
        self._signal(signal.SIGKILL)  # workers outlive a terminated parent

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # the group of the server's own session
            os.killpg(self.process.pid, sig)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def start_server(
    store_url: str,
    *extra_args: str,
    log_dir: Path,
    panel: bool = False,
    env: dict[str, str] | None = None,
    timeout: float = 300.0,  # a loaded 2-core machine can take minutes to import and serve
    ready_path: str | None = None,
) -> ServerProcess:
    """Start ``licusage serve --db store_url --port P *extra_args`` (or, with `panel`,
    ``panel serve dashboards/session_license_usage.py``) and wait until it answers HTTP 200
    (at `ready_path`, e.g. ``/api/v1/openapi.json``, when given; else the page)."""
    port = free_port()
    environ = {**os.environ, db.ENV_URL: store_url, "PYTHONUNBUFFERED": "1", **(env or {})}
    if panel:
        command = [sys.executable, "-m", "panel", "serve", str(DASHBOARD), "--port", str(port)]
        command += ["--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}"]
        url = f"http://127.0.0.1:{port}/session_license_usage"
    else:
        command = [sys.executable, "-m", "licusage", "serve", "--db", store_url]
        command += ["--port", str(port)]
        url = f"http://127.0.0.1:{port}/"
    command += list(extra_args)
    log = log_dir / f"server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches its workers
        )
    server = ServerProcess(url=url, process=process, log=log)
    deadline = time.monotonic() + timeout
    ready = f"http://127.0.0.1:{port}{ready_path}" if ready_path else url
    while not _answers(ready):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"server did not start: {command}\n{server.log_text()[-3000:]}")
        time.sleep(0.2)
    return server


@pytest.fixture(scope="module")
def server_factory(tmp_path_factory) -> Iterator[Callable[..., ServerProcess]]:
    """Start dashboard servers (see :func:`start_server`); all stop when the module ends."""
    started: list[ServerProcess] = []
    log_dir = tmp_path_factory.mktemp("servers")

    def factory(store_url: str, *extra_args: str, **kwargs: Any) -> ServerProcess:
        server = start_server(store_url, *extra_args, log_dir=log_dir, **kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


def seed_store(url: str) -> None:
    """A small, known store: 2 products, named and concurrent pools, 7 active sessions, the
    sign-in accounts ``ada.admin`` (admin) and ``vic.viewer`` (viewer)."""
    engine = db.connect(url)
    try:
        cm, ro = "Case Management", "Reports Only"
        catalog.add_pool(engine, cm, catalog.NAMED_USER, 5)
        catalog.add_pool(engine, cm, catalog.CONCURRENT_USER, 10)
        catalog.add_pool(engine, ro, catalog.CONCURRENT_USER, 3)
        for user in ("alice.named", "dora.named"):
            catalog.assign_named(engine, cm, user)
        start = clock.now() - timedelta(hours=6)
        logins = [
            ("alice.named", {cm: catalog.NAMED_USER}, 0),
            ("alice.floating", {cm: catalog.CONCURRENT_USER, ro: catalog.CONCURRENT_USER}, 10),
            ("bob.o'brien", {cm: catalog.CONCURRENT_USER}, 20),
            ("carol.100%", {ro: catalog.CONCURRENT_USER}, 30),
            ("dora.named", {cm: catalog.NAMED_USER, ro: catalog.CONCURRENT_USER}, 40),
            ("erin.smith", {cm: catalog.CONCURRENT_USER}, 50),
            (ADMIN, {cm: catalog.CONCURRENT_USER}, 60),
        ]
        for user, licenses, minutes in logins:
            sessions.login(
                engine, user, licenses, host=f"ws-{user[:4]}", at=start + timedelta(minutes=minutes)
            )
        accounts.add_account(engine, ADMIN, ADMIN_PASSWORD, "admin")
        accounts.add_account(engine, VIEWER, VIEWER_PASSWORD, "viewer")
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory) -> str:
    """URL of a SQLite store filled by :func:`seed_store` (one per test module)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.sqlite'}"
    seed_store(url)
    return url


@dataclass
class BrowserPages:
    """Opens pages in fresh browser contexts; records requests that leave 127.0.0.1."""

    browser: Any
    outside: list[str] = field(default_factory=list)
    contexts: list[Any] = field(default_factory=list)

    def __call__(self, width: int = 1400, height: int = 1000) -> Any:
        context = self.browser.new_context(viewport={"width": width, "height": height})
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.on(
            "request",
            lambda request: (
                None if request.url.startswith(LOOPBACK) else self.outside.append(request.url)
            ),
        )
        return page


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (one per test process)."""
    require(
        Path(CHROMIUM).exists() or bool(shutil.which("chromium")),
        f"Chromium not installed at {CHROMIUM}",
    )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed")
        raise
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)  # generous: CI machines can be busy
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium) -> Iterator[BrowserPages]:
    """``browser_page()`` opens a page in a new context (cookies not shared); closed after."""
    pages = BrowserPages(chromium)
    yield pages
    for context in pages.contexts:
        context.close()


def sign_in(page: Any, server: ServerProcess, user: str, password: str) -> None:
    """Sign in on the server's local login page and wait for the dashboard."""
    page.goto(server.url)
    page.locator("#username").fill(user)
    page.locator("#password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    wait_for_dashboard(page)


def wait_for_dashboard(page: Any) -> None:
    """Wait until the page is drawn and its Bokeh document is connected and idle."""
    page.get_by_role("button", name="Run").wait_for()
    page.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle"
    )


def tick_row(page: Any, row: Any, selected_text: str, attempts: int = 3) -> None:
    """Tick `row`'s checkbox until the page says `selected_text` (e.g. "1 selected").

    A click that lands while a Run's rows replace the table's (a re-render under load) toggles
    a checkbox that is gone a moment later, and the server never hears of it; the user sees an
    unticked box and ticks again, and so does this."""
    shown = page.get_by_text(selected_text)
    for attempt in range(attempts):
        page.wait_for_function("() => Bokeh.documents.every((doc) => doc.is_idle)")
        checkbox = row.locator("input[type=checkbox]")
        if not checkbox.is_checked():
            checkbox.click()
        try:
            expect()(shown).to_be_visible(timeout=20_000)
            return
        except AssertionError:
            if attempt == attempts - 1:
                raise


@pytest.fixture
def store(seeded_store):
    """An Engine on the module's seeded store, to check what the dashboard changed."""
    engine = db.connect(seeded_store)
    yield engine
    engine.dispose()


def expect():
    """Playwright's ``expect``, imported late so that collection works without Playwright."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect
