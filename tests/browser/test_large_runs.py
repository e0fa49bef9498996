"""Runs of many results: the page draws a bounded page of the timeline and adds only what is
new as the run goes on, holds at most its cap of results (the latest), and never draws a
result twice, even when two reads of the run overlap.

Runs past 10,000 results are served by a stand-in for the run's API (``FakeRun``, answering
the page's reads through ``page.route``) so that a test can grow them at will."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

from playwright.sync_api import Page, Route, expect

from tests.browser.app import LONG_ROUNDS
from tests.browser.server import Served
from tests.browser.support import hold_time, node, open_run, start_settled

ROWS = 500  # the most timeline rows the page draws at once
CAP = 20_000  # the most results the page holds
CREATED = 1_700_000_000_000


@dataclass
class FakeRun:
    """A run of ``count`` results of node ``tick`` as the API shows it; ``hold`` keeps reads
    unanswered (in ``held``) until the test answers them."""

    run_id: str
    count: int
    status: str = "active"
    version: int = 1
    reads: list[int] = field(default_factory=list)  # each read's timelineAfter
    hold: bool = False
    held: list[Route] = field(default_factory=list)

    def entry(self, seq: int) -> dict[str, Any]:
        return {
            "seq": seq,
            "nodeId": "tick",
            "output": {"round": seq + 1, "note": f"round {seq + 1} of a long run, said at length"},
            "timestamp": CREATED + 10 * (seq + 1),
            "attempt": 1,
        }

    def head(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "workflow": "long",
            "definitionVersion": "0123456789abcdef0123",
            "status": self.status,
            "version": self.version,
            "currentNodeId": "tick",
            "createdAt": CREATED,
            "updatedAt": CREATED + 10 * self.count,
            "resultCount": self.count,
            "snapshot": {
                "workflowId": "long",
                "status": self.status,
                "currentNodeId": "tick",
                "version": self.version,
                "metadata": {},
            },
        }

    def grow(self, results: int) -> None:
        self.count += results
        self.version += 1

    def answer(self, route: Route, after: int | None = None, limit: int = 1000) -> None:
        """Answers a read of the run with the results after ``after`` (as asked, by default)."""
        query = parse_qs(urlparse(route.request.url).query)
        if after is None:
            after = int(query["timelineAfter"][0])
        limit = int(query.get("timelineLimit", [str(limit)])[0])
        timeline = [self.entry(seq) for seq in range(after + 1, min(self.count, after + 1 + limit))]
        route.fulfill(json={**self.head(), "timeline": timeline})

    def serve(self, page: Page, served: Served) -> None:
        base = f"{served.url}/runs/{self.run_id}"

        def handle(route: Route) -> None:
            path = urlparse(route.request.url).path
            if path.endswith("/graph"):
                route.fulfill(json=GRAPH)
            elif path.endswith("/resume") or path.endswith("/cancel"):
                route.fulfill(json=self.head())
            else:
                self.reads.append(
                    int(parse_qs(urlparse(route.request.url).query)["timelineAfter"][0])
                )
                if self.hold:
                    self.held.append(route)
                else:
                    self.answer(route)

        page.route(lambda url: url.startswith(base), handle)


GRAPH = {
    "start": "tick",
    "nodes": [{"id": "tick", "type": "tick"}, {"id": "end", "type": "say"}],
    "edges": [
        {"source": "tick", "target": "tick", "sourceHandle": "again"},
        {"source": "tick", "target": "end", "sourceHandle": "done"},
    ],
}


def seqs(page: Page) -> list[int]:
    """The numbers of the timeline's rows, as drawn."""
    cells = page.locator("table.timeline tbody tr td:first-child").all_inner_texts()
    return [int(cell) for cell in cells]


