"""End to end: tool calls with the official openai client on the bundled 135M model.

The model would rarely write a well-formed call on its own; under `required` or a named
function the grammar makes it call an allowed tool with arguments that match the schema,
every time, so these tests assert validity rather than the model's judgement.
"""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": WEATHER_PARAMETERS,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current time in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 30}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    },
]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0)


def test_required_tool_choice_gives_a_valid_call(client, model_id):
    reply = client.chat.completions.create(
        model=model_id,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=120,
        temperature=0,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert not choice.message.content
    [call] = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name in {"get_weather", "get_time"}
    arguments = json.loads(call.function.arguments)
    if call.function.name == "get_weather":
        jsonschema.validate(arguments, WEATHER_PARAMETERS)


def test_named_tool_streams_name_then_arguments_and_no_call_text(client, model_id):
    stream = client.chat.completions.create(
        model=model_id,
        messages=ASK,
        tools=TOOLS,
        max_tokens=120,
        temperature=0.8,
        seed=2,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    content, deltas, finishes = [], [], []
    for chunk in stream:
        for choice in chunk.choices:
            content.append(choice.delta.content or "")
            deltas.extend(choice.delta.tool_calls or [])
            finishes.append(choice.finish_reason)
    assert "".join(content) == ""
    assert [f for f in finishes if f] == ["tool_calls"]
    first = deltas[0]
    assert (
        first.index == 0 and first.id.startswith("call_") and first.function.name == "get_weather"
    )
    arguments = "".join(d.function.arguments or "" for d in deltas if d.index == 0)
    jsonschema.validate(json.loads(arguments), WEATHER_PARAMETERS)


def test_history_with_a_tool_result_is_answered(client, model_id):
    history = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city": "Paris", "unit": "celsius"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": "18 degrees and sunny"},
    ]
    reply = client.chat.completions.create(
        model=model_id,
        messages=history,
        tools=TOOLS,
        tool_choice="none",
        max_tokens=40,
    )
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.choices[0].message.content
    assert "<tool_call>" not in reply.choices[0].message.content


def test_named_tool_not_in_tools_is_400(client, model_id):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=model_id,
            messages=ASK,
            tools=TOOLS,
            max_tokens=8,
            tool_choice={"type": "function", "function": {"name": "launch_rocket"}},
        )


def test_required_with_parallel_calls_ends_with_valid_calls(client, model_id):
    reply = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "Weather and time in Rome?"}],
        tools=TOOLS,
        tool_choice="required",
        max_tokens=250,
        temperature=0.8,
        seed=4,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls
    for call in choice.message.tool_calls:
        assert call.function.name in {"get_weather", "get_time"}
        assert isinstance(json.loads(call.function.arguments), dict)


def test_named_tool_choice_gives_one_call_unless_parallel_calls_are_asked_for(client, model_id):
    """Under a named tool_choice and the default parallel_tool_calls the model repeated the
    same call four times."""
    named = {"type": "function", "function": {"name": "get_weather"}}
    reply = client.chat.completions.create(
        model=model_id,
        messages=ASK,
        tools=TOOLS,
        tool_choice=named,
        max_tokens=200,
        temperature=0,
    ).choices[0]
    assert reply.finish_reason == "tool_calls"
    [call] = reply.message.tool_calls
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_PARAMETERS)


# Under `required` the model writes a weather call (about 40 tokens) and goes on to a time
# call: 60 tokens end the reply inside the second call's arguments.
CUT_AT = 60


def test_forced_calls_cut_off_by_max_tokens_finish_length_streamed_or_not(client, model_id):
    """A forced call cut off by max_tokens reported finish_reason "tool_calls" and the cut
    call was dropped; OpenAI reports "length"."""
    args = {
        "model": model_id,
        "messages": [{"role": "user", "content": "Weather and time?"}],
        "tools": TOOLS,
        "tool_choice": "required",
        "max_tokens": CUT_AT,
        "temperature": 0,
    }
    whole = client.chat.completions.create(**args)
    choice = whole.choices[0]
    assert whole.usage.completion_tokens == CUT_AT
    assert choice.finish_reason == "length"
    *complete, cut = choice.message.tool_calls
    assert complete, "the reply should hold a whole call before the cut one"
    for call in complete:
        assert isinstance(json.loads(call.function.arguments), dict)
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.function.arguments)
    finishes, arguments = [], {}
    for chunk in client.chat.completions.create(**args, stream=True):
        for streamed in chunk.choices:
            finishes.append(streamed.finish_reason)
            for delta in streamed.delta.tool_calls or []:
                arguments[delta.index] = arguments.get(delta.index, "") + (
                    delta.function.arguments or ""
                )
    assert [f for f in finishes if f] == ["length"]
    *complete, cut = arguments.values()
    assert complete and all(isinstance(json.loads(text), dict) for text in complete)
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut)


WEATHER_FUNCTION = TOOLS[0]["function"]


def test_legacy_functions_get_a_function_call_streamed_or_not(client, model_id):
    """The deprecated functions/function_call were ignored: a 200 with prose and no call."""
    args = {
        "model": model_id,
        "messages": ASK,
        "functions": [WEATHER_FUNCTION],
        "function_call": {"name": "get_weather"},
        "max_tokens": 120,
        "temperature": 0,
    }
    choice = client.chat.completions.create(**args).choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.tool_calls is None
    assert choice.message.function_call.name == "get_weather"
    arguments = json.loads(choice.message.function_call.arguments)
    jsonschema.validate(arguments, WEATHER_PARAMETERS)
    names, parts, finishes = [], [], []
    for chunk in client.chat.completions.create(**args, stream=True):
        for streamed in chunk.choices:
            finishes.append(streamed.finish_reason)
            if streamed.delta.function_call:
                names.append(streamed.delta.function_call.name)
                parts.append(streamed.delta.function_call.arguments or "")
    assert [f for f in finishes if f] == ["function_call"]
    assert [n for n in names if n] == ["get_weather"]
    assert "".join(parts) == choice.message.function_call.arguments
    # The call and its result go back as legacy turns, and the model answers.
    followup = client.chat.completions.create(
        model=model_id,
        functions=[WEATHER_FUNCTION],
        function_call="none",
        max_tokens=16,
        messages=[
            *ASK,
            {
                "role": "assistant",
                "content": None,
                "function_call": {
                    "name": "get_weather",
                    "arguments": choice.message.function_call.arguments,
                },
            },
            {"role": "function", "name": "get_weather", "content": "18 C and sunny"},
        ],
    ).choices[0]
    assert followup.finish_reason in ("stop", "length") and followup.message.content


def test_legacy_functions_with_tools_are_400_naming_functions(client, model_id):
    """functions and tools at once were accepted, the functions silently dropped."""
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=model_id, messages=ASK, tools=TOOLS, functions=[WEATHER_FUNCTION], max_tokens=8
        )
    assert refused.value.body["param"] == "functions"
