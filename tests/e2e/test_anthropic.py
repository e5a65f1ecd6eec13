"""End to end: the official `anthropic` SDK against a real `hearth serve` on the real model.

The SDK (2.x) has no temperature, top_p or top_k arguments; clients send them in the body
(`extra_body`), as these tests do. Tool calls under `any` and a named tool are forced by
the grammar, so the tests assert their validity, not the 135M model's judgement.
"""

from __future__ import annotations

import json
import re
import secrets

import anthropic
import httpx
import jsonschema
import openai
import pytest

from tests.conftest import start_server

GREEDY = {"temperature": 0}
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]
STORY = [{"role": "user", "content": "Write a very long story about a dragon and a knight."}]
WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 30},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
}
TIME = {
    "name": "get_time",
    "description": "Current time in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 30}},
        "required": ["city"],
    },
}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def client(server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)


def text_of(message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def test_create_answers_with_a_text_block_and_usage(client, model_id):
    message = client.messages.create(model=model_id, max_tokens=48, messages=QUESTION)
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_") and message.model == model_id
    assert [block.type for block in message.content] == ["text"]
    assert text_of(message).strip() and "<|im_end|>" not in text_of(message)
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 5 and message.usage.output_tokens > 0
    assert message.usage.cache_creation_input_tokens == 0


def test_system_blocks_read_as_the_openai_system_message(server, client, model_id):
    """The same conversation through both APIs: the same prompt, the same greedy reply."""
    pirate = "You are a pirate. Always answer like a pirate."
    system = [{"type": "text", "text": pirate}]
    told = client.messages.create(
        model=model_id, max_tokens=24, messages=QUESTION, system=system, extra_body=GREEDY
    )
    chat = openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0)
    same = chat.chat.completions.create(
        model=model_id,
        max_tokens=24,
        messages=[{"role": "system", "content": pirate}, *QUESTION],
        temperature=0,
    )
    assert told.usage.input_tokens + told.usage.cache_read_input_tokens == same.usage.prompt_tokens
    assert text_of(told) == same.choices[0].message.content


def test_stream_sends_anthropics_event_sequence_and_the_same_text(client, model_id):
    args = {"model": model_id, "max_tokens": 48, "messages": QUESTION, "extra_body": GREEDY}
    whole = client.messages.create(**args)
    events = list(client.messages.create(**args, stream=True))
    names = " ".join(event.type for event in events)
    block = "content_block_start( content_block_delta)+ content_block_stop"
    assert re.fullmatch(f"message_start( {block})+ message_delta message_stop", names), names
    text = "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == text_of(whole)
    delta = events[-2]
    assert delta.delta.stop_reason == whole.stop_reason
    assert delta.usage.output_tokens == whole.usage.output_tokens


def test_stream_pings_after_message_start(server, model_id):
    """The SDK skips pings, so they are read off the wire."""
    body = {"model": model_id, "max_tokens": 8, "messages": QUESTION, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/messages", json=body, timeout=120) as response:
        names = [line[7:] for line in response.iter_lines() if line.startswith("event: ")]
    assert names[:2] == ["message_start", "ping"] and names[-1] == "message_stop"


def test_max_tokens_gives_stop_reason_max_tokens(client, model_id):
    message = client.messages.create(model=model_id, max_tokens=5, messages=STORY)
    assert message.stop_reason == "max_tokens" and message.stop_sequence is None
    assert message.usage.output_tokens == 5


def test_a_max_tokens_larger_than_the_context_is_a_ceiling_not_a_refusal(client, model_id):
    """Claude Code sends max_tokens 32000 to any model; Anthropic's max_tokens bounds the
    reply, so the reply comes (OpenAI's endpoints refuse such a request, as OpenAI does)."""
    with client.messages.stream(  # the SDK streams a request this long, as Claude Code does
        model=model_id,
        max_tokens=32_000,
        messages=QUESTION,
        extra_body={"grammar": 'root ::= "Paris."'},
    ) as stream:
        message = stream.get_final_message()
    assert text_of(message) == "Paris." and message.stop_reason == "end_turn"


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequence_ends_the_reply_and_is_named(client, model_id, stream):
    args = {"model": model_id, "max_tokens": 40, "messages": STORY, "extra_body": GREEDY}
    free = text_of(client.messages.create(**args))
    words = free.split()
    assert len(words) >= 5, free
    stop = " " + words[3]  # a stop the model reaches mid-reply
    if stream:
        with client.messages.stream(**args, stop_sequences=[stop, "zzz-never"]) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**args, stop_sequences=[stop, "zzz-never"])
    assert text_of(message) == free[: free.index(stop)]
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == stop


@pytest.mark.parametrize(
    "choice",
    # One call each: allowed several, the 135M model repeats its call until max_tokens.
    [{"type": "any", "disable_parallel_tool_use": True}, {"type": "tool", "name": "get_weather"}],
    ids=["any", "tool"],
)
def test_forced_tool_use_gives_a_valid_input_object(client, model_id, choice):
    message = client.messages.create(
        model=model_id,
        max_tokens=96,
        messages=ASK_WEATHER,
        tools=[WEATHER, TIME],
        tool_choice=choice,
        extra_body=GREEDY,
    )
    assert message.stop_reason == "tool_use", message
    uses = [block for block in message.content if block.type == "tool_use"]
    assert len(uses) == 1 and message.content[-1].type == "tool_use"
    if choice["type"] == "tool":
        assert [use.name for use in uses] == ["get_weather"]
    for use in uses:
        assert use.id.startswith("toolu_")
        schema = {"get_weather": WEATHER, "get_time": TIME}[use.name]["input_schema"]
        jsonschema.validate(use.input, schema)


