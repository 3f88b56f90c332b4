"""Measure "Run click to rows visible" in Chromium against a real ``licusage serve``.

    python -m tests.browser.measure_run sqlite:////tmp/demo.sqlite [--repeat 5]

Prints the median and each run's seconds from the click on ``Run`` until the first row of
the result is visible and the count line shows the new result (fresh page per run).
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, start_server, wait_for_dashboard


def measure(store_url: str, repeat: int = 5) -> list[float]:
    """Seconds from clicking Run to rows visible, once per fresh page."""
    from playwright.sync_api import expect, sync_playwright

    seconds: list[float] = []
    with tempfile.TemporaryDirectory() as logs:
        server = start_server(store_url, log_dir=Path(logs))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                for _ in range(repeat):
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    page.goto(server.url)
                    wait_for_dashboard(page)
                    line = page.get_by_text(re.compile(r"[\d,]+ sessions of [\d,]+ distinct"))
                    start = time.perf_counter()
                    page.get_by_role("button", name="Run").click()
                    page.locator(".tabulator-row").first.wait_for(state="visible", timeout=120_000)
                    expect(line).to_be_visible(timeout=120_000)
                    seconds.append(time.perf_counter() - start)
                    page.close()
                browser.close()
        finally:
            server.stop()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store_url")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    seconds = measure(args.store_url, args.repeat)
    runs = ", ".join(f"{s:.2f}" for s in seconds)
    print(f"Run -> rows visible: median {statistics.median(seconds):.2f} s ({runs})")


if __name__ == "__main__":
    main()
