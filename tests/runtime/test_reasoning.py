"""A thinking model's reply split into reasoning and content, whole and token by token."""

from __future__ import annotations

import pytest

from hearth.runtime.reasoning import Piece, ReasoningStyle, ThinkingSplitter, split_reasoning
from hearth.runtime.requests import ChatRequest, Tool, ToolUse, Turn
from hearth.runtime.tools.plan import plan_tools
from hearth.runtime.tools.reply import ReplyReader

TAGS = ReasoningStyle()
OPENED = ReasoningStyle(opened_in_prompt=True)


def streamed(style: ReasoningStyle, text: str, size: int) -> tuple[str, str]:
    """The reply fed `size` characters at a time, as a stream of tokens would come."""
    splitter = ThinkingSplitter(style)
    pieces = []
    for start in range(0, len(text), size):
        pieces += splitter.feed(text[start : start + size])
    pieces += splitter.finish()
    return (
        "".join(p.text for p in pieces if p.kind == "reasoning"),
        "".join(p.text for p in pieces if p.kind == "content"),
    )


CASES = [
    # (style, reply, reasoning, content)
    (TAGS, "<think>\nsix times seven\n</think>\n\n42", "\nsix times seven\n", "42"),
    (TAGS, "\n<think>a</think>b", "a", "b"),
    (TAGS, "no thinking here", "", "no thinking here"),
    (TAGS, "<thin is not a tag", "", "<thin is not a tag"),
    (TAGS, "<think>cut off by max_tokens", "cut off by max_tokens", ""),
    (
        TAGS,
        "<think>a < b, and </thin is not the end</think>yes",
        "a < b, and </thin is not the end",
        "yes",
    ),
    (TAGS, "<think></think>\n\nstraight answer", "", "straight answer"),
    (OPENED, "the prompt opened it</think>answer", "the prompt opened it", "answer"),
    (OPENED, "never closed", "never closed", ""),
    (TAGS, "answer first <think>then a tag</think>", "", "answer first <think>then a tag</think>"),
]


@pytest.mark.parametrize(("style", "reply", "reasoning", "content"), CASES)
@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_a_reply_splits_the_same_however_it_is_streamed(style, reply, reasoning, content, size):
    assert streamed(style, reply, size) == (reasoning, content)
    assert split_reasoning(style, reply) == (reasoning, content)


def test_no_style_keeps_everything_in_the_content():
    assert split_reasoning(None, "<think>x</think>y") == ("", "<think>x</think>y")


def test_a_partial_tag_is_held_until_it_is_known():
    splitter = ThinkingSplitter(TAGS)
    assert splitter.feed("<thi") == []
    assert splitter.feed("nk>plan</th") == [Piece("reasoning", "plan")]
    assert splitter.reasoning
    assert splitter.feed("ink>") == []
    assert not splitter.reasoning


def weather_plan():
    tool = Tool("get_weather", "The weather", {"type": "object", "properties": {}})
    request = ChatRequest(turns=[Turn("user", "weather?")], tools=ToolUse((tool,)))
    return plan_tools(request, None)


def test_a_call_after_the_thinking_is_a_call_and_one_inside_it_is_not():
    plan = weather_plan()
    opener = plan.call_format.opener
    reply = (
        f'<think>maybe {opener}{{"name": "nope", "arguments": {{}}}}</think>\n'
        f'{opener}{{"name": "get_weather", "arguments": {{}}}}'
    )
    reader = ReplyReader(plan, TAGS)
    pieces = []
    for char in reply:
        pieces += reader.feed(char)
    tail, whole = reader.finish("stop")
    pieces += tail
    assert whole.reasoning.startswith("maybe ")
    assert [call.name for call in whole.calls] == ["get_weather"]
    assert whole.end == "tool_calls"
    assert "".join(p.text for p in pieces if p.kind == "content") == whole.content == ""
    assert "".join(p.text for p in pieces if p.kind == "reasoning") == whole.reasoning


# ---- detection, the prompt's open tag, thinking variables, grammars ----------------------

from hearth.engine.grammar import check_grammar  # noqa: E402
from hearth.runtime.reasoning import (  # noqa: E402
    FAMILY_BY_NAME,
    detect_reasoning,
    thinking_grammar,
    thinking_variables,
)
from hearth.runtime.requests import Thinking  # noqa: E402

QWEN3_TAIL = "{%- if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>"
GPT_OSS = "<|start|>assistant<|channel|>analysis<|message|>{{ message.thinking }}<|end|>"


@pytest.mark.parametrize(
    ("template", "setting", "expected"),
    [
        (QWEN3_TAIL, "auto", TAGS),
        ("{{'<｜Assistant｜><think>\\n'}}", "auto", TAGS),
        (GPT_OSS, "auto", FAMILY_BY_NAME["gpt-oss"].style),
        ("{{ '<|im_start|>assistant\\n' }}", "auto", None),
        (None, "auto", None),
        (QWEN3_TAIL, "none", None),
        ("{{ '<|im_start|>assistant\\n' }}", "think-tags", TAGS),
        (None, "gpt-oss", FAMILY_BY_NAME["gpt-oss"].style),
    ],
)
def test_style_comes_from_the_template_unless_the_setting_names_one(template, setting, expected):
    assert detect_reasoning(template, setting) == expected


@pytest.mark.parametrize(
    ("markup", "opened"),
    [
        ("<｜Assistant｜><think>\n", True),  # DeepSeek-R1 distills
        ("<|im_start|>assistant\n", False),  # Qwen3 thinking: the model opens the tag
        ("<|im_start|>assistant\n<think>\n\n</think>\n\n", False),  # Qwen3, thinking off
        ("</think>older<think>\n", True),
    ],
)
def test_opened_in_prompt_is_read_from_the_generation_prompt(markup, opened):
    assert TAGS.after_prompt(markup).opened_in_prompt is opened


def test_thinking_choice_reaches_only_templates_that_read_it():
    assert thinking_variables(Thinking(), frozenset()) == {}
    assert thinking_variables(Thinking(), frozenset({"enable_thinking"})) == {
        "enable_thinking": True
    }
    off = Thinking(enabled=False)
    assert thinking_variables(off, frozenset({"enable_thinking"})) == {"enable_thinking": False}
    assert thinking_variables(off, frozenset({"reasoning_effort"})) == {"reasoning_effort": "low"}
    high = Thinking(enabled=True, effort="high")
    assert thinking_variables(high, frozenset({"reasoning_effort"})) == {"reasoning_effort": "high"}


@pytest.mark.parametrize("style", [TAGS, OPENED, FAMILY_BY_NAME["gpt-oss"].style])
def test_thinking_grammar_parses_and_keeps_the_answer_rules(style):
    grammar = thinking_grammar(style, 'root ::= "{" inner "}"\ninner ::= [a-z]*')
    check_grammar(grammar)
    assert 'hearth-answer ::= "{" inner "}"' in grammar
    assert "inner ::= [a-z]*" in grammar
    optional = "?" in grammar.splitlines()[1]
    assert optional is not style.opened_in_prompt  # opened in the prompt: it must close
