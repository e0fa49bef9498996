"""Parent and child runs on the inspector: a run that started child runs lists them (each
with its state and current node, a link to its page), pages through them and follows them
as they change; a child run links back to the run that started it."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Locator, Page, expect

from refluxo.model import SnapshotStatus
from refluxo.runtime.links import child_run_id
from tests.browser.server import Served
from tests.browser.support import hold_time, node, open_run
from tests.support.waiting import wait_until

ITEMS: list[Any] = [{"ok": True}, None, {"ok": False}, None, {"ok": True}]
"""Five children of ``batch``: 0, 2 and 4 complete (publish, discard, publish); 1 and 3 pause
at ``ask``."""

EXPECTED = ["completed", "paused", "completed", "paused", "completed"]


def start_batch(served: Served, items: list[Any]) -> tuple[str, list[str]]:
    """Start a ``batch`` over ``items``; wait until each child has settled (completed when
    its item decides, paused otherwise). The parent's id and its children's, by index."""
    service = served.runtime.service
    parent = service.start("batch", {"items": items}).record.run_id

    def settled() -> list[str] | None:
        marker = service.get(parent).snapshot.metadata.get("childRuns")
        if not marker or not marker.get("started"):
            return None
        ids = [child_run_id(parent, marker["version"], i) for i in range(len(items))]
        for run_id, item in zip(ids, items, strict=True):
            child = service.store.load_run(run_id)
            wanted = SnapshotStatus.PAUSED if item is None else SnapshotStatus.COMPLETED
            if child is None or child.status != wanted:
                return None
        return ids

    wait_until(lambda: settled() is not None, 60, f"the children of {parent} to settle")
    children = settled()
    assert children is not None
    return parent, children


def child_row(page: Page, index: int) -> Locator:
    return page.locator(f'table.children tr[data-index="{index}"]')


def test_a_parent_lists_its_children_and_a_child_links_back(
    page: Page, served: Served, console_errors: list[str]
) -> None:
    parent, children = start_batch(served, ITEMS)
    open_run(page, served, parent)

    section = page.locator("section.children-box")
    expect(section.get_by_role("heading", name="Child runs")).to_be_visible()
    expect(page.locator("#children-note")).to_contain_text(
        "5 child runs of node each (map, at most 200 at a time, on failure: collect); "
        "the run waits for them."
    )
    expect(section.locator("tbody tr")).to_have_count(5)
    for index, (run_id, status) in enumerate(zip(children, EXPECTED, strict=True)):
        row = child_row(page, index)
        expect(row.locator("td").nth(0)).to_have_text(str(index))
        expect(row.get_by_role("link", name=run_id, exact=True)).to_be_visible()
        expect(row.locator(".status")).to_have_text(status)
        expect(row.locator(".status")).to_have_class(f"status status-{status}")
        expect(row.locator("td").nth(3)).to_have_text("ask" if status == "paused" else "—")
    expect(page.get_by_role("button", name="Show more child runs")).to_be_hidden()
    # The parent waits for its children: nothing for a caller to resume.
    expect(node(page, "each")).to_have_attribute("data-state", "paused")
    expect(page.locator("section.pending")).to_contain_text(
        "Waiting at node each for its 5 child runs"
    )
    expect(page.get_by_role("button", name="Resume", exact=True)).to_have_count(0)
    expect(page.locator("#parent-run")).to_be_hidden()

    child_row(page, 1).get_by_role("link", name=children[1], exact=True).click()
    expect(page.get_by_role("heading", name=f"Run {children[1]}")).to_be_visible()
    back = page.locator("#parent-run")
    expect(back).to_have_text(f"Started by run {parent}, node each, item 1.")
    expect(node(page, "ask")).to_have_attribute("data-state", "paused")
    expect(page.locator("section.children-box")).to_be_hidden()

    back.get_by_role("link", name=parent, exact=True).click()
    expect(page.get_by_role("heading", name=f"Run {parent}")).to_be_visible()
    expect(page.locator("section.children-box tbody tr")).to_have_count(5)
    assert console_errors == []


def test_the_list_follows_the_children_as_they_change(page: Page, served: Served) -> None:
    parent, children = start_batch(served, ITEMS)
    hold_time(page)  # the page reads again only when the test moves its clock
    open_run(page, served, parent)
    expect(child_row(page, 3).locator(".status")).to_have_text("paused")

    service = served.runtime.service
    service.resume(children[3], {"ok": True})
    wait_until(lambda: service.get(children[3]).status == "completed", 30, "child 3 to complete")
    page.clock.run_for(1_000)
    expect(child_row(page, 3).locator(".status")).to_have_text("completed")
    expect(child_row(page, 1).locator(".status")).to_have_text("paused")

    # The last paused child ends: the parent joins and goes on to its report.
    service.resume(children[1], {"ok": False})
    wait_until(lambda: service.get(parent).status == "completed", 30, "the parent to complete")
    page.clock.run_for(1_000)
    expect(page.locator(".status").first).to_have_text("completed")
    expect(page.locator("#children-note")).to_contain_text("joined: 5 ended, 0 failed.")
    expect(page.locator("section.children-box .status")).to_have_text(["completed"] * 5)
    expect(node(page, "report")).to_have_attribute("data-state", "done")


def test_more_than_a_page_of_children_is_read_on_demand(page: Page, served: Served) -> None:
    parent, children = start_batch(served, [None] * 130)
    hold_time(page)
    open_run(page, served, parent)

    rows = page.locator("section.children-box tbody tr")
    expect(rows).to_have_count(100)
    expect(page.locator("#children-note")).to_contain_text("100 listed so far.")
    more = page.get_by_role("button", name="Show more child runs")
    more.click()
    expect(rows).to_have_count(130)
    expect(more).to_be_hidden()
    expect(page.locator("#children-note")).to_contain_text("130 listed.")
    expect(rows.last.get_by_role("link")).to_have_text(children[129])
    # The pages read stay read as the page refreshes.
    service = served.runtime.service
    service.resume(children[120], {"ok": True})
    wait_until(lambda: service.get(children[120]).status == "completed", 30, "child 120 to end")
    page.clock.run_for(1_000)
    expect(child_row(page, 120).locator(".status")).to_have_text("completed")
    expect(rows).to_have_count(130)