def test_tool_result_round_trip(client, model_id):
    tools = [WEATHER]
    first = client.messages.create(
        model=model_id,
        max_tokens=96,
        messages=ASK_WEATHER,
        tools=tools,
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    (use,) = [block for block in first.content if block.type == "tool_use"]
    messages = [
        *ASK_WEATHER,
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": use.id,
                    "content": [{"type": "text", "text": "18 degrees and sunny"}],
                }
            ],
        },
    ]
    # As an agent goes on: the same tools, the model's choice (auto).
    second = client.messages.create(
        model=model_id, max_tokens=48, messages=messages, tools=tools, extra_body=GREEDY
    )
    assert second.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert second.content
    # The result was read: the second prompt holds the first, the call and the result.
    assert second.usage.input_tokens + second.usage.cache_read_input_tokens > (
        first.usage.input_tokens + first.usage.cache_read_input_tokens
    )


def test_streamed_tool_input_comes_as_input_json_delta(client, model_id):
    with client.messages.stream(
        model=model_id,
        max_tokens=96,
        messages=ASK_WEATHER,
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    ) as stream:
        events = list(stream)
        message = stream.get_final_message()
    partial = [
        e.delta.partial_json
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    (use,) = message.content
    assert use.type == "tool_use" and message.stop_reason == "tool_use"
    assert json.loads("".join(partial)) == use.input
    jsonschema.validate(use.input, WEATHER["input_schema"])


def test_count_tokens_matches_what_a_request_reads(client, model_id):
    """count_tokens renders the conversation as a real request does, tools included."""
    args = {"model": model_id, "messages": ASK_WEATHER, "system": "Be brief.", "tools": [WEATHER]}
    counted = client.messages.count_tokens(**args).input_tokens
    message = client.messages.create(**args, max_tokens=1)
    assert counted == message.usage.input_tokens + message.usage.cache_read_input_tokens
    bare = client.messages.count_tokens(model=model_id, messages=ASK_WEATHER).input_tokens
    assert bare < counted


def test_a_conversation_resent_turn_after_turn_reads_from_the_cache(client, model_id):
    """What Claude Code does: every turn resends the whole conversation."""
    system = f"Session {secrets.token_hex(4)}. You are a terse assistant. " * 3
    messages: list[dict] = []
    usages = []
    for question in ("Name a fruit.", "Name another one.", "And a vegetable?"):
        messages.append({"role": "user", "content": question})
        message = client.messages.create(
            model=model_id, max_tokens=16, system=system, messages=messages, extra_body=GREEDY
        )
        messages.append({"role": "assistant", "content": text_of(message) or "."})
        usages.append(message.usage)
    assert usages[0].cache_read_input_tokens < 5
    for before, later in zip(usages, usages[1:], strict=False):
        assert later.cache_read_input_tokens >= before.input_tokens + before.cache_read_input_tokens
        assert later.input_tokens < 30  # only the new turns were read


def assert_anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == kind and body["error"]["message"]
    return body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"messages": QUESTION}, "max_tokens"),
        (
            {
                "max_tokens": 8,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "toolu_nope"}],
                    }
                ],
            },
            "toolu_nope",
        ),
        (
            {
                "max_tokens": 8,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is this?"},
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": "AA",
                                },
                            },
                        ],
                    }
                ],
            },
            "image",
        ),
        (
            {"max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "hologram"}]}]},
            "hologram",
        ),
    ],
    ids=["no-max-tokens", "unknown-tool-result", "image", "unknown-block"],
)
def test_bad_requests_get_a_400_in_anthropics_shape_and_the_server_serves_on(
    server, client, model_id, body, says
):
    response = httpx.post(f"{server.url}/v1/messages", json={"model": model_id, **body})
    assert says in assert_anthropic_error(response, 400, "invalid_request_error")
    assert client.messages.create(model=model_id, max_tokens=2, messages=QUESTION).content


def test_sdk_raises_its_typed_errors(client, model_id):
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model=model_id,
            max_tokens=8,
            messages=[{"role": "user", "content": [{"type": "document", "source": {}}]}],
        )
    assert refused.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", max_tokens=8, messages=QUESTION)
    assert missing.value.body["error"]["type"] == "not_found_error"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    running = start_server(
        tmp_path_factory.mktemp("keyed"), "--n-ctx", "1024", "--api-key", "sesame"
    )
    yield running
    running.stop()


def test_api_key_is_taken_from_x_api_key_or_bearer_and_a_wrong_one_is_401(keyed):
    model = httpx.get(f"{keyed.api}/models", headers={"x-api-key": "sesame"}, timeout=30).json()[
        "data"
    ][0]["id"]
    ask = {"model": model, "max_tokens": 4, "messages": QUESTION}
    by_key = anthropic.Anthropic(base_url=keyed.url, api_key="sesame", max_retries=0)
    assert by_key.messages.create(**ask).content is not None
    by_token = anthropic.Anthropic(base_url=keyed.url, auth_token="sesame", max_retries=0)
    assert by_token.messages.count_tokens(model=model, messages=QUESTION).input_tokens > 0
    wrong = anthropic.Anthropic(base_url=keyed.url, api_key="open-sesame", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as refused:
        wrong.messages.create(**ask)
    assert refused.value.status_code == 401
    assert refused.value.body["error"]["type"] == "authentication_error"
    bare = httpx.post(f"{keyed.url}/v1/messages", json=ask, timeout=30)
    assert_anthropic_error(bare, 401, "authentication_error")
    # Other APIs keep their own shape for the same refusal.
    openai_shaped = httpx.post(f"{keyed.api}/chat/completions", json={}, timeout=30)
    assert openai_shaped.status_code == 401 and openai_shaped.json()["error"]["code"]
