"""Tool-call formats, plans and the streaming watcher, without a model (grammars are
checked by llama.cpp's grammar sampler on the bundled model's vocabulary)."""

from __future__ import annotations

import asyncio
import json

import pytest

from hearth.engine.sampler import grammar_parses
from hearth.runtime.pipeline import PreparedGeneration
from hearth.runtime.requests import ChatRequest
from hearth.runtime.tools.formats import (
    CALL_FORMATS,
    GENERIC,
    HERMES,
    LLAMA3,
    MISTRAL,
    ParsedCall,
    call_format_for,
)
from hearth.runtime.tools.plan import ToolPlan, plan_tools
from hearth.runtime.tools.reply import CallWatcher, read_reply
from hearth.server.openai.chat.protocol import ChatCompletionRequest
from hearth.server.openai.chat.serving import chat_chunks
from hearth.server.openai.chat.tool_calls import assistant_message, finish_reason

from .scripted_engine import ScriptedGeneration

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}


async def stream(plan: ToolPlan, pieces: list[str], reason: str) -> list[dict]:
    """The chat chunks a scripted generation of `pieces` streams under a tool plan."""
    generation = ScriptedGeneration(pieces, prompt_tokens=5, finish_reason=reason)
    prepared = PreparedGeneration([generation], model_id="m", tools=plan)
    chunks = [chunk async for chunk in chat_chunks(prepared, include_usage=False)]
    # Content chunks come framed as whole SSE events (bytes), the others as JSON text.
    return [json.loads(c.removeprefix(b"data: ") if isinstance(c, bytes) else c) for c in chunks]


def request(**fields) -> ChatRequest:
    """A chat completion request as the runtime takes it."""
    return ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [WEATHER, TIME],
            **fields,
        }
    ).to_runtime()


def assistant_reply(plan: ToolPlan, text: str, reason: str):
    """The whole reply as the chat completions endpoint answers it."""
    reply = read_reply(plan, text, reason)
    return assistant_message(reply, legacy=False), finish_reason(reply, legacy=False)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{% if tools %}<tool_call>{% endif %}", HERMES),
        ("[AVAILABLE_TOOLS] ... [TOOL_CALLS]", MISTRAL),
        ("<|start_header_id|>ipython<|end_header_id|>", LLAMA3),
        ("<|im_start|>{{ m.content }}", GENERIC),
        (None, GENERIC),
    ],
)
def test_call_format_is_chosen_by_the_template_markers(template, expected):
    assert call_format_for(template) is expected


@pytest.mark.parametrize("fmt", [*CALL_FORMATS.values(), GENERIC])
def test_each_format_parses_what_it_renders(fmt):
    calls = [ParsedCall("get_weather", {"city": "Paris", "unit": "c"}), ParsedCall("get_time", {})]
    text = fmt.render(calls) if fmt is not LLAMA3 else fmt.render(calls[:1])
    prefix = "Let me check. " if fmt.opener else ""
    content, parsed = fmt.parse(prefix + text)
    assert content == prefix.strip()
    assert parsed == (calls if fmt is not LLAMA3 else calls[:1])


def test_plain_text_is_no_call():
    assert HERMES.parse("Paris is sunny.") == ("Paris is sunny.", [])


@pytest.mark.parametrize(
    "choice",
    ["required", {"type": "function", "function": {"name": "get_weather"}}],
)
@pytest.mark.parametrize("parallel", [True, False])
def test_forced_choices_get_a_grammar_llama_cpp_parses(choice, parallel):
    plan = plan_tools(request(tool_choice=choice, parallel_tool_calls=parallel), None)
    assert plan is not None and plan.grammar is not None
    assert grammar_parses(plan.grammar)
    assert "get_weather" in plan.messages[0].content


def test_auto_has_a_lazy_grammar_and_none_is_not_parsed():
    auto = plan_tools(request(tool_choice="auto"), None)
    assert auto.grammar_trigger == "<tool_call>" and grammar_parses(auto.grammar)
    assert not plan_tools(request(tool_choice="none"), None).active


def test_a_template_that_knows_tools_gets_them_and_the_turns_as_they_are():
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
    ]
    plan = plan_tools(request(messages=history, tool_choice="required"), None, native=True)
    assert [m.role for m in plan.messages] == ["user", "assistant", "tool"]
    assert plan.messages[1].tool_calls[0].arguments == {"city": "Paris"}
    assert plan.messages[2].tool_call_id == "call_1"
    assert [t["function"]["name"] for t in plan.template_tools] == ["get_weather", "get_time"]
    assert plan.grammar is not None and plan.grammar_trigger is None


