"""The runs list: newest first, filtered by status and workflow, paged, and a run found by
its id."""

from __future__ import annotations

from playwright.sync_api import Page, Route, expect

from tests.browser.server import Served
from tests.browser.support import start_settled, use_key


def rows(page: Page) -> list[str]:
    """The run ids the list shows, top to bottom."""
    ids: list[str] = page.locator("table.runs tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.run)"
    )
    return ids


def test_the_list_filters_by_status_and_workflow_and_finds_a_run(
    page: Page, served: Served
) -> None:
    first_loop = start_settled(served, "loop", "completed")
    review = start_settled(served, "review", "paused")
    broken = start_settled(served, "broken", "failed")
    last_loop = start_settled(served, "loop", "completed")
    page.goto(f"{served.url}/ui")
    use_key(page)

    expect(page.locator("table.runs tbody tr")).to_have_count(4)
    assert rows(page) == [last_loop, broken, review, first_loop]  # newest first
    expect(page.locator(f'tr[data-run="{broken}"] .status')).to_have_text("failed")

    page.get_by_label("Status").select_option("paused")
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    assert rows(page) == [review]
    assert "status=paused" in page.url

    page.get_by_label("Status").select_option("")
    page.get_by_label("Workflow").select_option("loop")
    expect(page.locator("table.runs tbody tr")).to_have_count(2)
    assert rows(page) == [last_loop, first_loop]

    page.get_by_label("Status").select_option("failed")
    expect(page.get_by_text("No runs match.")).to_be_visible()

    page.get_by_label("Find a run").fill(review)
    page.get_by_role("button", name="Open").click()
    expect(page.get_by_role("heading", name=f"Run {review}")).to_be_visible()
    page.get_by_role("link", name="← all runs").click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()


def test_an_unknown_run_id_says_so(page: Page, served: Served) -> None:
    page.goto(f"{served.url}/ui")
    use_key(page)
    page.get_by_label("Find a run").fill("no-such-run")
    page.get_by_role("button", name="Open").click()
    expect(page.get_by_role("alert")).to_have_text("no run 'no-such-run' (HTTP 404)")


def test_the_list_pages_through_older_runs(page: Page, served: Served) -> None:
    service = served.runtime.service
    started = [service.start("nightly").record.run_id for _ in range(53)]
    page.goto(f"{served.url}/ui")
    use_key(page)

    expect(page.locator("table.runs tbody tr")).to_have_count(50)
    newest = rows(page)
    assert set(newest) <= set(started)
    page.get_by_role("link", name="Older →").click()
    expect(page.locator("table.runs tbody tr")).to_have_count(3)
    assert set(rows(page)) == set(started) - set(newest)
    expect(page.get_by_role("link", name="Older →")).to_have_count(0)
    page.get_by_role("link", name="← Newer").click()
    expect(page.locator("table.runs tbody tr")).to_have_count(50)
    assert rows(page) == newest


def test_a_list_still_loading_does_not_draw_over_the_run_opened_meanwhile(
    page: Page, served: Served
) -> None:
    """The list's read comes back after the user has moved to a run: the run page stays."""
    run_id = start_settled(served, "review", "paused")
    held: list[Route] = []

    def hold_the_first(route: Route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route("**/runs?*", hold_the_first)
    page.goto(f"{served.url}/ui")
    with page.expect_request("**/runs?*"):
        use_key(page)
    page.evaluate("(id) => { window.location.hash = `#/runs/${id}`; }", run_id)  # as a link does
    expect(page.locator("#refresh")).to_contain_text("next in 1 s")  # the run is drawn
    assert held, "the list's read was not made"

    with page.expect_response("**/runs?*") as answered:
        held[0].continue_()
    answered.value.finished()
    page.wait_for_function(  # the page itself has the whole answer (its resource timing)
        "() => performance.getEntriesByType('resource')"
        ".some((entry) => entry.name.includes('/runs?') && entry.responseEnd > 0)"
    )
    for _ in range(3):  # and a few turns of its event loop: the answer's handlers have run
        page.evaluate("() => new Promise((done) => setTimeout(done))")

    # read at once, not retried: the run page redraws itself at its next refresh
    assert page.get_by_role("heading", name="Runs").count() == 0
    assert page.get_by_role("heading", name=f"Run {run_id}").count() == 1
