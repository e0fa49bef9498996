"""The inspector asks for the API key when the server needs one, says clearly when a key is
wrong, keeps it for the tab only, and serves the API's own docs (Swagger UI) offline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from refluxo.api.routes import ROUTES
from tests.browser.server import API_KEY, Served, serving
from tests.browser.support import use_key


def test_a_wrong_api_key_shows_a_clear_message(page: Page, served: Served) -> None:
    served.runtime.service.start("loop")
    page.goto(f"{served.url}/ui")
    notice = page.get_by_role("alert")
    expect(notice).to_contain_text("The server refused the API key (missing API key")
    expect(page.locator("table.runs")).to_have_count(0)

    use_key(page, "not-the-key-0123456789")
    expect(notice).to_have_text(
        "The server refused the API key (invalid API key). "
        "Enter the server's API key (REFLUXO_API_KEY) in the field above."
    )
    expect(page.locator("table.runs")).to_have_count(0)

    use_key(page)
    expect(notice).to_be_hidden()
    expect(page.locator("table.runs tbody tr")).to_have_count(1)


def test_a_key_with_a_character_no_key_has_is_refused_in_its_field(
    page: Page, served: Served
) -> None:
    """A pasted curly quote or non-breaking space: the field says which character is wrong,
    the key in use stays, and nothing is blamed on the network."""
    served.runtime.service.start("loop")
    page.goto(f"{served.url}/ui")
    use_key(page)
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    field = page.get_by_label("API key")
    error = page.locator("#api-key-error")

    use_key(page, API_KEY + "\u2019")
    expect(error).to_contain_text("The key holds the character \u201c\u2019\u201d (U+2019)")
    expect(error).to_contain_text("printable ASCII")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_be_focused()
    expect(page.get_by_role("alert")).to_be_hidden()
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    assert page.evaluate("sessionStorage.getItem('refluxo.apiKey')") == API_KEY

    use_key(page, "inspector\u00a0key")
    expect(error).to_contain_text("The key holds the character (U+00A0)")
    assert page.evaluate("sessionStorage.getItem('refluxo.apiKey')") == API_KEY

    use_key(page)
    expect(error).to_be_hidden()
    expect(field).to_have_attribute("aria-invalid", "false")
    page.reload()
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    expect(page.get_by_role("alert")).to_be_hidden()


def test_the_key_is_kept_for_the_tab_and_sent_as_a_bearer_token(page: Page, served: Served) -> None:
    page.goto(f"{served.url}/ui")
    use_key(page)
    expect(page.get_by_text("No runs match.")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('refluxo.apiKey')") == API_KEY
    with page.expect_request(lambda request: request.url.endswith("/workflows")) as sent:
        page.reload()
    assert sent.value.headers["authorization"] == f"Bearer {API_KEY}"
    expect(page.get_by_label("API key")).to_have_value(API_KEY)

    page.get_by_role("button", name="Forget").click()
    expect(page.get_by_role("alert")).to_contain_text("missing API key")
    assert page.evaluate("sessionStorage.getItem('refluxo.apiKey')") is None


@pytest.fixture
def keyless(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path, api_key=None) as served:
        yield served


def test_a_server_without_a_key_needs_none_from_this_machine(page: Page, keyless: Served) -> None:
    keyless.runtime.service.start("loop")
    page.goto(f"{keyless.url}/")
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    expect(page.get_by_role("alert")).to_be_hidden()


def test_swagger_ui_shows_the_apis_operations(
    page: Page, served: Served, console_errors: list[str]
) -> None:
    page.goto(f"{served.url}/ui")
    use_key(page)
    page.get_by_role("link", name="API docs").click()
    expect(page).to_have_url(f"{served.url}/docs")
    expect(page.locator(".opblock-summary-path", has_text="/runs/{runId}/graph")).to_be_visible()
    operations = [route for route in ROUTES if route.documented]
    expect(page.locator(".opblock")).to_have_count(len(operations))
    expect(page.locator(".opblock-summary-path", has_text="/ui")).to_have_count(0)

    # "Try it out" sends the key the inspector keeps for this tab.
    served.runtime.service.start("loop")
    page.locator(".opblock-summary-path", has_text="/workflows").click()
    page.locator(".try-out__btn").click()
    page.locator(".execute").click()
    expect(page.locator(".live-responses-table tbody .response-col_status")).to_have_text("200")
    assert console_errors == []
