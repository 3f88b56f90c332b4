"""Browser cases: page open and Run to first rows visible (Chromium), the served app's memory.

A real ``licusage serve`` runs in a subprocess on a free port; headless Debian Chromium is driven
by Playwright, a fresh browser context (cookies, Bokeh document) per run.

* "Page open -> first rows": from ``page.goto`` until the first result row is visible (the page
  runs its filter when it opens). Its reference is :mod:`benchmarks.reference`, a server-rendered
  HTML page of the same 25 joined rows, timed the same way in the same browser.
* "Run -> first page": from the click on ``Run`` until new result rows are visible.

"Visible" is checked in the page on every animation frame (:func:`_wait_visible`: a matching
element, through Bokeh's shadow roots, with a box and not hidden), not by Playwright's locator,
which polls at 20, 50, 100, 100, 500 ms intervals: up to half a second late.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

from . import cases as case_defs
from .store import StoreSpec, prepare

ROOT = Path(__file__).resolve().parents[1]
COUNT_LINE = re.compile(r"[\d,]+ sessions? of [\d,]+ distinct|No active sessions match")
MILLION = StoreSpec(users=100_000, active=1_000_000, history=100_000, days=30)
MILLION_QUICK = StoreSpec(users=400, active=4_000, history=1_000, days=7)
BROWSER_SESSIONS = 5
NOTES = [
    "page open: page.goto -> first result row visible, headless Chromium at 1280x900, fresh "
    "context per run; reference: benchmarks/reference.py, a Tornado page rendering the same "
    "25 joined rows (session_usage_page) as HTML, goto -> first row visible",
    "dashboard Run: click -> new result rows visible (the count follows), headless Chromium, "
    "fresh page per run, `licusage serve` subprocess on the same machine",
    "memory: resident set of the `licusage serve` process tree (/proc) after 5 browser pages "
    "each ran the unfiltered query on the large store",
    "page load settled (diagnostic): the same click, made only once the server has finished "
    "the page's own load work (CPU idle), to separate Run's cost from the page load's",
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextmanager
def served(
    store_url: str, timeout: float = 120.0, module: str = "licusage"
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``licusage serve`` (or `module`, e.g. ``benchmarks.reference``) on a free loopback port;
    stopped (its process group) afterwards."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", module]
    command += ["serve"] if module == "licusage" else []
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [*command, "--db", store_url, "--port", str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while not _answers(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"server did not start: {log.read()[-2000:]!r}")
                time.sleep(0.2)
            yield url, process
        finally:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        with suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process `pid`, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_until_idle(pid: int, timeout: float = 300.0) -> None:
    """Wait until the server has used almost no CPU for a second (its page-load work is done)."""
    deadline = time.monotonic() + timeout
    last = _cpu_seconds(pid)
    quiet = 0
    while time.monotonic() < deadline and quiet < 2:
        time.sleep(0.5)
        now = _cpu_seconds(pid)
        quiet = quiet + 1 if now - last < 0.05 else 0
        last = now


def _open_dashboard(browser: Any, url: str) -> Any:
    """A fresh browser session (its own context: cookies, Bokeh document) on the dashboard."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.get_by_role("button", name="Run").wait_for(timeout=120_000)
    page.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle",
        timeout=120_000,
    )
    return page


# true once an element matching the selector, in the document or any shadow root, has a box
# and is not hidden
_VISIBLE_JS = """(selector) => {
  const visible = (root) => {
    for (const el of root.querySelectorAll(selector)) {
      if (el.getBoundingClientRect().height > 0 && el.checkVisibility({visibilityProperty: true}))
        return true
    }
    for (const el of root.querySelectorAll("*")) {
      if (el.shadowRoot && visible(el.shadowRoot)) return true
    }
    return false
  }
  return document.body !== null && visible(document)
}"""


def _wait_visible(page: Any, selector: str, timeout: float = 180.0) -> None:
    """Wait until an element matching `selector` is visible, checked on every animation frame
    in the page itself."""
    page.wait_for_function(_VISIBLE_JS, arg=selector, polling="raf", timeout=timeout * 1000)


def _click_run(page: Any) -> float:
    """Seconds from the click on Run until new rows are visible (the rows shown before are
    marked, a Run draws new row elements)."""
    page.locator(".tabulator-row").first.wait_for(state="visible", timeout=180_000)
    page.evaluate(
        "() => document.querySelectorAll('.tabulator-row').forEach(r => r.dataset.old = '1')"
    )
    began = time.perf_counter()
    page.get_by_role("button", name="Run").click()
    _wait_visible(page, ".tabulator-row:not([data-old])")
    return time.perf_counter() - began


