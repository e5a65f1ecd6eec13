"""Continuous batching, the prompt cache and admission, through the real runtime."""

from __future__ import annotations

import asyncio
import secrets
import threading

import httpx
import openai
import pytest

from tests.conftest import start_server

EOS = "2"  # SmolLM2's <|im_end|>
STORY = "Once upon a time, in a village by the sea, there lived an old fisherman who"


@pytest.fixture(scope="module")
def single_slot(tmp_path_factory):
    """One slot and a queue of one: small enough to fill on purpose."""
    running = start_server(
        tmp_path_factory.mktemp("single"),
        "--parallel",
        "1",
        "--max-queue",
        "1",
        "--n-ctx",
        "2048",
        "--cache-ram-mib",
        "64",
    )
    yield running
    running.stop()


def complete(url: str, model: str, prompt: str, max_tokens: int = 40, **extra) -> dict:
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, **extra}
    response = httpx.post(f"{url}/v1/completions", json=body, timeout=120)
    response.raise_for_status()
    return response.json()


def fresh_prompts(n: int) -> list[str]:
    # A distinct first word per prompt and per run: nothing is in any cache yet.
    return [f"{secrets.token_hex(3)} story {i}. {STORY}" for i in range(n)]


def test_concurrent_requests_give_the_same_text_as_each_alone(server, single_slot, model_id):
    prompts = fresh_prompts(4)
    alone = [complete(single_slot.url, model_id, p)["choices"][0]["text"] for p in prompts]

    async def together() -> list[str]:
        async with httpx.AsyncClient(timeout=120) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"{server.api}/completions",
                        json={"model": model_id, "prompt": p, "max_tokens": 40, "temperature": 0},
                    )
                    for p in prompts
                )
            )
        return [r.json()["choices"][0]["text"] for r in responses]

    assert asyncio.run(together()) == alone


def test_cached_prefix_gives_the_same_output_as_a_cold_start(server, model_id):
    prompt = fresh_prompts(1)[0]
    cold = complete(server.url, model_id, prompt)
    assert cold["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    warm = complete(server.url, model_id, prompt)
    assert (
        warm["usage"]["prompt_tokens_details"]["cached_tokens"]
        >= cold["usage"]["prompt_tokens"] - 1
    )
    assert warm["choices"][0]["text"] == cold["choices"][0]["text"]


def test_follow_up_turn_reuses_the_conversation_so_far(server, model_id):
    client = openai.OpenAI(base_url=server.api, api_key="-", max_retries=0)
    messages = [
        {"role": "system", "content": f"Session {secrets.token_hex(4)}. You are terse."},
        {"role": "user", "content": "Name a fruit."},
    ]
    first = client.chat.completions.create(model=model_id, messages=messages, max_tokens=16)
    messages += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "Another one?"},
    ]
    second = client.chat.completions.create(model=model_id, messages=messages, max_tokens=16)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= first.usage.prompt_tokens
    assert second.usage.prompt_tokens - cached < 20  # only the new turn was read


def test_a_system_prompt_another_slot_holds_is_copied_not_read_again(server, single_slot, model_id):
    """Two people open chats with the household's long system prompt while the first
    reply is still streaming: the second chat copies the prompt's KV from the busy slot."""
    system = f"House {secrets.token_hex(3)}. " + " ".join(["Answer kindly and briefly."] * 30)
    ann = [{"role": "system", "content": system}, {"role": "user", "content": "I am Ann."}]
    bob = [{"role": "system", "content": system}, {"role": "user", "content": "I am Bob."}]
    client = openai.OpenAI(base_url=server.api, api_key="-", max_retries=0)

    # The reference reads the prompt the same way, in two parts: the shared prefix with
    # Ann's chat, then Bob's own line. (Read in one part, the arithmetic can round
    # differently: llama.cpp's results depend on how a prompt is split into batches.)
    alone = openai.OpenAI(base_url=single_slot.api, api_key="-", max_retries=0)
    alone.chat.completions.create(model=model_id, messages=ann, max_tokens=1)
    expected = alone.chat.completions.create(
        model=model_id, messages=bob, max_tokens=24, temperature=0
    )
    assert expected.usage.prompt_tokens_details.cached_tokens > 150

    running = client.chat.completions.create(
        model=model_id, messages=ann, max_tokens=1000, logit_bias={EOS: -100}, stream=True
    )
    with running:
        next(iter(running))  # Ann's prompt is in a slot, and her reply is streaming
        copied = client.chat.completions.create(
            model=model_id, messages=bob, max_tokens=24, temperature=0
        )
    cached = copied.usage.prompt_tokens_details.cached_tokens
    assert cached == expected.usage.prompt_tokens_details.cached_tokens  # the system prompt
    assert copied.usage.prompt_tokens - cached < 20  # only Bob's own line was read
    assert copied.choices[0].message.content == expected.choices[0].message.content


