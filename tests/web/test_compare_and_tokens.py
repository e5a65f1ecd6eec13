"""Compare mode (two models side by side, a judge) and the token view, in a real browser."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_compare_streams_two_models_side_by_side_and_a_judge_gives_a_verdict(open_chat):
    chat = open_chat(max_tokens=12)
    page = chat.page
    page.locator("#toggle-compare").click()
    expect(page.locator("#toggle-compare")).to_have_attribute("aria-pressed", "true")
    page.locator("#model").select_option("smollm2")
    page.locator("#compare-model").select_option("smollm2:chat-with-bob")
    page.locator("#compare-judge").select_option("smollm2")
    chat.type_and_send("What is the capital of France?")
    expect(page.locator("#status")).to_have_text("Comparison finished.", timeout=180_000)
    expect(page.locator("#compare-a .who")).to_have_text("smollm2")
    expect(page.locator("#compare-b .who")).to_have_text("smollm2:chat-with-bob")
    for side in ("a", "b"):
        assert page.locator(f"#compare-{side} .body").inner_text().strip()
        expect(page.locator(f"#compare-{side} .stats")).to_contain_text("tokens")
    verdict = page.locator("#compare-verdict")
    expect(verdict).to_contain_text("Judge smollm2:")
    assert verdict.get_attribute("data-winner") in ("a", "b", "tie")
    # A comparison is not a conversation: the chat stays as it was, hidden meanwhile.
    expect(page.locator("#messages")).to_be_hidden()
    page.locator("#toggle-compare").click()
    expect(page.locator("#messages .message")).to_have_count(0)


def test_token_view_shows_reply_tokens_with_ids_and_the_prompt_with_control_tokens(open_chat):
    chat = open_chat(max_tokens=6)
    page = chat.page
    page.locator("#model").select_option("smollm2:template")
    page.locator("#toggle-tokens").click()
    chat.send("Say hello.")
    tokens = page.locator(".message.assistant .token")
    expect(tokens.first).to_be_visible()
    captions = tokens.locator("small").all_inner_texts()
    assert 1 <= len(captions) <= 6
    assert all(re.fullmatch(r"(\d+|\?) · [\d.]+%", c) for c in captions), captions
    assert any(c.split()[0].isdigit() for c in captions)  # ids found for the reply's pieces
    assert "alternatives" in tokens.first.get_attribute("title")
    page.locator("#prompt-view summary").click()
    special = page.locator("#prompt-tokens .token.special .piece")
    expect(special.first).to_be_visible()
    assert set(special.all_inner_texts()) == {"<|im_start|>", "<|im_end|>"}
    expect(page.locator("#prompt-tokens .token-count")).to_contain_text("control tokens")
    # Off again: the reply reads as text.
    page.locator("#toggle-tokens").click()
    expect(page.locator(".message.assistant .token")).to_have_count(0)
    assert chat.replies()[-1].strip()
