"""Thinking models end to end: the bundled model carrying real thinking templates.

The GGUFs are the bundled SmolLM2 with Qwen3-0.6B's chat template and with a DeepSeek-R1
distill's (which opens `<think>` in the prompt), both from llama.cpp's source package, made
with gguf's `gguf-new-metadata`. A 135M model does not think by itself, so a request grammar
makes its reply take the thinking shape; everything after the grammar is the real runtime.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import R1_TEMPLATE, RunningServer, start_server, with_template

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
# The thinking shape: a short thought in tags, then a short answer.
THINKING = r'root ::= "<think>\n" [a-z ,]{5,60} "\n</think>\n\n" [A-Za-z ,.]{1,40}'
QWEN3_TEMPLATE = "Qwen-Qwen3-0.6B.jinja"


@pytest.fixture(scope="session")
def thinking_server(real_templates: Path, tmp_path_factory) -> Iterator[RunningServer]:
    """One server with three ids: qwen3 (Qwen3's template), r1 (a DeepSeek-R1 distill's),
    and plain (qwen3's file with --reasoning-format none)."""
    folder = tmp_path_factory.mktemp("thinking")
    qwen3 = with_template(real_templates / QWEN3_TEMPLATE, folder / "qwen3.gguf")
    r1 = with_template(real_templates / R1_TEMPLATE, folder / "r1.gguf")
    config = folder / "hearth.toml"
    config.write_text(
        f'[[models]]\nid = "qwen3"\npath = "{qwen3}"\n\n'
        f'[[models]]\nid = "r1"\npath = "{r1}"\n\n'
        f'[[models]]\nid = "plain"\npath = "{qwen3}"\nreasoning_format = "none"\n'
    )
    running = start_server(
        folder, "--config", str(config), "--model", "qwen3", "--n-ctx", "1024", "--parallel", "2"
    )
    yield running
    running.stop()


@pytest.fixture(scope="session")
def client(thinking_server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=thinking_server.api, api_key="none", timeout=300)


def token_ids(server: RunningServer, model: str, text: str) -> list[int]:
    answer = httpx.post(
        f"{server.url}/tokenize", json={"model": model, "content": text}, timeout=60
    )
    return [t if isinstance(t, int) else t["id"] for t in answer.json()["tokens"]]


def ask(client: openai.OpenAI, model: str = "qwen3", **extra) -> openai.types.chat.ChatCompletion:
    extra.setdefault("messages", QUESTION)
    extra.setdefault("max_tokens", 80)
    return client.chat.completions.create(model=model, temperature=0, **extra)


def test_chat_reply_is_split_into_reasoning_and_content(client):
    message = ask(client, extra_body={"grammar": THINKING}).choices[0].message
    extra = message.model_extra
    assert extra["reasoning_content"].strip()
    assert extra["reasoning"] == extra["reasoning_content"]
    assert message.content and "think>" not in message.content
    assert "think>" not in extra["reasoning_content"]


def test_streamed_reasoning_and_content_equal_the_whole_reply(client):
    whole = ask(client, extra_body={"grammar": THINKING}).choices[0].message
    reasoning, reasoning_alias, content = "", "", ""
    stream = ask(client, extra_body={"grammar": THINKING}, stream=True)
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        fields = delta.model_extra or {}
        reasoning += fields.get("reasoning_content") or ""
        reasoning_alias += fields.get("reasoning") or ""
        content += delta.content or ""
    assert reasoning == reasoning_alias == whole.model_extra["reasoning_content"]
    assert content == whole.content


def test_responses_answer_a_reasoning_item_before_the_message(client):
    response = client.responses.create(
        model="qwen3", input="What is the capital of France?", temperature=0,
        max_output_tokens=80, extra_body={"grammar": THINKING},
    )  # fmt: skip
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "message"]
    thought = response.output[0]
    assert thought.summary == [] and thought.content[0].type == "reasoning_text"
    assert thought.content[0].text.strip() and "think>" not in thought.content[0].text
    assert response.output_text and "think>" not in response.output_text


def test_streamed_response_sends_reasoning_events_then_text(client):
    whole = client.responses.create(
        model="qwen3", input="What is the capital of France?", temperature=0,
        max_output_tokens=80, extra_body={"grammar": THINKING},
    )  # fmt: skip
    events = list(
        client.responses.create(
            model="qwen3",
            input="What is the capital of France?",
            temperature=0,
            max_output_tokens=80,
            extra_body={"grammar": THINKING},
            stream=True,
        )  # fmt: skip
    )
    kinds = [event.type for event in events]
    assert kinds.index("response.reasoning_text.delta") < kinds.index("response.output_text.delta")
    assert kinds.index("response.reasoning_text.done") < kinds.index("response.output_text.delta")
    reasoning = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert reasoning == whole.output[0].content[0].text
    completed = events[-1]
    assert completed.type == "response.completed"
    assert [item.type for item in completed.response.output] == ["reasoning", "message"]
    assert completed.response.output[0].id == next(
        e.item_id for e in events if e.type == "response.reasoning_text.delta"
    )
    assert completed.response.output_text == whole.output_text


