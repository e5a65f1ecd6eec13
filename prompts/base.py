"""What a chat format is: the interface between a conversation and the text a model reads.

A chat format turns OpenAI-style messages into one prompt string, plus what the engine needs
to run it: the stop strings that end the assistant's turn and how to tokenize the text. Two
kinds exist: reverse-prompt transcripts (prompts/*.txt, in the style of llama.cpp's
chat-with-bob.txt) and the chat template a model ships in its GGUF metadata.

Nothing here knows about HTTP or llama.cpp; token counting comes in as a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCallTurn:
    """A tool call an assistant message made, for templates that write calls themselves."""

    id: str
    name: str
    arguments: dict


@dataclass(frozen=True)
class Message:
    role: Role
    content: str
    # Only for chat templates that know tools (`ModelChatTemplate.knows_tools`); other
    # formats receive tool turns already written out as text.
    tool_calls: tuple[ToolCallTurn, ...] = ()
    tool_call_id: str | None = None
    # An assistant turn's reasoning: a chat template that reads it (Qwen3's
    # `reasoning_content`, gpt-oss's `thinking`) gets it; other formats leave it out.
    reasoning: str | None = None


@dataclass(frozen=True)
class TextPiece:
    """A stretch of a rendered prompt, and whether special-token text in it may become a
    control token: true for a template's own markup, false for what a user wrote."""

    text: str
    special: bool


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    stop: tuple[str, ...] = ()
    add_special: bool = True  # the tokenizer adds the model's BOS
    parse_special: bool = False  # special-token text such as <|im_start|> becomes that token
    # When set, `text` is these pieces joined, and each is tokenized by its own `special`
    # (parse_special is then ignored): message text never becomes control tokens.
    pieces: tuple[TextPiece, ...] = ()
    dropped_messages: int = 0  # oldest messages left out so the conversation fits
    trim_reply: bool = False  # strip whitespace around the reply (transcripts: after "Bob:")


TokenCounter = Callable[[RenderedPrompt], int]


@dataclass(frozen=True)
class ModelTemplate:
    """A model's own chat template and the special tokens it refers to, from the GGUF."""

    source: str
    bos_token: str
    eos_token: str
    add_bos: bool
    # Opt-in to the old behaviour: special-token text inside messages becomes control tokens.
    special_tokens_in_content: bool = False


class ChatFormat(Protocol):
    name: str
    knows_tools: bool  # renders tools, tool calls and tool results itself
    # The variables a model's chat template reads besides the standard ones (empty for a
    # transcript): `enable_thinking`, `reasoning_effort`...
    variables: frozenset[str]

    def with_tools(self, tools: list[dict]) -> ChatFormat: ...

    def with_variables(self, variables: dict[str, object]) -> ChatFormat:
        """This format, rendering with these extra template variables (as a request's
        chat_template_kwargs sends them); a format without a template is unchanged."""
        ...

    def render(
        self,
        messages: Sequence[Message],
        *,
        count_tokens: TokenCounter | None = None,
        max_prompt_tokens: int | None = None,
    ) -> RenderedPrompt:
        """Render the conversation, ending where the assistant's reply begins.

        With a token counter and a budget, the oldest exchanges are dropped until the prompt
        fits (system text, transcript preamble/examples and the newest user message stay);
        raises PromptTooLong when even that cannot fit, PromptRenderFailed when a model
        template fails.
        """
        ...


class PromptError(Exception):
    """Base for chat format errors."""


class PromptTooLong(PromptError):
    def __init__(self, *, needed: int, limit: int) -> None:
        super().__init__(f"the prompt needs {needed} tokens but only {limit} fit")
        self.needed = needed
        self.limit = limit


class PromptRenderFailed(PromptError):
    """A model's chat template raised or refused this conversation."""


class TemplateOverBudget(PromptRenderFailed):
    """A model's chat template ran past its time or size budget: the template is broken."""


class PromptFileError(PromptError):
    """A transcript file cannot be understood. The message names the file and the problem."""
