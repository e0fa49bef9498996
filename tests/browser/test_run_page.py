"""A run's page shows what happened: each node's state on the graph, the pending retry or
timer, and the timeline with its times, attempts, errors and outputs."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.sync_api import Page, expect

from tests.browser.server import Served
from tests.browser.support import node, open_run, start_settled
from tests.support.waiting import wait_until


def iso(ms: float) -> str:
    """Epoch milliseconds as the page writes them (JavaScript's toISOString)."""
    ms = int(ms)
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def test_the_failed_node_is_marked_failed_on_the_graph(
    page: Page, served: Served, console_errors: list[str]
) -> None:
    run_id = start_settled(served, "broken", "failed")
    open_run(page, served, run_id)

    failed = node(page, "transform")
    expect(failed).to_have_attribute("data-state", "failed")
    expect(failed).to_have_class("node state-failed")
    expect(failed.locator(".node-state")).to_have_text("failed")
    expect(node(page, "load")).to_have_attribute("data-state", "done")
    expect(node(page, "load").locator(".visits")).to_have_text("1")
    expect(node(page, "store")).to_have_attribute("data-state", "idle")
    expect(page.locator(".status").first).to_have_text("failed")

    # The error, as stored: a string shown as text, its markup never interpreted.
    message = "ValueError: cannot parse record 7: <b>unexpected</b> end of input"
    row = page.locator('table.timeline tr[data-node="transform"]')
    expect(row.locator(".error-text")).to_have_text(message)
    expect(page.locator("table.timeline b")).to_have_count(0)
    expect(page.get_by_text("Failed because")).to_be_visible()
    expect(page.get_by_text("Finished: not refreshing.")).to_be_visible()
    # Nothing is left to do with a failed run.
    expect(page.get_by_role("button", name="Cancel run…")).to_have_count(0)
    assert console_errors == []


def test_the_timeline_shows_times_attempts_and_outputs(page: Page, served: Served) -> None:
    run_id = start_settled(served, "review", "paused", {"order": 42})
    open_run(page, served, run_id)
    entry = served.runtime.service.timeline(run_id)[0]

    row = page.locator('table.timeline tr[data-node="fetch"]')
    expect(row.locator("td").nth(2)).to_have_text(iso(entry.result.timestamp))
    expect(row.locator("td").nth(4)).to_have_text("1")
    expect(row.locator("td").nth(6)).to_contain_text('{ "order": 42 }')
    expect(node(page, "fetch")).to_have_attribute("data-state", "done")
    expect(node(page, "ask")).to_have_attribute("data-state", "paused")
    expect(page.get_by_text("Paused at node ask")).to_be_visible()


def test_a_retrying_node_shows_its_next_attempt_time(page: Page, served: Served) -> None:
    service = served.runtime.service
    run_id = service.start("flaky").record.run_id
    wait_until(lambda: service.get(run_id).snapshot.retry_state is not None, 30, "a retry")
    retry = service.get(run_id).snapshot.retry_state
    assert retry is not None
    assert retry.next_retry_at is not None
    open_run(page, served, run_id)

    expect(node(page, "notify")).to_have_attribute("data-state", "retrying")
    expect(node(page, "notify").locator(".node-state")).to_have_text("retrying · attempt 2")
    expect(node(page, "notify").locator("title")).to_contain_text(
        f"next attempt at {iso(retry.next_retry_at)}"
    )
    pending = page.locator("section.pending")
    expect(pending).to_contain_text("Retry: node notify, attempt 2 at")
    expect(pending.locator("time")).to_have_text(iso(retry.next_retry_at))
    expect(page.locator("table.timeline .error-text")).to_contain_text(
        ["ConnectionError: attempt 1: the partner API timed out"]
    )


def test_a_timer_shows_when_it_fires(page: Page, served: Served) -> None:
    run_id = start_settled(served, "nightly", "paused")
    resume_at = served.runtime.service.get(run_id).snapshot.metadata["resumeAt"]
    open_run(page, served, run_id)

    expect(node(page, "sleep")).to_have_attribute("data-state", "waiting")
    timer = page.locator("section.pending .timer")
    expect(timer).to_contain_text("Timer: node sleep resumes at")
    expect(timer.locator("time")).to_have_text(iso(resume_at))


def test_visits_count_each_result_of_a_node(page: Page, served: Served) -> None:
    run_id = start_settled(served, "loop", "completed")
    open_run(page, served, run_id)

    expect(node(page, "count").locator(".visits")).to_have_text("3")
    expect(node(page, "finish").locator(".visits")).to_have_text("1")
    expect(node(page, "finish")).to_have_attribute("data-state", "done")
    expect(page.locator("table.timeline tbody tr")).to_have_count(4)


def test_choosing_a_node_shows_its_results(page: Page, served: Served) -> None:
    run_id = start_settled(served, "loop", "completed")
    open_run(page, served, run_id)
    expect(page.locator("table.timeline tbody tr")).to_have_count(4)

    node(page, "count").click()
    expect(page.get_by_role("heading", name="Timeline of node count")).to_be_visible()
    expect(page.locator("table.timeline tbody tr")).to_have_count(3)
    page.get_by_role("button", name="Show every node").click()
    expect(page.locator("table.timeline tbody tr")).to_have_count(4)
    node(page, "finish").focus()
    page.keyboard.press("Enter")
    expect(page.locator("table.timeline tbody tr")).to_have_count(1)
