"""End to end: replies constrained by a JSON schema or a grammar, on the bundled 135M model.

The model alone rarely writes valid JSON for a schema; the grammar in llama.cpp's sampler
chain makes every reply parse and validate, so these tests assert it every time.
"""

from __future__ import annotations

import json
import re

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0)


class Colour(BaseModel):
    name: str = Field(max_length=24)
    bright: bool


class Rainbow(BaseModel):
    title: str = Field(max_length=40)
    colours: list[Colour] = Field(min_length=1, max_length=3)


# What zod and pydantic send: $defs and $ref, anyOf with null, enum, const, nested arrays,
# required, additionalProperties false.
NESTED_SCHEMA = {
    "$defs": {
        "Size": {"type": "string", "enum": ["small", "medium", "large"]},
        "Part": {
            "type": "object",
            "properties": {
                "label": {"type": "string", "maxLength": 20},
                "size": {"$ref": "#/$defs/Size"},
                "weight": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            },
            "required": ["label", "size", "weight"],
            "additionalProperties": False,
        },
    },
    "type": "object",
    "properties": {
        "kind": {"const": "inventory"},
        "parts": {"type": "array", "items": {"$ref": "#/$defs/Part"}, "minItems": 1, "maxItems": 3},
        "note": {"anyOf": [{"type": "string", "maxLength": 30}, {"type": "null"}]},
    },
    "required": ["kind", "parts", "note"],
    "additionalProperties": False,
}
NESTED_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "inventory", "schema": NESTED_SCHEMA, "strict": True},
}
ASK = [{"role": "user", "content": "List the parts of a bicycle as JSON."}]


def test_parse_with_a_pydantic_model_gives_the_model(client, model_id):
    completion = client.chat.completions.parse(
        model=model_id,
        messages=[{"role": "user", "content": "Describe a rainbow."}],
        response_format=Rainbow,
        max_tokens=200,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(choice.message.parsed, Rainbow)
    assert 1 <= len(choice.message.parsed.colours) <= 3


@pytest.mark.parametrize("temperature", [0, 1.0])
def test_nested_schema_reply_validates_streamed_or_not(client, model_id, temperature):
    args = {
        "model": model_id,
        "messages": ASK,
        "response_format": NESTED_FORMAT,
        "max_tokens": 300,
        "temperature": temperature,
        "seed": 5,
    }
    whole = client.chat.completions.create(**args).choices[0]
    assert whole.finish_reason == "stop"
    jsonschema.validate(json.loads(whole.message.content), NESTED_SCHEMA)

    parts, finishes = [], []
    for chunk in client.chat.completions.create(**args, stream=True):
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            finishes.append(choice.finish_reason)
    streamed = "".join(parts)
    jsonschema.validate(json.loads(streamed), NESTED_SCHEMA)
    assert [f for f in finishes if f] == ["stop"]
    if temperature == 0:
        assert streamed == whole.message.content


def test_json_object_reply_is_an_object(client, model_id):
    reply = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "Give me a JSON object about cats."}],
        response_format={"type": "json_object"},
        max_tokens=200,
        temperature=0.7,
        seed=3,
    )
    content = reply.choices[0].message.content
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(content), dict)
    else:  # cut by max_tokens: still the start of an object
        assert content.startswith("{")


def test_raw_grammar_extension_constrains_chat_and_completions(client, model_id):
    grammar = 'root ::= ("yes" | "no") " because " [a-z ]{1,30}'
    chat = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "Is the sky blue?"}],
        max_tokens=40,
        extra_body={"grammar": grammar},
    )
    assert re.fullmatch(r"(yes|no) because [a-z ]{1,30}", chat.choices[0].message.content)
    text = (
        client.completions.create(
            model=model_id,
            prompt="Q: Is water wet?\nA:",
            max_tokens=40,
            extra_body={"grammar": grammar},
        )
        .choices[0]
        .text
    )
    assert re.fullmatch(r"(yes|no) because [a-z ]{1,30}", text)


def test_invalid_schema_is_400_and_the_server_still_serves(client, model_id):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=model_id,
            messages=ASK,
            max_tokens=8,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "bad", "schema": {"type": "strng"}},
            },
        )
    assert "strng" in refused.value.message
    assert client.chat.completions.create(model=model_id, messages=ASK, max_tokens=4).choices


@pytest.mark.parametrize(
    "response_format",
    [
        {
            "type": "json_schema",
            "json_schema": {
                "name": "person",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {"name": {"type": "string", "maxLength": 12}},
                    "required": ["name"],
                    "additionalProperties": False,
                },
            },
        },
        {"type": "json_object"},
    ],
)
def test_constrained_strings_hold_no_raw_control_characters(
    client, server, model_id, response_format
):
    """The grammar let a raw newline into a string ("name"): the reply was not valid JSON."""
    # A newline the model is pushed to write wherever the grammar lets it.
    [newline] = httpx.post(f"{server.url}/tokenize", json={"content": "\n"}).json()["tokens"]
    reply = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "Invent a person as JSON."}],
        response_format=response_format,
        max_tokens=60,
        temperature=0,
        logit_bias={str(newline): 100},
    ).choices[0]
    # No control character anywhere: the grammar's whitespace is a space, and strings
    # must escape them.
    assert not re.search("[\x00-\x1f]", reply.message.content), reply.message.content
    if reply.finish_reason == "stop":  # json_object may run to max_tokens
        assert isinstance(json.loads(reply.message.content), dict)
