"""End to end: the official `openai` client against a real `hearth serve` on the real model."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

EOS = "2"  # SmolLM2's <|im_end|>; banning it makes a reply run to max_tokens
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0)


def streamed_text(stream) -> tuple[str, list[str | None], list]:
    text, finishes, usage = [], [], []
    for chunk in stream:
        if chunk.usage is not None:
            usage.append(chunk.usage)
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            finishes.append(choice.finish_reason)
    return "".join(text), finishes, usage


def wait_until_idle(server, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = httpx.get(f"{server.url}/health").json()
        if health["slots_busy"] == 0 and health["waiting"] == 0:
            return health
        time.sleep(0.05)
    raise AssertionError(f"server still busy: {health}")


def test_chat_answers_with_usage_that_adds_up(client, model_id):
    reply = client.chat.completions.create(model=model_id, messages=QUESTION, max_tokens=48)
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content.strip()
    assert reply.choices[0].finish_reason in ("stop", "length")
    usage = reply.usage
    assert usage.prompt_tokens > 5 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert "<|im_end|>" not in reply.choices[0].message.content


def test_streamed_text_equals_non_streamed_text_at_temperature_zero(client, model_id):
    args = {"model": model_id, "messages": QUESTION, "max_tokens": 64, "temperature": 0, "seed": 11}
    whole = client.chat.completions.create(**args).choices[0].message.content
    text, finishes, usage = streamed_text(
        client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True})
    )
    assert text == whole
    assert [f for f in finishes if f] in (["stop"], ["length"])
    assert finishes[-1] is not None  # finish_reason comes once, on the last choice chunk
    assert len(usage) == 1
    assert usage[0].total_tokens == usage[0].prompt_tokens + usage[0].completion_tokens


def test_same_seed_gives_the_same_sampled_text(client, model_id):
    args = {
        "model": model_id,
        "messages": QUESTION,
        "max_tokens": 40,
        "temperature": 1.0,
        "seed": 1234,
    }
    first = client.chat.completions.create(**args).choices[0].message.content
    second = client.chat.completions.create(**args).choices[0].message.content
    assert first == second


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequence_ends_the_reply_before_it(client, model_id, stream):
    prompt = "The days of the week are Monday, Tuesday,"
    args = {"model": model_id, "prompt": prompt, "max_tokens": 40, "temperature": 0}
    free = client.completions.create(**args).choices[0].text
    words = free.split()
    assert len(words) >= 4, free
    stop = " " + words[2]  # a stop the model reaches mid-reply
    expected = free[: free.index(stop)]
    if stream:
        chunks = list(client.completions.create(**args, stop=[stop], stream=True))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        finish = [
            c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
        ]
    else:
        reply = client.completions.create(**args, stop=[stop])
        text, finish = reply.choices[0].text, [reply.choices[0].finish_reason]
    assert text == expected
    assert stop.strip() not in text[len(expected) - 1 :]
    assert finish == ["stop"]


def test_max_tokens_gives_finish_reason_length(client, model_id):
    reply = client.chat.completions.create(
        model=model_id, messages=QUESTION, max_tokens=5, logit_bias={EOS: -100}
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 5


def test_four_concurrent_streams_all_complete_in_full(server, model_id):
    async def one(aclient: openai.AsyncOpenAI, i: int) -> tuple[str, str | None, int]:
        stream = await aclient.chat.completions.create(
            model=model_id,
            messages=[{"role": "user", "content": f"Tell story number {i}."}],
            max_tokens=64,
            logit_bias={EOS: -100},
            stream=True,
            stream_options={"include_usage": True},
        )
        text, finish, tokens = [], None, 0
        async for chunk in stream:
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        return "".join(text), finish, tokens

    async def all_four():
        # The client is opened and closed inside this event loop: a client left open would
        # be collected later, in another test's loop, and its closing would fail there.
        async with openai.AsyncOpenAI(base_url=server.api, api_key="-", max_retries=0) as aclient:
            return await asyncio.gather(*(one(aclient, i) for i in range(4)))

    results = asyncio.run(all_four())
    for text, finish, tokens in results:
        assert finish == "length"
        assert tokens == 64
        assert text


def test_client_abort_frees_the_server(server, client, model_id):
    stream = client.chat.completions.create(
        model=model_id,
        messages=QUESTION,
        max_tokens=1500,
        logit_bias={EOS: -100},
        stream=True,
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    wait_until_idle(server)
    reply = client.chat.completions.create(model=model_id, messages=QUESTION, max_tokens=8)
    assert reply.choices[0].message.content


def test_non_streaming_client_that_hangs_up_frees_its_slot(server, model_id):
    body = {"model": model_id, "messages": QUESTION, "max_tokens": 1500, "logit_bias": {EOS: -100}}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.api}/chat/completions", json=body, timeout=0.5)
    wait_until_idle(server)


def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(server, client, model_id):
    raw = httpx.post(
        f"{server.api}/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"

    with pytest.raises(openai.BadRequestError) as wrong_type:
        client.chat.completions.create(model=model_id, messages=QUESTION, temperature="warm")
    assert wrong_type.value.body["param"] == "temperature"

    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)
    assert unknown.value.body["code"] == "model_not_found"

    too_long = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(openai.BadRequestError) as overflow:
        client.completions.create(model=model_id, prompt=too_long[0]["content"], max_tokens=8)
    assert overflow.value.body["code"] == "context_length_exceeded"
    assert "2048" in overflow.value.body["message"]

    reply = client.chat.completions.create(model=model_id, messages=QUESTION, max_tokens=8)
    assert reply.choices[0].message.content


def test_chat_longer_than_the_context_is_400_unless_truncation_is_auto(server, client, model_id):
    """The model's own template, through the openai client: no silent truncation."""
    filler = "Tell me about the weather today in many words. " * 12
    messages = []
    for i in range(20):
        messages += [
            {"role": "user", "content": f"Question {i}. {filler}"},
            {"role": "assistant", "content": f"Answer {i}. {filler}"},
        ]
    messages.append({"role": "user", "content": "And tomorrow?"})
    with pytest.raises(openai.BadRequestError) as overflow:
        client.chat.completions.create(model=model_id, messages=messages, max_tokens=8)
    assert overflow.value.body["code"] == "context_length_exceeded"
    assert overflow.value.body["param"] == "messages"
    assert "2048" in overflow.value.body["message"]

    raw = client.chat.completions.with_raw_response.create(
        model=model_id, messages=messages, max_tokens=8, extra_body={"truncation": "auto"}
    )
    dropped = int(raw.headers["x-hearth-dropped-messages"])
    assert 0 < dropped < len(messages) and dropped % 2 == 0
    reply = raw.parse()
    assert reply.usage.prompt_tokens + 8 <= 2048


def test_health_and_models_answer_while_a_generation_runs(server, client, model_id):
    stream = client.chat.completions.create(
        model=model_id, messages=QUESTION, max_tokens=300, logit_bias={EOS: -100}, stream=True
    )
    next(iter(stream))
    started = time.perf_counter()
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert httpx.get(f"{server.api}/models").status_code == 200
    answered_in = time.perf_counter() - started
    remaining = sum(1 for _ in stream)
    # Both answered while the stream still had most of its tokens to go.
    assert remaining > 100, (answered_in, remaining)


def test_wrong_api_key_is_401_and_the_server_keeps_serving(tmp_path, model_id):
    from tests.conftest import start_server

    keyed = start_server(tmp_path, "--api-key", "s3cret", "--n-ctx", "512", "--parallel", "1")
    try:
        bad = openai.OpenAI(base_url=keyed.api, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        good = openai.OpenAI(base_url=keyed.api, api_key="s3cret", max_retries=0)
        reply = good.chat.completions.create(model=model_id, messages=QUESTION, max_tokens=4)
        assert reply.choices[0].message.content is not None
    finally:
        keyed.stop()
