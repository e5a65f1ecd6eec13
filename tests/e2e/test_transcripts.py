"""Transcript prompts through the real server: stops that never leak, trimming, fitting."""

from __future__ import annotations

import httpx
import openai
import pytest

from hearth.prompts import load_chat_format
from hearth.prompts.base import Message
from tests.conftest import start_server

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api, api_key="-", max_retries=0)


def test_bob_reply_ends_where_the_model_starts_the_users_line(client, model_id):
    messages = [{"role": "user", "content": QUESTION}]
    bob = load_chat_format("chat-with-bob", model_template=None)
    rendered = bob.render([Message("user", QUESTION)])
    # What the model writes with no stop at all: its answer, then the User's next line.
    raw = (
        client.completions.create(
            model=model_id, prompt=rendered.text, max_tokens=80, temperature=0
        )
        .choices[0]
        .text
    )
    assert "\nUser:" in raw, raw
    expected = raw.split("\nUser:")[0].strip()

    chat_id = f"{model_id}:chat-with-bob"
    whole = client.chat.completions.create(
        model=chat_id, messages=messages, max_tokens=80, temperature=0
    )
    assert whole.choices[0].message.content == expected
    assert whole.choices[0].finish_reason == "stop"

    deltas, finishes = [], []
    for chunk in client.chat.completions.create(
        model=chat_id, messages=messages, max_tokens=80, temperature=0, stream=True
    ):
        for choice in chunk.choices:
            deltas.append(choice.delta.content or "")
            finishes.append(choice.finish_reason)
    assert "".join(deltas) == expected
    assert [f for f in finishes if f] == ["stop"]
    # Not even the newline that began the stop went out before being taken back.
    assert not "".join(deltas).endswith(("\n", "\nU", "\nUser"))


def test_multi_turn_transcript_chat_answers_and_trims(client, model_id):
    reply = client.chat.completions.create(
        model=f"{model_id}:chat-with-bob",
        messages=[
            {"role": "system", "content": "Bob answers in one short sentence."},
            {"role": "user", "content": "Hello Bob!\nI have two questions."},
            {"role": "assistant", "content": "Hello! Go ahead."},
            {"role": "user", "content": "What colour is the sky on a clear day?"},
        ],
        max_tokens=60,
        temperature=0,
    )
    content = reply.choices[0].message.content
    assert content and content == content.strip()
    assert "Bob:" not in content and "User:" not in content


def test_long_conversation_is_refused_unless_truncation_auto_drops_oldest_turns(tmp_path, model_id):
    """A chat longer than the context used to answer 200 with old turns silently dropped."""
    small = start_server(tmp_path, "--n-ctx", "512", "--parallel", "1")
    try:
        filler = "Tell me about the weather in a long paragraph with many details please. " * 3
        messages = []
        for i in range(12):
            messages += [
                {"role": "user", "content": f"Question {i}. {filler}"},
                {"role": "assistant", "content": f"Answer {i}. It was sunny and mild all day."},
            ]
        messages.append({"role": "user", "content": "And tomorrow?"})
        body = {
            "model": f"{model_id}:chat-with-bob",
            "messages": messages,
            "max_tokens": 32,
            "temperature": 0,
        }
        refused = httpx.post(f"{small.api}/chat/completions", json=body, timeout=120)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "context_length_exceeded"
        assert refused.json()["error"]["param"] == "messages"

        body["truncation"] = "auto"
        response = httpx.post(f"{small.api}/chat/completions", json=body, timeout=120)
        assert response.status_code == 200, response.text
        dropped = int(response.headers["x-hearth-dropped-messages"])
        assert 0 < dropped < len(messages)
        assert dropped % 2 == 0  # whole exchanges go, oldest first
        usage = response.json()["usage"]
        assert usage["prompt_tokens"] + 32 <= 512

        alone = {**body, "messages": [{"role": "user", "content": "word " * 900}]}
        refused = httpx.post(f"{small.api}/chat/completions", json=alone, timeout=60)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "context_length_exceeded"
    finally:
        small.stop()
