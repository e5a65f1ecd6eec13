"""A thinking model's reasoning on the chat page: live in a block of its own, folded after."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import R1_TEMPLATE, start_server, with_template


@pytest.fixture(scope="module")
def r1_server(real_templates: Path, tmp_path_factory: pytest.TempPathFactory):
    """The bundled model with a DeepSeek-R1 distill's template: its prompt opens `<think>`,
    so a short reply is all reasoning."""
    folder = tmp_path_factory.mktemp("r1-web")
    model = with_template(real_templates / R1_TEMPLATE, folder / "r1.gguf")
    running = start_server(folder, "--model", str(model), "--n-ctx", "1024")
    yield running
    running.stop()


def test_reasoning_shows_in_a_thinking_block_not_in_the_answer(open_chat, r1_server):
    chat = open_chat(url=r1_server.url, max_tokens=16)
    chat.type_and_send("What is the capital of France?")
    block = chat.page.locator(".message.assistant .thinking")
    block.wait_for(state="visible", timeout=90_000)
    chat.wait_until_idle()
    thought = chat.page.locator(".message.assistant .thinking-text").text_content() or ""
    assert thought.strip() and "think>" not in thought
    body = chat.page.locator(".message.assistant .body").inner_text()
    assert "think>" not in body