def test_history_with_calls_and_results_renders_as_text_turns():
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city": "Paris", "unit": "c"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
    ]
    plan = plan_tools(request(messages=history), None)
    roles = [m.role for m in plan.messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert '"city": "Paris"' in plan.messages[2].content
    assert "18 C, sunny" in plan.messages[3].content


def test_reply_with_a_call_becomes_tool_calls_with_json_arguments():
    plan = plan_tools(request(), None)
    message, reason = assistant_reply(
        plan,
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}'
        "\n</tool_call>",
        "stop",
    )
    assert reason == "tool_calls" and message.content is None
    assert message.tool_calls[0].id.startswith("call_")
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris", "unit": "c"}


def test_watcher_never_lets_call_text_out_even_split_mid_opener():
    watcher = CallWatcher(HERMES)
    pieces = ["Sure. <tool", "_ca", 'll>\n{"name": "get_time", "arguments": {}}', "\n</tool_call>"]
    sent = "".join(watcher.feed(p) for p in pieces)
    reply = watcher.finish()
    assert sent == "Sure. " and reply.content == ""
    assert [c.name for c in reply.calls] == ["get_time"]


def test_watcher_releases_a_held_prefix_that_was_no_opener():
    watcher = CallWatcher(HERMES)
    sent = watcher.feed("a <tool") + watcher.feed("box> b")
    reply = watcher.finish()
    assert sent + reply.content == "a <toolbox> b" and reply.calls == ()


def test_call_cut_off_by_max_tokens_is_not_shown_as_content():
    """A call truncated by max_tokens parsed as no call, and its raw text went out as content."""
    plan = plan_tools(request(), None)
    cut = 'Checking. <tool_call>\n{"name": "get_weather", "arguments": {"ci'
    message, reason = assistant_reply(plan, cut, "length")
    assert (message.content, reason) == ("Checking.", "length")
    watcher = CallWatcher(HERMES)
    sent = watcher.feed(cut)
    assert sent + watcher.finish().content == "Checking. "


def test_forced_call_cut_off_by_max_tokens_finishes_length_with_the_cut_call():
    """A call cut off by max_tokens after a whole one finished "tool_calls" and was dropped."""
    plan = plan_tools(request(tool_choice="required"), None)
    whole = '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
    cut = whole + '\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa'
    message, reason = assistant_reply(plan, cut, "length")
    assert reason == "length" and message.content is None
    assert [(c.function.name, c.function.arguments) for c in message.tool_calls] == [
        ("get_time", "{}"),
        ("get_weather", '{"city": "Pa'),
    ]
    streamed = asyncio.run(stream(plan, [cut[:40], cut[40:]], "length"))
    assert [c["choices"][0]["finish_reason"] for c in streamed if c["choices"]][-1] == "length"
    arguments = {}
    for chunk in streamed:
        for call in chunk["choices"][0]["delta"].get("tool_calls", []):
            arguments[call["index"]] = (
                arguments.get(call["index"], "") + call["function"]["arguments"]
            )
    assert arguments == {0: "{}", 1: '{"city": "Pa'}
    # Ended by the model, the same whole call is a plain tool_calls reply.
    message, reason = assistant_reply(plan, whole, "stop")
    assert reason == "tool_calls" and len(message.tool_calls) == 1


def test_named_tool_choice_allows_one_call_unless_parallel_calls_are_asked_for(grammar_takes):
    """A named tool_choice under the default parallel_tool_calls let the model repeat its call."""
    named = {"type": "function", "function": {"name": "get_time"}}
    one = '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
    default = plan_tools(request(tool_choice=named), None)
    assert grammar_takes(default.grammar, one)
    assert not grammar_takes(default.grammar, one + "\n<tool_call>")
    assert "several tools at once" not in default.messages[0].content
    asked = plan_tools(request(tool_choice=named, parallel_tool_calls=True), None)
    assert grammar_takes(asked.grammar, one + "\n" + one)
    required = plan_tools(request(tool_choice="required"), None)
    assert grammar_takes(required.grammar, one + "\n" + one)
