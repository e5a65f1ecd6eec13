"""What the runtime is asked to generate, in its own terms.

Each API the server speaks turns its wire request into one of these (a method on the wire
model), so the chat pipeline, the tool planner and the grammar builder read one shape
whatever the front-end: OpenAI's chat completions and Responses today, Anthropic's Messages
next. Nothing here knows a field name of any API, except `param`, which says where a part
came from so that an error can point at it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Literal

from hearth.engine.base import SamplingParams

Role = Literal["system", "user", "assistant", "tool"]
Truncation = Literal["disabled", "auto"]


@dataclass(frozen=True)
class ToolCall:
    """A call an assistant turn made, as the history carries it."""

    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass(frozen=True)
class Turn:
    """One message of a conversation, its content already flattened to text."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # a tool turn: the call it answers
    reasoning: str | None = None  # an assistant turn's reasoning, sent back by the client


@dataclass(frozen=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict | None = None  # a JSON schema of the arguments
    # The definition as the client sent it: a chat template that renders tools itself may
    # print any key it is given.
    as_sent: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ToolUse:
    """The tools a reply may call, and how it must."""

    tools: tuple[Tool, ...]
    choice: Literal["auto", "none", "required"] = "auto"
    named: str | None = None  # the one tool the reply must call
    parallel: bool = True  # whether the reply may hold several calls

    @property
    def active(self) -> bool:
        """Whether the reply may (or must) be tool calls."""
        return bool(self.tools) and self.choice != "none"

    @property
    def forced(self) -> bool:
        return self.choice == "required" or self.named is not None

    def allowed(self) -> tuple[Tool, ...]:
        if self.named is None:
            return self.tools
        return tuple(tool for tool in self.tools if tool.name == self.named)


@dataclass(frozen=True)
class OutputFormat:
    """What the reply's text must be: JSON matching `schema`, or text matching a GBNF
    `grammar` (exactly one of the two)."""

    schema: dict | None = None
    grammar: str | None = None
    param: str = "response_format"  # where the request said it, for a refusal


@dataclass(frozen=True)
class Sampling:
    """The samplers a request set; each left as None takes the model's default."""

    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    logit_bias: tuple[tuple[int, float], ...] | None = None

    def over(self, defaults: SamplingParams) -> SamplingParams:
        chosen = {
            spec.name: getattr(self, spec.name)
            for spec in fields(self)
            if getattr(self, spec.name) is not None
        }
        return replace(defaults, **chosen)


@dataclass(frozen=True)
class Thinking:
    """What a request asks of a thinking model's reasoning (each API words it its own way:
    OpenAI's reasoning_effort, Anthropic's thinking)."""

    enabled: bool | None = None  # None: the model's default; False: off where it can be
    budget_tokens: int | None = None  # reasoning tokens before the closing tag is written
    effort: Literal["low", "medium", "high"] | None = None  # for templates that take one


@dataclass(frozen=True)
class ChatRequest:
    turns: Sequence[Turn]
    max_tokens: int | None = None
    sampling: Sampling = Sampling()
    stop: tuple[str, ...] = ()
    n: int = 1
    logprobs: int | None = None  # alternatives per token; None: no logprobs
    truncation: Truncation | None = None  # None: the server's policy decides
    output: OutputFormat | None = None
    tools: ToolUse | None = None
    thinking: Thinking = Thinking()
    # max_tokens as a ceiling, lowered to the room the prompt leaves in the context rather
    # than refused (Anthropic's clients send a large max_tokens whatever the model).
    fit_max_tokens: bool = False
    # Extra variables for the model's chat template (enable_thinking, ...), as sent.
    template_kwargs: Mapping[str, object] = field(default_factory=dict)

    def has_tool_history(self) -> bool:
        return any(turn.role == "tool" or turn.tool_calls for turn in self.turns)


@dataclass(frozen=True)
class TextRequest:
    """A raw prompt, continued as it is (no chat format)."""

    prompt: str
    max_tokens: int | None = None
    sampling: Sampling = Sampling()
    stop: tuple[str, ...] = ()
    n: int = 1
    logprobs: int | None = None
    grammar: str | None = None
