"""The sidebar of conversations, export, and the page on a phone and in the dark."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e]


def stored(page) -> list[dict]:
    return json.loads(page.evaluate("localStorage.getItem('hearth.conversations.v1')") or "[]")


def test_new_chat_rename_and_delete_are_kept_in_local_storage(open_chat):
    chat = open_chat(max_tokens=6)
    chat.send("First question")
    chat.page.locator("#new-chat").click()
    chat.send("Second question")
    items = chat.page.locator("#conversation-list .conversation .open")
    assert items.all_inner_texts() == ["Second question", "First question"]

    chat.page.locator(".conversation").nth(1).locator("button.rename").click()
    chat.page.locator(".rename-input").fill("Renamed chat")
    chat.page.locator(".rename-input").press("Enter")
    assert items.all_inner_texts() == ["Second question", "Renamed chat"]

    items.nth(1).click()
    expect(chat.page.locator("#chat-title")).to_have_text("Renamed chat")
    assert chat.page.locator(".message.user .body").inner_text() == "First question"

    chat.page.once("dialog", lambda dialog: dialog.accept())
    chat.page.locator(".conversation").nth(0).locator("button.delete").click()
    assert items.all_inner_texts() == ["Renamed chat"]
    assert [c["title"] for c in stored(chat.page) if c["messages"]] == ["Renamed chat"]

    chat.page.reload()
    chat.wait_for_models()
    assert items.all_inner_texts() == ["Renamed chat"]


def test_a_conversation_exports_as_markdown_and_as_json(open_chat, tmp_path):
    chat = open_chat(max_tokens=6)
    reply = chat.send("Export me")
    chat.page.locator("#toggle-settings").click()

    with chat.page.expect_download() as download:
        chat.page.locator("#export-md").click()
    assert download.value.suggested_filename == "export-me.md"
    markdown = tmp_path / "chat.md"
    download.value.save_as(markdown)
    text = markdown.read_text()
    assert text.startswith("# Export me\n")
    assert "## You\n\nExport me\n" in text and reply.strip().split("\n")[0] in text

    with chat.page.expect_download() as download:
        chat.page.locator("#export-json").click()
    exported = tmp_path / "chat.json"
    download.value.save_as(exported)
    data = json.loads(exported.read_text())
    assert data["title"] == "Export me"
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    assert data["messages"][0]["content"] == "Export me"


def tab_to(page, selector: str, key: str = "Tab", limit: int = 40) -> None:
    """Press Tab (or Shift+Tab) until the element matching selector has the focus."""
    target = page.locator(selector)
    for _ in range(limit):
        if target.evaluate("node => node === document.activeElement"):
            return
        page.keyboard.press(key)
    raise AssertionError(f"{selector} cannot be reached with {key}")


def test_the_whole_page_works_from_the_keyboard(open_chat):
    chat = open_chat(max_tokens=300)
    page, keyboard = chat.page, chat.page.keyboard
    expect(page.locator("#input")).to_be_focused()
    keyboard.type("Write a long story about a cat, in many paragraphs.")
    keyboard.press("Enter")
    expect(page.locator(".message.assistant .body")).to_have_text(re.compile(r"\S{3}"))
    keyboard.press("Escape")
    chat.wait_until_idle()
    assert "stopped" in page.locator(".message.assistant .stats").inner_text()

    tab_to(page, "#new-chat", key="Shift+Tab")
    keyboard.press("Enter")
    expect(page.locator("#chat-title")).to_have_text("New chat")
    expect(page.locator("#input")).to_be_focused()
    tab_to(page, "#toggle-settings", key="Shift+Tab")
    keyboard.press("Enter")
    tab_to(page, "#max-tokens")
    keyboard.press("Control+A")
    keyboard.type("6")
    tab_to(page, "#input")
    keyboard.type("Second chat")
    keyboard.press("Enter")
    chat.wait_until_idle()
    assert page.evaluate("JSON.parse(localStorage.getItem('hearth.settings.v1')).maxTokens") == 6

    tab_to(page, "#conversation-list .conversation:nth-child(2) .open", key="Shift+Tab")
    keyboard.press("Enter")
    expect(page.locator("#chat-title")).to_have_text(re.compile("^Write a long story"))


def test_on_a_phone_the_sidebar_is_a_drawer_and_nothing_overflows(browser, server):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    try:
        page = context.new_page()
        page.goto(f"{server.url}/")
        page.locator("#model option").first.wait_for(state="attached")
        expect(page.locator("#sidebar")).not_to_be_visible()
        expect(page.locator("#input")).to_be_visible()
        expect(page.locator("#send")).to_be_in_viewport()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390

        page.locator("#toggle-sidebar").click()
        expect(page.locator("#sidebar")).to_be_visible()
        page.locator("#new-chat").click()
        expect(page.locator("#sidebar")).not_to_be_visible()
    finally:
        context.close()


@pytest.mark.parametrize(("scheme", "dark"), [("dark", True), ("light", False)])
def test_colours_follow_the_system_light_or_dark_preference(browser, server, scheme, dark):
    context = browser.new_context(color_scheme=scheme)
    try:
        page = context.new_page()
        page.goto(f"{server.url}/")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        red, green, blue = (int(part) for part in background[4:-1].split(",")[:3])
        assert (red + green + blue < 3 * 128) == dark, background
    finally:
        context.close()
