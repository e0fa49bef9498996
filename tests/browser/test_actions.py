"""What a user does with a run from its page: resume it with a payload, cancel it; and the
page follows the run by itself while it is not finished."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, Route, expect

from tests.browser.server import Served
from tests.browser.support import hold_time, node, open_run, start_settled
from tests.support.waiting import wait_until


def test_resume_with_a_payload_moves_a_paused_run_on(page: Page, served: Served) -> None:
    run_id = start_settled(served, "review", "paused")
    open_run(page, served, run_id)
    expect(node(page, "ask")).to_have_attribute("data-state", "paused")

    payload = page.get_by_label("Resume node ask with this JSON payload")
    resume = page.get_by_role("button", name="Resume", exact=True)
    payload.fill('{"ok": true,')
    expect(page.locator("#resume-error")).to_contain_text("Not valid JSON")
    expect(resume).to_be_disabled()

    payload.fill('{"ok": true, "by": "ada"}')
    expect(page.locator("#resume-error")).to_have_text("")
    resume.click()

    expect(page.locator(".status").first).to_have_text("completed")
    expect(node(page, "publish")).to_have_attribute("data-state", "done")
    expect(node(page, "discard")).to_have_attribute("data-state", "idle")
    expect(page.locator('table.timeline tr[data-node="ask"]')).to_contain_text('"by": "ada"')
    assert served.runtime.service.get(run_id).status == "completed"


def test_the_api_refuses_a_resume_the_run_no_longer_waits_for(page: Page, served: Served) -> None:
    """The page resumes at the version it shows: a run resumed meanwhile is not resumed twice."""
    service = served.runtime.service
    run_id = start_settled(served, "review", "paused")
    hold_time(page)  # the page's refreshes wait for the test: it shows the paused run
    open_run(page, served, run_id)
    expect(node(page, "ask")).to_have_attribute("data-state", "paused")
    version = service.get(run_id).version
    service.resume(run_id, {"ok": False})

    page.get_by_role("button", name="Resume", exact=True).click()
    expect(page.locator("#resume-error")).to_contain_text("(HTTP 409)")
    assert service.get(run_id).version > version
    wait_until(lambda: service.get(run_id).status == "completed", 30, "the run to complete")
    page.clock.run_for(1_000)
    expect(page.locator(".status").first).to_have_text("completed")
    expect(node(page, "discard")).to_have_attribute("data-state", "done")


def test_cancel_fails_the_run(page: Page, served: Served) -> None:
    run_id = start_settled(served, "nightly", "paused")
    open_run(page, served, run_id)
    expect(node(page, "sleep")).to_have_attribute("data-state", "waiting")

    page.get_by_role("button", name="Cancel run…").click()
    page.get_by_label("Cancel: the run fails").fill("not needed tonight")
    page.get_by_role("button", name="Yes, cancel the run").click()

    expect(page.locator(".status").first).to_have_text("failed")
    expect(node(page, "sleep")).to_have_attribute("data-state", "cancelled")
    expect(page.locator(".facts")).to_contain_text("not needed tonight")
    record = served.runtime.service.get(run_id)
    assert record.status == "failed"
    assert record.snapshot.metadata["failedReason"] == "not needed tonight"


def test_the_page_follows_a_run_that_changes_elsewhere(page: Page, served: Served) -> None:
    run_id = start_settled(served, "review", "paused")
    open_run(page, served, run_id)
    expect(node(page, "ask")).to_have_attribute("data-state", "paused")

    served.runtime.service.resume(run_id, {"ok": True})

    expect(node(page, "publish")).to_have_attribute("data-state", "done")
    expect(page.get_by_text("Finished: not refreshing.")).to_be_visible()


def test_the_page_polls_less_often_while_nothing_changes(page: Page, served: Served) -> None:
    """Each read that finds the run unchanged doubles the wait (1 s up to 30 s); a change
    brings it back to 1 s, and a finished run is not read again."""
    run_id = start_settled(served, "review", "paused")
    reads: list[str] = []
    page.on("request", lambda request: reads.append(request.url) if run_id in request.url else None)
    hold_time(page)  # the test moves the page's time: no waiting for real seconds
    open_run(page, served, run_id)
    refresh = page.locator("#refresh")
    for seconds in (1, 2, 4, 8, 16, 30, 30):
        expect(refresh).to_contain_text(f"next in {seconds} s")
        before = len(reads)
        page.clock.run_for(seconds * 1000 - 1)
        page.evaluate("0")  # a round trip: a read started by now has been reported
        assert len(reads) == before, f"read again before {seconds} s"
        with page.expect_request(lambda request: f"runs/{run_id}?" in request.url):
            page.clock.run_for(1)
        # The read drawn (and the next one scheduled) before the clock moves on.
        now = page.evaluate("new Date().toISOString()")
        expect(refresh).to_contain_text(f"Read at {now}.")

    service = served.runtime.service
    service.resume(run_id, {"ok": True})
    wait_until(lambda: service.get(run_id).status == "completed", 30, "the run to complete")
    with page.expect_request(lambda request: f"runs/{run_id}?" in request.url):
        page.clock.run_for(30_000)
    expect(refresh).to_contain_text("Finished: not refreshing.")
    expect(node(page, "publish")).to_have_attribute("data-state", "done")
    settled = len(reads)
    page.clock.run_for(600_000)
    page.get_by_role("link", name="← all runs").click()  # the page is still responsive
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    assert not [url for url in reads[settled:] if f"runs/{run_id}?" in url]


def keep_changing(page: Page, run_id: str, *, status: str | None = None) -> list[int]:
    """Makes each read of paused run ``run_id`` find it at a new version (and in ``status``), as
    a busy run is found; returns the versions shown. A run no longer paused is shown as it is."""
    shown: list[int] = []

    def handle(route: Route) -> None:
        response = route.fetch()
        body: dict[str, Any] = response.json()
        if body.get("status") == "paused":
            body["version"] += 100 + len(shown)
            body["snapshot"]["version"] = body["version"]
            if status is not None:
                body["status"] = body["snapshot"]["status"] = status
            shown.append(body["version"])
        route.fulfill(response=response, json=body)

    page.route(lambda url: f"/runs/{run_id}?" in url, handle)
    return shown


def test_cancel_can_be_confirmed_while_the_run_keeps_changing(page: Page, served: Served) -> None:
    """The confirmation opened, and the reason typed, stay while the page follows the run."""
    run_id = start_settled(served, "nightly", "paused")
    shown = keep_changing(page, run_id, status="active")
    hold_time(page)
    open_run(page, served, run_id)
    expect(node(page, "sleep")).to_have_attribute("data-state", "current")

    page.get_by_role("button", name="Cancel run…").click()
    reason = page.get_by_label("Cancel: the run fails")
    reason.fill("runaway: stop it")
    for _ in range(3):  # three reads, each finding the run at a new version
        with page.expect_response(lambda response: f"runs/{run_id}?" in response.url):
            page.clock.run_for(1000)
        expect(page.locator(".facts")).to_contain_text(str(shown[-1]))
        expect(reason).to_be_visible()
        expect(reason).to_have_value("runaway: stop it")
        expect(reason).to_be_focused()
    page.keyboard.type(" now")
    page.get_by_role("button", name="Yes, cancel the run").click()

    expect(page.locator(".status").first).to_have_text("failed")
    expect(node(page, "sleep")).to_have_attribute("data-state", "cancelled")
    record = served.runtime.service.get(run_id)
    assert record.status == "failed"
    assert record.snapshot.metadata["failedReason"] == "runaway: stop it now"


def test_a_payload_being_typed_survives_refreshes(page: Page, served: Served) -> None:
    run_id = start_settled(served, "review", "paused")
    shown = keep_changing(page, run_id)
    hold_time(page)
    open_run(page, served, run_id)
    payload = page.get_by_label("Resume node ask with this JSON payload")
    payload.fill('{"ok": true, "by": ')
    expect(page.locator("#resume-error")).to_contain_text("Not valid JSON")
    for _ in range(3):
        with page.expect_response(lambda response: f"runs/{run_id}?" in response.url):
            page.clock.run_for(1000)
        expect(page.locator(".facts")).to_contain_text(str(shown[-1]))
        expect(payload).to_have_value('{"ok": true, "by": ')
        expect(payload).to_be_focused()
    page.keyboard.type('"ada"}')
    expect(page.locator("#resume-error")).to_have_text("")

    page.unroute_all()  # the run as it is: the resume is sent at its true version
    with page.expect_response(lambda response: f"runs/{run_id}?" in response.url):
        page.clock.run_for(1000)
    expect(page.locator(".facts")).not_to_contain_text(str(shown[-1]))
    page.get_by_role("button", name="Resume", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text(f"Resumed run {run_id}.")
    service = served.runtime.service
    wait_until(lambda: service.get(run_id).status == "completed", 30, "the run to complete")
    page.clock.run_for(1000)
    expect(page.locator(".status").first).to_have_text("completed")
    expect(page.locator('table.timeline tr[data-node="ask"]')).to_contain_text('"by": "ada"')
