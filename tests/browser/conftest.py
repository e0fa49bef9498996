"""Fixtures of the run inspector's browser tests: one headless Chromium for the package, a
fresh server and a fresh browser context (no stored key) for each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from tests.browser.chromium import launch
from tests.browser.server import Served, serving

expect.set_options(timeout=15_000)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    # Package-scoped, not session-scoped: Playwright's synchronous API keeps an event loop
    # marked running in this thread while it is started, which would make every later
    # asyncio test of the session fail ("cannot be called from a running event loop").
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path) as served:
        yield served


@pytest.fixture
def console_errors() -> list[str]:
    """What the page reported as errors (a script failing, a Content-Security-Policy
    violation)."""
    return []


@pytest.fixture
def page(browser: Browser, console_errors: list[str]) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()

    def record(message: ConsoleMessage) -> None:
        # A refused request (a 401 before the key is given) is the page's to explain, not
        # an error of the page; a script error or a policy violation is.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            console_errors.append(message.text)

    page.on("console", record)
    page.on("pageerror", lambda error: console_errors.append(str(error)))
    yield page
    context.close()
