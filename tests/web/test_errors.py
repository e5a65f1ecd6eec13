"""What the page says when the server is gone, busy, or wants a key."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from tests.conftest import start_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def answer_503(page, url_glob: str, message: str, code: str, retry_after: int) -> None:
    """Make the page's requests to `url_glob` get the server's 503, as Hearth words it."""
    body = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
    page.route(
        url_glob,
        lambda route: route.fulfill(
            status=503,
            headers={"Retry-After": str(retry_after)},
            content_type="application/json",
            body=json.dumps(body),
        ),
    )


def test_a_stopped_server_gets_a_clear_cannot_reach_message(open_chat, tmp_path):
    own = start_server(tmp_path, "--n-ctx", "512", "--parallel", "1")
    try:
        chat = open_chat(url=own.url)
    finally:
        own.stop()
    chat.type_and_send("Are you there?")
    chat.wait_until_idle()
    assert "Cannot reach the Hearth server" in chat.notice()
    # The question is kept, ready to retry once the server is back.
    assert chat.page.locator(".message.user .body").inner_text() == "Are you there?"
    assert chat.page.locator(".message.assistant").count() == 0
    assert chat.page.locator(".message.user button.retry").is_visible()


def test_an_unreachable_model_list_says_so_and_retry_loads_it(page, open_chat):
    page.route("**/v1/models", lambda route: route.abort("connectionrefused"))
    chat = open_chat(models=False)
    assert "Cannot reach the Hearth server" in chat.notice()
    page.unroute("**/v1/models")
    page.locator("#notice-action").click()
    chat.wait_for_models()
    expect(page.locator("#notice")).to_be_hidden()


def test_a_busy_server_says_busy_and_when_to_retry(page, open_chat):
    answer_503(page, "**/v1/chat/completions", "All slots are busy.", "server_overloaded", 3)
    chat = open_chat(max_tokens=6)
    chat.type_and_send("Hello?")
    chat.wait_until_idle()
    notice = chat.notice()
    assert "busy" in notice and "All slots are busy." in notice and "3 s" in notice

    page.unroute("**/v1/chat/completions")
    page.locator("#notice-action").click()  # Retry, now against the real server
    chat.wait_until_idle()
    assert chat.page.locator(".message.assistant").count() == 1
    expect(page.locator("#notice")).to_be_hidden()


def test_an_error_mid_reply_keeps_the_partial_text_and_shows_the_error(page, open_chat):
    events = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"content": "Half an ans"}}]},
        {
            "error": {
                "message": "The engine failed.",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        },
    ]
    body = "".join(f"data: {json.dumps(event)}\n\n" for event in events)
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(status=200, content_type="text/event-stream", body=body),
    )
    chat = open_chat()
    assert chat.send("Tell me everything.") == "Half an ans"
    assert "The engine failed." in chat.notice()
    assert "interrupted" in page.locator(".message.assistant .stats").inner_text()


def test_a_server_with_an_api_key_asks_for_it_and_works_once_given(open_chat, tmp_path):
    own = start_server(tmp_path, "--n-ctx", "512", "--parallel", "1", "--api-key", "sesame")
    try:
        chat = open_chat(url=own.url, models=False, max_tokens=6)
        assert "rejected the API key" in chat.notice()
        key = chat.page.locator("#api-key")
        expect(key).to_be_visible()
        expect(key).to_be_focused()

        key.fill("wrong")
        key.dispatch_event("change")
        expect(chat.page.locator("#notice-text")).to_contain_text("Incorrect API key")

        key.fill("sesame")
        key.dispatch_event("change")
        chat.wait_for_models()
        expect(chat.page.locator("#notice")).to_be_hidden()
        assert chat.send("Hello").strip()
    finally:
        own.stop()


def test_a_conversation_longer_than_the_context_says_old_messages_were_left_out(
    page, open_chat, tmp_path
):
    """A 256-token context (the smallest allowed, so the kept prompt is quick to read)
    against a conversation of about 1,500 tokens."""
    own = start_server(tmp_path, "--n-ctx", "256", "--parallel", "1")
    filler = " ".join(["The quick brown fox jumps over the lazy dog."] * 6)
    messages = []
    for turn in range(10):
        messages += [
            {"role": "user", "content": f"Question {turn}: {filler}"},
            {"role": "assistant", "content": f"Answer {turn}: {filler}"},
        ]
    conversation = {"id": "long", "title": "Long", "created": 1, "updated": 2, "messages": messages}
    value = json.dumps(json.dumps([conversation]))
    page.add_init_script(f"localStorage.setItem('hearth.conversations.v1', {value})")
    try:
        chat = open_chat(url=own.url, max_tokens=6)
        with page.expect_response("**/v1/chat/completions") as response:
            chat.send("And the last question?")
    finally:
        own.stop()
    dropped = int(response.value.headers["x-hearth-dropped-messages"])
    assert dropped > 0
    assert f"The {dropped} oldest messages were left out" in chat.notice()


def test_a_page_opened_while_the_model_loads_waits_and_then_works(page, open_chat):
    answer_503(page, "**/v1/models", "The model is still loading.", "model_loading", 1)
    chat = open_chat(models=False)
    assert "still loading" in chat.notice()
    page.unroute("**/v1/models")
    chat.wait_for_models()
    expect(page.locator("#notice")).to_be_hidden()
