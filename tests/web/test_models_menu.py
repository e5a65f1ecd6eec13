"""The page's model menu with several models: which are loaded, and a model loading on demand."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import GEMMA, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, gemma_models_dir):
    server = start_server(
        tmp_path_factory.mktemp("menu"),
        "--model",
        "smollm2",
        "--models-dir",
        str(gemma_models_dir),
        "--max-loaded-models",
        "1",
        "--n-ctx",
        "1024",
    )
    yield server
    server.stop()


def group(chat, model: str):
    return chat.page.locator(f'#model optgroup[data-model="{model}"]')


def test_menu_shows_what_is_loaded_and_a_reply_waits_for_its_model_to_load(open_chat, two_models):
    chat = open_chat(two_models.url, max_tokens=8)
    expect(group(chat, "smollm2")).to_have_attribute("label", "smollm2 · loaded")
    expect(group(chat, GEMMA)).to_have_attribute("label", f"{GEMMA} · not loaded")
    chat.page.locator("#model").select_option(f"{GEMMA}:chat-with-bob")
    chat.type_and_send("What is the capital of France?")
    expect(chat.page.locator(".loading-model")).to_have_text("loading model…")
    chat.wait_until_idle()
    assert chat.replies()[-1].strip()
    # Only one model may be resident here: Gemma took SmolLM2's place, and the menu says so.
    expect(group(chat, GEMMA)).to_have_attribute("label", f"{GEMMA} · loaded")
    expect(group(chat, "smollm2")).to_have_attribute("label", "smollm2 · not loaded")
