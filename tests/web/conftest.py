"""Browser fixtures: one Debian chromium per session, a fresh context (clean localStorage)
per test, driving the page served by the real `hearth serve` fixture.

`playwright install` cannot run on these machines, so the browser is the system's chromium.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[sync_api.Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("chromium is not installed (make browser)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def context(browser: sync_api.Browser) -> Iterator[sync_api.BrowserContext]:
    context = browser.new_context(viewport={"width": 1100, "height": 760}, accept_downloads=True)
    context.set_default_timeout(20_000)
    yield context
    context.close()


@pytest.fixture
def page(context: sync_api.BrowserContext) -> Iterator[sync_api.Page]:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    # An uncaught exception in the page is a bug even when the test's checks passed.
    assert not errors, f"uncaught errors in the page: {errors}"
