"""/v1/responses through the official openai client on the real bundled model."""

from __future__ import annotations

import json

import openai
import pytest

pytestmark = pytest.mark.e2e

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api, api_key="none", max_retries=0)


def test_text_in_text_out_and_stored_for_the_next_turn(client, model_id):
    first = client.responses.create(
        model=model_id,
        input="Say hello.",
        instructions="Be brief.",
        max_output_tokens=16,
        temperature=0,
    )
    assert first.status in {"completed", "incomplete"} and first.output_text
    assert first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    assert client.responses.retrieve(first.id).output_text == first.output_text
    second = client.responses.create(
        model=model_id,
        input="And again?",
        temperature=0,
        previous_response_id=first.id,
        max_output_tokens=8,
    )
    assert second.previous_response_id == first.id
    # The earlier turn was read again: the prompt holds both exchanges.
    assert second.usage.input_tokens > first.usage.input_tokens


def test_stream_sends_typed_events_that_add_up_to_the_response(client, model_id):
    stream = client.responses.create(
        model=model_id, input="Count to three.", stream=True, max_output_tokens=16, temperature=0
    )
    kinds, deltas, completed = [], [], None
    for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        if event.type == "response.completed":
            completed = event.response
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed" and kinds.count("response.completed") == 1
    assert "response.output_item.done" in kinds
    assert completed is not None and completed.output_text == "".join(deltas) != ""


def test_a_required_tool_call_comes_back_as_a_function_call_item(client, model_id):
    # One call, and a bound on it: under `required` with parallel calls the 135M model
    # writes call after call until the context is full, and the follow-up's history then
    # no longer fits (a 400 context_length_exceeded, since truncation is off by default).
    response = client.responses.create(
        model=model_id,
        input="What is the weather in Paris?",
        tools=[WEATHER],
        tool_choice="required",
        temperature=0,
        parallel_tool_calls=False,
        max_output_tokens=120,
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    assert isinstance(json.loads(calls[0].arguments)["city"], str)
    followup = client.responses.create(
        model=model_id,
        previous_response_id=response.id,
        tools=[WEATHER],
        temperature=0,
        max_output_tokens=16,
        input=[
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 24 C"}
        ],
    )
    assert followup.output_text


def test_json_schema_text_format_gives_valid_json(client, model_id):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    response = client.responses.create(
        model=model_id,
        input="Invent a person.",
        temperature=0,
        max_output_tokens=64,
        text={
            "format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}
        },
    )
    person = json.loads(response.output_text)
    assert set(person) == {"name", "age"} and isinstance(person["age"], int)


def test_store_false_keeps_nothing_and_unknown_ids_are_404(client, model_id):
    unstored = client.responses.create(model=model_id, input="Hi", store=False, max_output_tokens=4)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model=model_id, input="Hi", previous_response_id="resp_nope")
    assert missing.value.body["param"] == "previous_response_id"


def test_input_messages_without_a_type_are_answered(client, model_id):
    """Messages without `"type": "message"` (the agents SDKs' default) got 400 'input.str'."""
    response = client.responses.create(
        model=model_id,
        temperature=0,
        max_output_tokens=16,
        input=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert response.status in {"completed", "incomplete"} and response.output_text
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(
            model=model_id, max_output_tokens=4, input=[{"role": "wizard", "content": "Hi"}]
        )
    assert refused.value.body["param"] == "input[0].role"