def test_reasoning_effort_none_renders_qwen3s_empty_think_block(client, thinking_server):
    """Qwen3's template writes `<think>\\n\\n</think>\\n\\n` after the generation prompt when
    enable_thinking is false: the prompt grows by exactly those tokens."""
    thinking = ask(client, max_tokens=8)
    off = ask(client, max_tokens=8, reasoning_effort="none")
    block = token_ids(thinking_server, "qwen3", "<think>\n\n</think>\n\n")
    assert off.usage.prompt_tokens == thinking.usage.prompt_tokens + len(block)
    kwargs = {"chat_template_kwargs": {"enable_thinking": False}}
    as_kwargs = ask(client, max_tokens=8, extra_body=kwargs)
    assert as_kwargs.usage.prompt_tokens == off.usage.prompt_tokens
    assert "reasoning_content" not in (off.choices[0].message.model_extra or {})


def test_prompt_that_opens_the_tag_makes_the_reply_reasoning_until_it_closes(client):
    """A DeepSeek-R1 distill's generation prompt ends with `<think>\\n`: the reply starts inside."""
    grammar = r'root ::= [a-z ,]{5,60} "\n</think>\n\n" [A-Za-z ,.]{1,40}'
    message = ask(client, "r1", extra_body={"grammar": grammar}).choices[0].message
    assert message.model_extra["reasoning_content"].strip()
    assert message.content and "think>" not in message.content


def test_thinking_budget_writes_the_closing_tag_and_the_answer_follows(client, thinking_server):
    # The model may not close its thinking by itself ("<" and "</" banned), so without a budget
    # it reasons until max_tokens; with one, the closing tag is written for it.
    banned = {str(t): -100 for t in token_ids(thinking_server, "r1", "<") + [
        token_ids(thinking_server, "r1", "</think>")[0]]}  # fmt: skip
    grammar = r'root ::= [a-z ]* "</think>" "\n"? [A-Za-z ,.]{1,30}'
    endless = ask(client, "r1", max_tokens=40, logit_bias=banned, extra_body={"grammar": grammar})
    assert endless.choices[0].finish_reason == "length"
    assert endless.choices[0].message.content == ""
    budgeted = ask(
        client, "r1", max_tokens=60, logit_bias=banned,
        extra_body={"grammar": grammar, "reasoning_budget": 6},
    )  # fmt: skip
    message = budgeted.choices[0].message
    assert budgeted.choices[0].finish_reason == "stop"
    assert message.content and "think>" not in message.content
    assert message.model_extra["reasoning_content"].strip()
    assert len(token_ids(thinking_server, "r1", message.model_extra["reasoning_content"])) <= 8


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def test_forced_tool_call_after_thinking_is_parsed_as_a_call(client):
    """The r1 prompt opens the thinking: a forced call's grammar must let it close first (the
    budget closes it, since the tiny model would think until max_tokens)."""
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    reply = ask(
        client, "r1", messages=messages, tools=TOOLS, tool_choice="required",
        parallel_tool_calls=False, max_tokens=120, extra_body={"reasoning_budget": 8},
    )  # fmt: skip
    message = reply.choices[0].message
    assert reply.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls and message.tool_calls[0].function.name == "get_weather"
    assert "city" in json.loads(message.tool_calls[0].function.arguments)
    assert not message.content
    assert message.model_extra["reasoning_content"].strip()
    assert "think>" not in message.model_extra["reasoning_content"]


def test_reasoning_format_none_keeps_the_tags_in_content(client):
    message = ask(client, "plain", extra_body={"grammar": THINKING}).choices[0].message
    assert message.content.startswith("<think>") and "</think>" in message.content
    assert "reasoning_content" not in (message.model_extra or {})


def test_earlier_turns_reasoning_goes_to_qwen3s_template(client, thinking_server):
    """Qwen3's template writes an assistant turn's reasoning_content back in `<think>` tags
    (for the turns after the last user message); the prompt grows by that text."""
    thought = "the user wants the weather so call the tool"
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}  # fmt: skip

    def conversation(reasoning: str | None) -> list[dict]:
        turn = {"role": "assistant", "content": "", "tool_calls": [call]}
        if reasoning is not None:
            turn["reasoning_content"] = reasoning
        return [
            {"role": "user", "content": "What is the weather in Paris?"},
            turn,
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ]

    without = ask(client, messages=conversation(None), tools=TOOLS, max_tokens=4)
    with_thought = ask(client, messages=conversation(thought), tools=TOOLS, max_tokens=4)
    grown = with_thought.usage.prompt_tokens - without.usage.prompt_tokens
    assert grown >= len(token_ids(thinking_server, "qwen3", thought)) + 2