def test_a_run_of_ten_thousand_results_is_drawn_a_page_at_a_time(
    page: Page, served: Served
) -> None:
    run_id = start_settled(served, "long", "completed", timeout=300)  # about 20 s alone
    total = LONG_ROUNDS + 1
    open_run(page, served, run_id)

    rows = page.locator("table.timeline tbody tr")
    expect(rows).to_have_count(ROWS)
    expect(rows.first).to_have_attribute("data-seq", str(total - ROWS))
    expect(rows.last).to_have_attribute("data-seq", str(total - 1))
    expect(page.locator("#timeline-note")).to_have_text(
        f"Rows {total - ROWS + 1} to {total} of {total} held (the latest)."
    )
    expect(node(page, "tick").locator(".visits")).to_have_text("99+")
    expect(page.locator(".facts")).to_contain_text(str(total))

    # Choosing a node takes effect at once: its results only, still a bounded page of them.
    node(page, "end").click()
    expect(page.get_by_role("heading", name="Timeline of node end")).to_be_visible()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-node", "end")
    node(page, "tick").click()
    expect(page.get_by_role("heading", name="Timeline of node tick")).to_be_visible()
    expect(rows).to_have_count(ROWS)
    expect(rows.last).to_have_attribute("data-seq", str(total - 2))

    # Older results, a page at a time, and back.
    page.get_by_role("button", name="Show every node").click()
    expect(rows).to_have_count(ROWS)
    page.get_by_role("button", name="Show older").click()
    expect(rows.first).to_have_attribute("data-seq", str(total - 2 * ROWS))
    expect(rows.last).to_have_attribute("data-seq", str(total - ROWS - 1))
    expect(rows).to_have_count(ROWS)
    page.get_by_role("button", name="Show newer").click()
    expect(rows.last).to_have_attribute("data-seq", str(total - 1))
    expect(page.get_by_role("button", name="Show newer")).to_be_disabled()
    for _ in range(total // ROWS):
        page.get_by_role("button", name="Show older").click()
    expect(rows.first).to_have_attribute("data-seq", "0")
    expect(rows).to_have_count(ROWS)
    expect(page.get_by_role("button", name="Show older")).to_be_disabled()
    page.get_by_role("button", name="Show the latest").click()
    expect(rows.last).to_have_attribute("data-seq", str(total - 1))


def test_an_active_run_adds_its_new_results_without_redrawing_the_others(
    page: Page, served: Served
) -> None:
    """What the user opened in the timeline (an output's details) stays open as results come."""
    fake = FakeRun("growing", count=3)
    fake.serve(page, served)
    hold_time(page)
    open_run(page, served, fake.run_id)
    rows = page.locator("table.timeline tbody tr")
    expect(rows).to_have_count(3)
    details = page.locator('table.timeline tr[data-seq="1"] details')
    details.locator("summary").click()
    expect(details).to_have_attribute("open", "")

    for grown in (5, 8, 600):
        fake.grow(grown - fake.count)
        page.clock.run_for(1000)
        expect(rows.last).to_have_attribute("data-seq", str(grown - 1))
        expect(rows).to_have_count(min(grown, ROWS))
    expect(rows.first).to_have_attribute("data-seq", str(600 - ROWS))
    expect(page.locator("table.timeline tr[data-seq]")).to_have_count(ROWS)
    assert seqs(page) == list(range(600 - ROWS, 600))


def test_an_active_run_past_the_cap_keeps_only_its_latest_results(
    page: Page, served: Served
) -> None:
    fake = FakeRun("past-the-cap", count=CAP + 500)
    fake.serve(page, served)
    hold_time(page)
    open_run(page, served, fake.run_id)
    rows = page.locator("table.timeline tbody tr")
    note = page.locator("#timeline-note")
    expect(note).to_contain_text(f"Showing the latest {CAP} of {CAP + 500} results.")
    expect(rows).to_have_count(ROWS)
    expect(rows.last).to_have_attribute("data-seq", str(CAP + 499))
    # The page read the latest results, not every result from the first.
    assert len(fake.reads) <= CAP // 1000 + 2, fake.reads

    for _ in range(4):  # each read finds another 1,000 results
        fake.grow(1000)
        page.clock.run_for(1000)
        expect(rows.last).to_have_attribute("data-seq", str(fake.count - 1))
    expect(note).to_contain_text(f"Showing the latest {CAP} of {fake.count} results.")
    expect(note).to_contain_text(f"Rows {CAP - ROWS + 1} to {CAP} of {CAP} held (the latest).")
    expect(page.locator(".facts")).to_contain_text(f"{fake.count} (the latest {CAP} held)")
    expect(rows).to_have_count(ROWS)

    # Paging through what is held ends at the oldest result held, not the run's first.
    older = page.get_by_role("button", name="Show older")
    for _ in range(CAP // ROWS - 1):
        older.click()
    expect(older).to_be_disabled()
    expect(rows.first).to_have_attribute("data-seq", str(fake.count - CAP))
    expect(note).to_contain_text(f"Rows 1 to {ROWS} of {CAP} held.")

    # Results keep coming while an older page is read: that page stays, the note follows.
    fake.grow(1000)
    page.clock.run_for(1000)
    expect(note).to_contain_text(f"Showing the latest {CAP} of {fake.count} results.")
    expect(rows.first).to_have_attribute("data-seq", str(fake.count - CAP))
    expect(rows).to_have_count(ROWS)


def pump_until(page: Page, condition: Callable[[], bool], what: str) -> None:
    """Make round trips to the page until ``condition`` holds: the page's requests reach
    the test's route handlers only while the test talks to the browser."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.evaluate("0")


def test_overlapping_reads_do_not_draw_a_result_twice(page: Page, served: Served) -> None:
    """A resume while a scheduled read is under way: the page reads again once it is answered,
    and draws each result once, even if the server's answers overlap."""
    fake = FakeRun("overlap", count=3, status="paused")
    fake.serve(page, served)
    hold_time(page)
    open_run(page, served, fake.run_id)
    rows = page.locator("table.timeline tbody tr")
    expect(rows).to_have_count(3)

    fake.hold = True
    page.clock.run_for(1000)  # the scheduled read: left unanswered for now
    pump_until(page, lambda: len(fake.held) == 1, "the scheduled read to be held")

    page.get_by_label("Resume node tick with this JSON payload").fill('{"ok": true}')
    page.get_by_role("button", name="Resume", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text("Resumed run overlap.")
    page.clock.run_for(5000)
    page.evaluate("0")
    assert len(fake.held) == 1, "a second read started while one was under way"

    fake.status = "active"
    fake.grow(2)
    fake.hold = False
    held = fake.held.pop()
    fake.answer(held)  # results 3 and 4; the page then reads again at once
    expect(rows).to_have_count(5)
    # An answer that overlaps what is held (the server answering from the first result).
    fake.hold = True
    page.clock.run_for(1000)
    page.evaluate("0")
    for route in fake.held:
        fake.answer(route, after=-1)
    fake.held.clear()
    page.clock.run_for(1000)
    page.evaluate("0")
    for route in fake.held:
        fake.answer(route, after=-1)
    expect(rows).to_have_count(5)
    assert seqs(page) == [0, 1, 2, 3, 4]


def test_a_big_run_is_held_within_the_cap_from_the_first_read(page: Page, served: Served) -> None:
    """A finished run of more results than the cap: the latest are read and said to be."""
    fake = FakeRun("finished-big", count=CAP * 2, status="completed")
    fake.serve(page, served)
    open_run(page, served, fake.run_id)
    expect(page.locator("#timeline-note")).to_contain_text(
        f"Showing the latest {CAP} of {CAP * 2} results."
    )
    expect(page.locator("table.timeline tbody tr")).to_have_count(ROWS)
    # The first read finds how many results there are; the next ones read the latest only.
    assert fake.reads[0] == -1
    assert fake.reads[1] == CAP - 1


def test_a_settled_run_is_still_shown_in_full(page: Page, served: Served) -> None:
    run_id = start_settled(served, "loop", "completed")
    open_run(page, served, run_id)
    expect(page.locator("table.timeline tbody tr")).to_have_count(4)
    expect(page.locator("#timeline-note")).to_be_hidden()
    expect(page.get_by_role("navigation", name="timeline pages")).to_be_hidden()
