"""Take the README's picture of the run inspector (``docs/inspector.png``).

Serves the browser tests' app (``tests/browser/app.py``) on 127.0.0.1, starts a run of each
workflow, lets them reach their states (paused, failed, retrying, waiting on a timer,
completed), and photographs the page of a paused review run in headless Chromium, as a user
sees it after entering the API key.

Usage::

    .venv/bin/python scripts/inspector_screenshot.py [OUTPUT.png]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.chromium import launch  # noqa: E402
from tests.browser.server import API_KEY, serving  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402

SETTLED = {"review": "paused", "broken": "failed", "nightly": "paused", "loop": "completed"}
"""The status each workflow's run reaches by itself."""


def main(output: Path) -> None:
    with tempfile.TemporaryDirectory() as directory, serving(Path(directory)) as served:
        service = served.runtime.service
        # Only the review gets an input: the timer's node would take one as its early end.
        runs = {name: service.start(name).record.run_id for name in SETTLED if name != "review"}
        runs["review"] = service.start("review", {"order": 42}).record.run_id
        runs["flaky"] = service.start("flaky").record.run_id
        for name, status in SETTLED.items():
            wait_until(
                lambda n=name, s=status: service.get(runs[n]).status == s, 30, f"{name} {status}"
            )
        wait_until(
            lambda: service.get(runs["flaky"]).snapshot.retry_state is not None, 30, "a retry"
        )
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{served.url}/ui")
            page.get_by_label("API key").fill(API_KEY)
            page.get_by_role("button", name="Use key").click()
            expect(page.locator("table.runs tbody tr")).to_have_count(len(runs))
            page.goto(f"{served.url}/ui#/runs/{runs['review']}")
            expect(page.locator('[data-node="ask"]')).to_have_attribute("data-state", "paused")
            page.locator("#resume-payload").fill('{"ok": true, "by": "ada"}')
            page.screenshot(path=str(output), full_page=True)
            browser.close()
    print(f"wrote {output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "inspector.png")
