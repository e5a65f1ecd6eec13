"""The chat page against a real `hearth serve` and the real default model, in chromium.

A 135M model answers briefly and oddly: these tests check what the page does with a
reply, never what the reply says.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECORD_STREAMING = """() => {
  window.__seen = [];
  const observer = new MutationObserver(() => {
    const bodies = document.querySelectorAll('.message.assistant .body');
    const last = bodies[bodies.length - 1];
    window.__seen.push({
      length: last ? last.textContent.length : 0,
      streaming: !document.querySelector('#stop').hidden,
    });
  });
  observer.observe(document.querySelector('#messages'),
                   {childList: true, subtree: true, characterData: true});
}"""


def test_reply_streams_in_piece_by_piece_and_shows_its_token_count_and_speed(open_chat):
    chat = open_chat(max_tokens=32)
    chat.page.evaluate(RECORD_STREAMING)
    chat.page.locator("#input").fill("Tell me about the moon.")
    chat.page.locator("#input").press("Enter")
    chat.page.locator("#stop").wait_for(state="visible")
    chat.wait_until_idle()

    seen = chat.page.evaluate("window.__seen")
    lengths_while_streaming = {s["length"] for s in seen if s["streaming"] and s["length"] > 0}
    assert len(lengths_while_streaming) >= 2, f"the reply arrived in one piece: {seen}"
    assert chat.replies()[-1].strip()
    stats = chat.page.locator(".message.assistant .stats").inner_text()
    assert re.match(r"\d+ tokens · \d+\.\d tokens/s", stats), stats


def test_enter_sends_and_shift_enter_starts_a_new_line(open_chat):
    chat = open_chat(max_tokens=8)
    box = chat.page.locator("#input")
    box.focus()
    chat.page.keyboard.type("first line")
    chat.page.keyboard.press("Shift+Enter")
    chat.page.keyboard.type("second line")
    assert box.input_value() == "first line\nsecond line"
    chat.page.keyboard.press("Enter")
    chat.page.locator(".message.user").wait_for()
    assert chat.page.locator(".message.user .body").inner_text() == "first line\nsecond line"
    assert box.input_value() == ""
    chat.wait_until_idle()


def test_stop_aborts_the_reply_and_the_server_stops_generating(open_chat, server):
    chat = open_chat(max_tokens=400)
    chat.type_and_send("Write a very long story about a dragon, in ten long paragraphs.")
    expect(chat.page.locator(".message.assistant .body")).to_have_text(re.compile(r"\S{3}.{8}"))
    chat.page.locator("#stop").click()
    chat.wait_until_idle(timeout=5_000)

    assert "stopped" in chat.page.locator(".message.assistant .stats").inner_text()
    # The slot is freed at once, long before 400 tokens could have been written.
    deadline = time.monotonic() + 5
    while httpx.get(f"{server.url}/health").json().get("slots_busy") != 0:
        assert time.monotonic() < deadline, "the server kept generating after Stop"
        time.sleep(0.1)
    text = chat.replies()[-1]
    time.sleep(0.5)
    assert chat.replies()[-1] == text, "text kept arriving after Stop"


def test_conversation_is_still_there_after_a_reload(open_chat):
    chat = open_chat(max_tokens=12)
    reply = chat.send("Hello there, what is your name?")
    chat.page.reload()
    chat.wait_for_models()

    sidebar = chat.page.locator("#conversation-list .conversation")
    assert sidebar.count() == 1
    assert sidebar.first.inner_text().startswith("Hello there, what is your name?")
    assert (
        chat.page.locator(".message.user .body").inner_text() == "Hello there, what is your name?"
    )
    assert chat.replies() == [reply]


def test_chosen_model_and_prompt_and_system_prompt_are_what_the_request_carries(open_chat):
    chat = open_chat(max_tokens=12)
    options = chat.page.locator("#model option").all_inner_texts()
    assert "smollm2:chat-with-bob" in options
    chat.page.locator("#model").select_option("smollm2:chat-with-bob")
    chat.page.locator("#toggle-settings").click()
    chat.page.locator("#system").fill("You answer like a pirate.")
    chat.page.locator("#system").dispatch_event("change")

    with chat.page.expect_request("**/v1/chat/completions") as request:
        chat.send("Where is the treasure?")
    body = request.value.post_data_json
    assert body["model"] == "smollm2:chat-with-bob"
    assert body["messages"][0] == {"role": "system", "content": "You answer like a pirate."}
    assert body["messages"][-1] == {"role": "user", "content": "Where is the treasure?"}
    assert body["max_tokens"] == 12 and body["stream"] is True
    assert chat.page.locator(".message.assistant .who").inner_text() == "smollm2:chat-with-bob"

    chat.page.reload()
    chat.wait_for_models()
    assert chat.page.locator("#model").input_value() == "smollm2:chat-with-bob"


def test_regenerate_replaces_the_last_reply_from_the_same_messages(open_chat):
    chat = open_chat(max_tokens=10)
    chat.send("Name a colour.")
    with chat.page.expect_request("**/v1/chat/completions") as request:
        chat.page.locator("button.regenerate").click()
    chat.wait_until_idle()
    assert request.value.post_data_json["messages"] == [
        {"role": "user", "content": "Name a colour."}
    ]
    assert chat.page.locator(".message").count() == 2


def test_edit_and_resend_replaces_the_last_question_and_its_answer(open_chat):
    chat = open_chat(max_tokens=10)
    chat.send("Name a fruit.")
    chat.page.locator(".message.user button.edit").click()
    editor = chat.page.locator(".message.user .edit-input")
    editor.fill("Name a vegetable.")
    with chat.page.expect_request("**/v1/chat/completions") as request:
        editor.press("Enter")
    chat.wait_until_idle()
    assert request.value.post_data_json["messages"] == [
        {"role": "user", "content": "Name a vegetable."}
    ]
    assert chat.page.locator(".message.user .body").all_inner_texts() == ["Name a vegetable."]
    assert chat.page.locator(".message").count() == 2


def test_a_reload_mid_reply_keeps_the_text_so_far_marked_interrupted(open_chat):
    chat = open_chat(max_tokens=400)
    chat.type_and_send("Write a very long story about a wizard, in ten long paragraphs.")
    reply = chat.page.locator(".message.assistant .body")
    expect(reply).to_have_text(re.compile(r"\S{3}.{8}"))
    chat.page.wait_for_timeout(1500)  # the page saves a streaming reply once a second
    chat.page.reload()
    chat.wait_for_models()
    assert len(chat.replies()[-1]) > 10
    assert chat.page.locator(".message.assistant .stats").inner_text() == "interrupted"
    assert chat.page.locator(".message.assistant button.regenerate").is_visible()
