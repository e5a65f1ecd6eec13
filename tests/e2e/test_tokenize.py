"""/tokenize and /detokenize on the real model, in llama.cpp's server's shape."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.e2e

TEXT = "Hello world, ça va? 你好 🙂"


def post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=60)


def test_tokenize_then_detokenize_gives_the_text_back(server):
    tokens = post(server, "/tokenize", {"content": TEXT}).json()["tokens"]
    assert tokens and all(isinstance(t, int) for t in tokens)
    assert post(server, "/detokenize", {"tokens": tokens}).json()["content"] == TEXT


def test_pieces_spell_the_text_and_special_text_is_one_control_token(server):
    pieces = post(server, "/tokenize", {"content": "Hello world", "with_pieces": True}).json()
    assert "".join(p["piece"] for p in pieces["tokens"]) == "Hello world"
    special = post(server, "/tokenize", {"content": "<|im_start|>"}).json()["tokens"]
    literal = post(server, "/tokenize", {"content": "<|im_start|>", "parse_special": False})
    assert len(special) == 1 and len(literal.json()["tokens"]) > 1


def test_a_named_model_and_bad_input_are_answered(server, model_id):
    named = post(server, "/tokenize", {"content": "Hi", "model": model_id})
    assert named.status_code == 200
    missing = post(server, "/tokenize", {"content": "Hi", "model": "nope"})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "model"
    wrong = post(server, "/detokenize", {"tokens": [10**9]})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "tokens"


def test_apply_template_shows_the_prompt_as_the_model_sees_it_with_control_tokens_marked(server):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say <|im_start|> please."},
    ]
    answer = post(server, "/apply-template", {"model": "smollm2:template", "messages": messages})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert "<|im_start|>system\nBe brief.<|im_end|>" in body["prompt"]
    assert "".join(t["piece"] for t in body["tokens"]) == body["prompt"]
    special = [t for t in body["tokens"] if t["special"]]
    assert {t["piece"] for t in special} == {"<|im_start|>", "<|im_end|>"}
    # The template's own markup opens three turns; the user's typed "<|im_start|>" stays text.
    assert [t["piece"] for t in special].count("<|im_start|>") == 3
    missing = post(server, "/apply-template", {"model": "nope", "messages": messages})
    assert missing.status_code == 404
