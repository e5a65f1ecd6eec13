"""Browser fixtures: one Debian chromium per session, a fresh context (clean localStorage)
per test, driving the page served by the real `hearth serve` fixture.

`playwright install` cannot run on these machines, so the browser is the system's chromium.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest

sync_api = pytest.importorskip("playwright.sync_api")

# The machines running the suite are 2 shared cores: a first token can take seconds.
sync_api.expect.set_options(timeout=30_000)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def playwright() -> Iterator[sync_api.Playwright]:
    # One Playwright per session: a second sync_playwright() inside the first one's event
    # loop is refused, so every browser a test needs is launched from this one.
    with sync_api.sync_playwright() as playwright:
        yield playwright


def launch_chromium(playwright: sync_api.Playwright, *extra_args: str) -> sync_api.Browser:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("chromium is not installed (make browser)")
    return playwright.chromium.launch(
        executable_path=executable, args=[*CHROMIUM_ARGS, *extra_args], headless=True
    )


@pytest.fixture(scope="session")
def browser(playwright: sync_api.Playwright) -> Iterator[sync_api.Browser]:
    browser = launch_chromium(playwright)
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


class ChatPage:
    """The chat page as a user drives it: type, press Enter, wait for the reply."""

    def __init__(self, page: sync_api.Page, url: str) -> None:
        self.page = page
        self.url = url

    def open(self) -> ChatPage:
        self.page.goto(f"{self.url}/")
        return self

    def wait_for_models(self) -> ChatPage:
        # Locators, not wait_for_function: the page's CSP forbids the eval that polls with.
        self.page.locator("#model option").first.wait_for(state="attached")
        return self

    def type_and_send(self, text: str) -> None:
        self.page.locator("#input").fill(text)
        self.page.locator("#input").press("Enter")

    def wait_until_idle(self, timeout: float = 90_000) -> None:
        """Until no reply is streaming. The page says so in its live region; a reply can
        finish too quickly for the Stop button ever to be seen."""
        sync_api.expect(self.page.locator("#status")).not_to_have_text(
            "Writing a reply…", timeout=timeout
        )
        self.page.locator("#send").wait_for(state="visible", timeout=timeout)

    def send(self, text: str) -> str:
        """Send a message and return the finished reply's text."""
        self.type_and_send(text)
        self.wait_until_idle()
        return self.replies()[-1]

    def replies(self) -> list[str]:
        return self.page.locator(".message.assistant .body").all_inner_texts()

    def notice(self) -> str:
        notice = self.page.locator("#notice")
        notice.wait_for(state="visible")
        return notice.inner_text()


@pytest.fixture
def open_chat(page: sync_api.Page, server):
    """Open the page on `url` (default: the session server) with short replies preset,
    so the suite stays quick on 2 shared cores."""

    def open_(url: str | None = None, max_tokens: int = 24, models: bool = True) -> ChatPage:
        settings = json.dumps({"maxTokens": max_tokens, "temperature": 0.7})
        # Runs before the page's own scripts on every load; a reload keeps what the page saved.
        page.add_init_script(
            f"localStorage.getItem('hearth.settings.v1') || "
            f"localStorage.setItem('hearth.settings.v1', {json.dumps(settings)})"
        )
        chat = ChatPage(page, url or server.url).open()
        return chat.wait_for_models() if models else chat

    return open_
