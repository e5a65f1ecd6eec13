"""Model output is untrusted: HTML in a reply must show as text and never run.

Three ways a hostile reply reaches the page: stored in localStorage from an earlier
session, streamed from the server, and written by the real model itself.
"""

from __future__ import annotations

import json
import textwrap

import pytest

pytestmark = [pytest.mark.e2e]

PAYLOAD = (
    '<script>window.__xss = "script"</script>\n\n'
    "<img src=x onerror=\"window.__xss = 'img'\">\n\n"
    '[click me](javascript:window.__xss="link") and <a href="javascript:alert(1)">a</a>'
)


def seed_conversation(page, messages: list[dict]) -> None:
    conversation = {
        "id": "seeded",
        "title": "Seeded",
        "created": 1,
        "updated": 2,
        "model": "smollm2",
        "messages": messages,
    }
    value = json.dumps(json.dumps([conversation]))
    page.add_init_script(f"localStorage.setItem('hearth.conversations.v1', {value})")


def assert_inert(page, requested: list[str]) -> None:
    messages = page.locator("#messages")
    assert page.evaluate("window.__xss") is None, "script from a reply ran"
    assert messages.locator("script, img, iframe, object, embed").count() == 0
    assert messages.locator("a[href^='javascript']").count() == 0
    assert not [url for url in requested if url.endswith("/x")], "the <img> was loaded"


def record_requests(page) -> list[str]:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    return requested


def test_html_in_a_stored_reply_is_shown_as_text_and_never_runs(page, open_chat):
    requested = record_requests(page)
    seed_conversation(
        page,
        [{"role": "user", "content": PAYLOAD}, {"role": "assistant", "content": PAYLOAD}],
    )
    chat = open_chat()
    reply = chat.replies()[-1]
    assert "<script>window.__xss" in reply and "onerror" in reply
    assert "<script>" in chat.page.locator(".message.user .body").inner_text()
    assert_inert(chat.page, requested)


def test_html_in_a_streamed_reply_is_shown_as_text_and_never_runs(page, open_chat):
    requested = record_requests(page)
    pieces = [PAYLOAD[i : i + 7] for i in range(0, len(PAYLOAD), 7)]
    events = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    events += [{"choices": [{"index": 0, "delta": {"content": piece}}]} for piece in pieces]
    events += [{"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
    body = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(status=200, content_type="text/event-stream", body=body),
    )
    chat = open_chat()
    reply = chat.send("Show me some HTML.")
    assert "<script>window.__xss" in reply and "onerror" in reply
    assert_inert(chat.page, requested)


def test_html_the_real_model_writes_is_shown_as_text_and_never_runs(page, open_chat):
    """At temperature 0 SmolLM2 echoes the tag back, so the page renders real model output."""
    requested = record_requests(page)
    chat = open_chat(max_tokens=24)
    chat.page.locator("#toggle-settings").click()
    chat.page.locator("#temperature").fill("0")
    chat.page.locator("#temperature").dispatch_event("change")
    reply = chat.send(
        'Repeat exactly: <img src=x onerror="window.__xss=1"> <script>window.__xss=2</script>'
    )
    assert "<img" in reply, (
        f"no <img tag shown as text in the reply (did the model stop echoing it?): {reply!r}"
    )
    assert_inert(chat.page, requested)


def test_markdown_renders_code_lists_headings_and_only_web_links(page, open_chat, context):
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    reply = textwrap.dedent(
        """\
        ## Steps

        1. **Install** it
        2. Run `hearth serve`

        - *fast*
        - see [the docs](https://example.org/docs) or [this](javascript:alert(1))

        ```python
        print('<b>hi</b>')
        ```"""
    )
    seed_conversation(
        page, [{"role": "user", "content": "How?"}, {"role": "assistant", "content": reply}]
    )
    chat = open_chat()
    body = chat.page.locator(".message.assistant .body")
    assert body.locator("h4").inner_text() == "Steps"
    assert body.locator("ol li").all_inner_texts() == ["Install it", "Run hearth serve"]
    assert body.locator("ol strong").inner_text() == "Install"
    assert body.locator("ol code").inner_text() == "hearth serve"
    assert body.locator("ul em").inner_text() == "fast"
    links = body.locator("a")
    assert links.count() == 1
    assert links.get_attribute("href") == "https://example.org/docs"
    assert "noopener" in links.get_attribute("rel")
    assert "[this](javascript:alert(1))" in body.inner_text()
    assert body.locator(".code-block code").inner_text() == "print('<b>hi</b>')"
    assert body.locator(".code-block b").count() == 0

    body.locator(".code-block button.copy-code").click()
    assert chat.page.evaluate("navigator.clipboard.readText()") == "print('<b>hi</b>')"


def test_every_asset_comes_from_the_hearth_server(page, open_chat, server):
    requested = record_requests(page)
    chat = open_chat(max_tokens=6)
    chat.send("Hi")
    assert requested
    assert all(url.startswith(server.url) for url in requested), requested
