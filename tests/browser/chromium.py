"""Headless Chromium for the inspector's tests and screenshot: Debian's ``chromium`` package.

Playwright's own browser builds are downloaded from a site this project does not rely on;
the distribution's Chromium is installed by ``make browser`` (``apt-get install chromium``)
and driven by Playwright through ``executable_path``.
"""

from __future__ import annotations

import os
import shutil

from playwright.sync_api import Browser, Playwright

ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
)
"""No sandbox (the tests may run as root), and no traffic of Chromium's own."""


def chromium_path() -> str | None:
    """The Chromium to drive: ``REFLUXO_CHROMIUM``, else ``chromium`` on the PATH."""
    configured = os.environ.get("REFLUXO_CHROMIUM")
    if configured:
        return configured
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch(playwright: Playwright) -> Browser:
    """Start headless Chromium; raises RuntimeError if none is installed."""
    path = chromium_path()
    if path is None:
        raise RuntimeError("no chromium on the PATH: run `make browser` (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=path, headless=True, args=list(ARGS))