def test_same_seed_reproduces_under_concurrency(server, model_id):
    body = {
        "model": model_id,
        "prompt": STORY,
        "max_tokens": 32,
        "temperature": 1.0,
        "seed": 99,
    }

    async def run() -> list[str]:
        async with httpx.AsyncClient(timeout=120) as client:
            others = [
                client.post(f"{server.api}/completions", json={**body, "seed": s}) for s in (1, 2)
            ]
            results = await asyncio.gather(
                client.post(f"{server.api}/completions", json=body), *others
            )
        return [r.json()["choices"][0]["text"] for r in results]

    alone = httpx.post(f"{server.api}/completions", json=body, timeout=120).json()
    assert asyncio.run(run())[0] == alone["choices"][0]["text"]


def test_full_queue_answers_503_and_admitted_requests_complete(single_slot, model_id):
    body = {
        "model": model_id,
        "prompt": STORY,
        "max_tokens": 120,
        "logit_bias": {EOS: -100},
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    results: list[dict] = []
    first_token = threading.Event()

    def stream_one() -> None:
        usage, finish = None, None
        with httpx.stream("POST", f"{single_slot.api}/completions", json=body, timeout=120) as r:
            for line in r.iter_lines():
                first_token.set()
                if line.startswith("data: {"):
                    chunk = httpx.Response(200, content=line[6:]).json()
                    usage = chunk.get("usage") or usage
                    for choice in chunk["choices"]:
                        finish = choice["finish_reason"] or finish
        results.append({"finish": finish, "tokens": usage and usage["completion_tokens"]})

    running = threading.Thread(target=stream_one)
    running.start()
    assert first_token.wait(30)
    waiting = threading.Thread(target=stream_one)
    waiting.start()
    for _ in range(100):  # until the second request sits in the queue
        if httpx.get(f"{single_slot.url}/health").json()["waiting"] == 1:
            break
        threading.Event().wait(0.02)
    refused = httpx.post(f"{single_slot.api}/completions", json={**body, "stream": False})
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "server_overloaded"
    assert int(refused.headers["retry-after"]) >= 1
    running.join(120)
    waiting.join(120)
    assert results == [{"finish": "length", "tokens": 120}] * 2


def test_slot_freed_by_a_disconnect_is_reused_correctly(server, single_slot, model_id):
    prompt = fresh_prompts(1)[0]
    cold = complete(server.url, model_id, prompt)
    body = {"model": model_id, "prompt": STORY, "max_tokens": 1000, "logit_bias": {EOS: -100}}
    with httpx.stream("POST", f"{single_slot.api}/completions", json={**body, "stream": True}) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i > 10:
                break
    after = complete(single_slot.url, model_id, prompt)
    assert after["choices"][0]["text"] == cold["choices"][0]["text"]
    assert after["usage"]["completion_tokens"] > 0


def test_host_cache_keeps_a_conversation_warm_after_its_slot_is_taken(single_slot, model_id):
    long_prompt = fresh_prompts(1)[0] + " " + " ".join(["The sea was calm that day."] * 60)
    first = complete(single_slot.url, model_id, long_prompt, max_tokens=16)
    assert first["usage"]["prompt_tokens"] > 300
    complete(single_slot.url, model_id, fresh_prompts(1)[0], max_tokens=4)  # takes the slot
    again = complete(single_slot.url, model_id, long_prompt, max_tokens=16)
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] >= 300
    # The one slot was overwritten by the other prompt, so this prefix came back from host
    # memory, and it continues exactly as the first time.
    assert again["choices"][0]["text"] == first["choices"][0]["text"]


def test_users_taking_turns_keep_their_own_slots(tmp_path, model_id):
    """Regression: a prompt sharing only the template's first tokens with another user's
    conversation took that user's slot (longest prefix, however short), so two users taking
    turns evicted each other and every turn was read cold."""
    two = start_server(tmp_path, "--parallel", "2", "--cache-ram-mib", "0", "--n-ctx", "1024")
    try:
        client = openai.OpenAI(base_url=two.api, api_key="-", max_retries=0)
        chats = {
            user: [
                {"role": "system", "content": f"{user} {secrets.token_hex(3)}: " + STORY * 4},
                {"role": "user", "content": "Go on."},
            ]
            for user in ("ann", "bob")
        }
        first = {}
        for user, chat in chats.items():  # each conversation lands in a slot
            first[user] = client.chat.completions.create(
                model=model_id, messages=chat, max_tokens=8
            )
        for user, chat in chats.items():  # and is still there on its next turn
            chat += [
                {"role": "assistant", "content": first[user].choices[0].message.content},
                {"role": "user", "content": "And then?"},
            ]
            reply = client.chat.completions.create(model=model_id, messages=chat, max_tokens=8)
            cached = reply.usage.prompt_tokens_details.cached_tokens
            assert cached >= first[user].usage.prompt_tokens, (user, cached)
    finally:
        two.stop()