def _page_opens(store_url: str, repeat: int, module: str = "licusage") -> list[float]:
    """Seconds from ``goto`` until the first result row is visible, a fresh context each time
    (`module` ``benchmarks.reference``: the server-rendered reference page)."""
    row = ".tabulator-row" if module == "licusage" else "table.sessions tbody tr"
    seconds = []
    with served(store_url, module=module) as (url, _process), _browser() as browser:
        for index in range(repeat + 1):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            began = time.perf_counter()
            page.goto(url, wait_until="commit")
            _wait_visible(page, row)
            if index:  # the first open warms the server (imports, caches) and is not counted
                seconds.append(time.perf_counter() - began)
            context.close()
    return seconds


@contextmanager
def _browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def _run_clicks(store_url: str, repeat: int, settle: bool = False) -> list[float]:
    """Seconds from Run to the first page, on a fresh page each time; with `settle`, the click
    waits until the server has finished the work of loading the page."""
    seconds = []
    with served(store_url) as (url, process), _browser() as browser:
        for _ in range(repeat):
            page = _open_dashboard(browser, url)
            if settle:
                _wait_until_idle(process.pid)
            seconds.append(_click_run(page))
            page.context.close()
    return seconds


def _memory(store_url: str) -> tuple[float, str | None]:
    """GB resident of the server after BROWSER_SESSIONS pages each clicked Run."""
    with served(store_url) as (url, process), _browser() as browser:
        pages = []
        for _ in range(BROWSER_SESSIONS):
            page = _open_dashboard(browser, url)
            _click_run(page)
            pages.append(page)
        time.sleep(1.0)
        rss = _tree_rss(process.pid)
        for page in pages:
            page.context.close()
    return rss / 1e9, None


def _million_store(store_url: str, ctx: case_defs.Context) -> str:
    """The 1M-session store (built once, cached next to the large store)."""
    spec = MILLION_QUICK if ctx.quick else MILLION
    if store_url.startswith("sqlite"):  # next to the large store
        folder = Path(sa.make_url(store_url).database or ".").parent
        url = f"sqlite:///{folder / f'large-{spec.key}.sqlite'}"
    else:
        million = sa.make_url(store_url).set(database="licusage_bench_1m")
        url = million.render_as_string(hide_password=False)
    return prepare(url, spec, progress=sys.stderr.isatty()).url


def available() -> str | None:
    """Why the browser cases cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not found"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    if shutil.which(sys.executable) is None:
        return "no python executable"
    return None


def run(store_url: str, ctx: case_defs.Context, repeat: int, wanted: list[str] | None) -> list[Any]:
    """Rows (see ``benchmarks.__main__.Row``) of the selected browser cases."""
    from .__main__ import Row, _selected

    rows: list[Row] = []
    problem = available()
    large = "quick store" if ctx.quick else "100k active"
    names = {
        "open": f"dashboard page open -> first rows ({large})",
        "open_million": "dashboard page open -> first rows ("
        + ("quick 2nd store" if ctx.quick else "1M active")
        + ")",
        "click": f"dashboard Run -> first page ({large})",
        "million": "dashboard Run -> first page ("
        + ("quick 2nd store" if ctx.quick else "1M active")
        + ")",
        "settled": f"dashboard Run -> first page ({large}), page load settled",
        "memory": f"served app memory, {BROWSER_SESSIONS} browser sessions (GB)",
    }
    targets = {
        "open": case_defs.Target("both", 1.0, "<= 1 s, ratio <= 1"),
        "open_million": case_defs.Target("both", 1.5, "<= 1.5 s, ratio <= 1"),
        "click": case_defs.Target("seconds", 1.0, "<= 1 s"),
        "million": case_defs.Target("seconds", 3.0, "<= 3 s"),
        "settled": case_defs.Target("seconds", 1.0, "<= 1 s (diagnostic)"),
        "memory": case_defs.Target("seconds", 1.0, "<= 1 GB", unit="GB"),
    }
    for key, name in names.items():
        if not _selected(name, wanted):
            continue
        row = Row(name, [], [], "", targets[key])
        if problem:
            row.problem = f"skipped: {problem}"
            rows.append(row)
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            if key in ("million", "open_million"):
                store_url_here = _million_store(store_url, ctx)
            else:
                store_url_here = store_url
            if key in ("open", "open_million"):
                row.reference_name = "server-rendered page of the same 25 rows"
                row.times = _page_opens(store_url_here, repeat)
                row.reference_times = _page_opens(store_url_here, repeat, "benchmarks.reference")
            elif key == "click":
                row.times = _run_clicks(store_url, repeat)
            elif key == "settled":
                row.times = _run_clicks(store_url, repeat, settle=True)
            elif key == "million":
                row.times = _run_clicks(store_url_here, repeat)
            else:
                gigabytes, row.problem = _memory(store_url)
                row.times = [gigabytes]
        except Exception as error:  # report, and go on with the other cases
            row.problem = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
        rows.append(row)
    return rows
