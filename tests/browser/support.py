"""What the browser tests do as a user: open the inspector, give the key, read a run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playwright.sync_api import Locator, Page, expect

from refluxo.model import SnapshotStatus
from tests.browser.server import API_KEY, Served
from tests.support.waiting import wait_until


def use_key(page: Page, key: str = API_KEY) -> None:
    """Type ``key`` in the API key field and use it, as a user does."""
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Use key").click()


def open_run(page: Page, served: Served, run_id: str, key: str = API_KEY) -> None:
    """Open the inspector, give the key, then go to the run's page."""
    page.goto(f"{served.url}/ui")
    use_key(page, key)
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    page.goto(f"{served.url}/ui#/runs/{run_id}")
    expect(page.get_by_role("heading", name=f"Run {run_id}")).to_be_visible()


def node(page: Page, node_id: str) -> Locator:
    """The graph's node ``node_id`` (an SVG group)."""
    return page.locator(f'svg.graph [data-node="{node_id}"]')


def start_settled(
    served: Served, workflow: str, status: str, payload: object = None, *, timeout: float = 30
) -> str:
    """Start a run of ``workflow`` and wait (up to ``timeout`` seconds) until the runtime has
    brought it to ``status``."""
    service = served.runtime.service
    run_id = service.start(workflow, payload).record.run_id
    wait_until(
        lambda: service.get(run_id).status == SnapshotStatus(status),
        timeout,
        f"run {run_id} of {workflow} to be {status}",
    )
    return run_id


def hold_time(page: Page) -> None:
    """Stop the page's time: its timers (the refreshes) fire only as the test moves the
    clock (``page.clock.run_for``), never by themselves."""
    now = datetime.now(UTC)
    page.clock.install(time=now)
    page.clock.pause_at(now + timedelta(seconds=1))
