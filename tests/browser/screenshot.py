"""Take ``docs/screenshot.png``: the served dashboard on a demo store, after Run.

licusage demo --db sqlite:////tmp/demo.sqlite
python -m tests.browser.screenshot sqlite:////tmp/demo.sqlite docs/screenshot.png
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, start_server, wait_for_dashboard


def take(store_url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as logs:
        server = start_server(store_url, log_dir=Path(logs))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport={"width": 1280, "height": 1250})
                page.goto(server.url)
                wait_for_dashboard(page)
                page.get_by_role("button", name="Run").click()
                page.locator(".tabulator-row").nth(5).wait_for()
                for index in (1, 2, 4):
                    page.locator(".tabulator-row input[type=checkbox]").nth(index).click()
                page.get_by_text("3 selected").wait_for()
                page.mouse.move(700, 300)
                page.mouse.wheel(0, -5000)
                page.wait_for_function(
                    "() => Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle"
                )
                page.screenshot(path=str(out))
                browser.close()
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store_url")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    take(args.store_url, args.out)


if __name__ == "__main__":
    main()
