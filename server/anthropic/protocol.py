"""The Messages API's wire format (Anthropic's), and its request in runtime terms.

Fields follow the order of Anthropic's API reference. A conversation's content blocks become
the runtime's turns (`to_runtime`): text joins into a turn, `tool_use` blocks become the
assistant turn's calls, each `tool_result` a tool turn answering its call. What Hearth cannot
honour is refused with a 400 naming the block (images and documents until Hearth has vision,
server tools), never dropped silently. Earlier thinking blocks are dropped, as Anthropic's API
drops them from the context of most models.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hearth.runtime.requests import (
    ChatRequest,
    OutputFormat,
    Sampling,
    Thinking,
    Tool,
    ToolCall,
    ToolUse,
    Turn,
)
from hearth.server.openai.protocol import RequestBody

# ------------------------------------------------------------------------- content blocks


class _Block(BaseModel):
    # cache_control, citations and other annotations are accepted and ignored: Hearth's
    # prompt cache reuses any common prefix by itself.
    model_config = ConfigDict(extra="ignore")


class TextBlock(_Block):
    type: Literal["text"]
    text: str


class _Refused(_Block):
    """A block Hearth cannot read yet: refused with a 400 naming it."""

    reason: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _refuse(cls, value: object) -> object:
        # pydantic turns ValueError into a 400 naming the block.
        raise ValueError(cls.reason)


class ImageBlock(_Refused):
    type: Literal["image"]
    reason: ClassVar[str] = "image blocks are not supported: this server has no vision model yet"


class DocumentBlock(_Refused):
    type: Literal["document"]
    reason: ClassVar[str] = (
        "document blocks are not supported: send the document's text as a text block"
    )


class ToolUseBlock(_Block):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict


class ToolResultBlock(_Block):
    type: Literal["tool_result"]
    tool_use_id: str
    content: (
        str | list[Annotated[TextBlock | ImageBlock | DocumentBlock, Field(discriminator="type")]]
    ) = ""
    is_error: bool = False

    @field_validator("content", mode="wrap")
    @classmethod
    def _located(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        return _blocks(value, handler)

    def text(self) -> str:
        text = (
            self.content
            if isinstance(self.content, str)
            else "\n\n".join(block.text for block in self.content if isinstance(block, TextBlock))
        )
        # The model has no other way to learn that the tool failed.
        return f"Error: {text}" if self.is_error else text


class ThinkingBlock(_Block):
    type: Literal["thinking"]
    thinking: str
    signature: str = ""


class RedactedThinkingBlock(_Block):
    type: Literal["redacted_thinking"]
    data: str


ContentBlock = Annotated[
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock,
    Field(discriminator="type"),
]


_BLOCK_TYPES = frozenset(
    ("text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking")
)


def _blocks(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    """Validate text-or-blocks content, its errors located as the client wrote the blocks.

    pydantic locates an error by the union branches it went through (`str`, then the list
    and the block's type): `messages[0].content.list[...][1].image`. This gives
    `messages[0].content[1]`, and `...content[1].type` for a type no block has.
    """
    try:
        return handler(value)
    except ValidationError as error:
        if not isinstance(value, list):
            raise
        located = []
        for line in error.errors():
            branch, *where = line["loc"]
            if not str(branch).startswith("list["):
                continue  # the `str` branch: the client sent a list
            if line["type"] in ("union_tag_invalid", "union_tag_not_found"):
                path = (*where, "type")
            elif len(where) > 1 and where[1] in _BLOCK_TYPES:
                path = (where[0], *where[2:])  # past the branch of the block's type
            else:
                path = tuple(where)
            located.append(
                {
                    "type": PydanticCustomError(line["type"], line["msg"]),
                    "loc": path,
                    "input": line["input"],
                }
            )
        raise ValidationError.from_exception_data(error.title, located) from None


class MessageParam(_Block):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]

    @field_validator("content", mode="wrap")
    @classmethod
    def _located(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        return _blocks(value, handler)

    def blocks(self) -> list[ContentBlock]:
        if isinstance(self.content, str):
            return [TextBlock(type="text", text=self.content)]
        return list(self.content)

    def to_turns(self) -> list[Turn]:
        """The message as runtime turns: an assistant turn with its calls, or a user's text
        and its tool results, each result a tool turn, in the order they were written."""
        blocks = self.blocks()
        if self.role == "assistant":
            text = "\n\n".join(b.text for b in blocks if isinstance(b, TextBlock))
            calls = tuple(
                ToolCall(b.id, b.name, json.dumps(b.input, ensure_ascii=False))
                for b in blocks
                if isinstance(b, ToolUseBlock)
            )
            # Earlier reasoning goes to a template that reads it (Qwen3's), as plain text.
            thought = "\n\n".join(b.thinking for b in blocks if isinstance(b, ThinkingBlock))
            return [Turn("assistant", text, tool_calls=calls, reasoning=thought or None)]
        turns: list[Turn] = []
        text: list[str] = []
        for block in blocks:
            if isinstance(block, TextBlock):
                text.append(block.text)
            elif isinstance(block, ToolResultBlock):
                if text:
                    turns.append(Turn("user", "\n\n".join(text)))
                    text = []
                turns.append(Turn("tool", block.text(), tool_call_id=block.tool_use_id))
        if text or not turns:
            turns.append(Turn("user", "\n\n".join(text)))
        return turns


# Which blocks each role may send.
_ROLE_BLOCKS = {
    "user": (TextBlock, ToolResultBlock),
    "assistant": (TextBlock, ToolUseBlock, ThinkingBlock, RedactedThinkingBlock),
}


# ------------------------------------------------------------------------------ tools


class ToolParam(_Block):
    # Server tools (web search, code execution...) have their own types and no schema.
    type: Literal["custom"] | None = None
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    input_schema: dict

    def to_runtime(self) -> Tool:
        return Tool(
            name=self.name,
            description=self.description,
            parameters=self.input_schema,
            # The shape chat templates that render tools were written for (OpenAI's).
            as_sent={
                "type": "function",
                "function": {
                    "name": self.name,
                    "description": self.description or "",
                    "parameters": self.input_schema,
                },
            },
        )


class ToolChoiceAuto(_Block):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(_Block):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(_Block):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(_Block):
    type: Literal["none"]


ToolChoice = Annotated[
    ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone, Field(discriminator="type")
]


class ThinkingEnabled(_Block):
    type: Literal["enabled"]
    budget_tokens: int = Field(ge=1)


class ThinkingDisabled(_Block):
    type: Literal["disabled"]


class ThinkingAdaptive(_Block):
    type: Literal["adaptive"]


ThinkingConfig = Annotated[
    ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive, Field(discriminator="type")
]


class Metadata(_Block):
    user_id: str | None = None


# ---------------------------------------------------------------------------- requests


class ConversationFields(RequestBody):
    """What a Messages request and a token count share: the conversation and its tools."""

    messages: list[MessageParam] = Field(min_length=1)
    model: str
    system: str | list[TextBlock] | None = None
    thinking: ThinkingConfig | None = None
    tool_choice: ToolChoice | None = None
    tools: list[ToolParam] | None = None

    @field_validator("system", mode="wrap")
    @classmethod
    def _located(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        return _blocks(value, handler)

    @model_validator(mode="after")
    def _consistent(self) -> ConversationFields:
        known: set[str] = set()
        for i, message in enumerate(self.messages):
            for j, block in enumerate(message.blocks()):
                where = ("messages", i, "content", j)
                if not isinstance(block, _ROLE_BLOCKS[message.role]):
                    raise _field_error(
                        where, f"{message.role} messages cannot hold {block.type} blocks"
                    )
                if isinstance(block, ToolUseBlock):
                    known.add(block.id)
                if isinstance(block, ToolResultBlock) and block.tool_use_id not in known:
                    raise _field_error(
                        (*where, "tool_use_id"),
                        f"tool_result answers '{block.tool_use_id}', which no earlier "
                        "tool_use block has",
                    )
        names = {tool.name for tool in self.tools or ()}
        if isinstance(self.tool_choice, ToolChoiceTool) and self.tool_choice.name not in names:
            raise _field_error(
                ("tool_choice", "name"), f"tool_choice names '{self.tool_choice.name}', not a tool"
            )
        if isinstance(self.tool_choice, ToolChoiceAny) and not names:
            raise _field_error(("tool_choice",), "tool_choice 'any' needs tools")
        return self

    def turns(self) -> list[Turn]:
        system = (
            self.system
            if isinstance(self.system, str) or self.system is None
            else "\n\n".join(block.text for block in self.system)
        )
        turns = [Turn("system", system)] if system else []
        for message in self.messages:
            turns.extend(message.to_turns())
        return turns

    def tool_use(self) -> ToolUse | None:
        if not self.tools:
            return None
        choice = self.tool_choice
        named = choice.name if isinstance(choice, ToolChoiceTool) else None
        mode = {"any": "required", "none": "none"}.get(choice.type if choice else "auto", "auto")
        return ToolUse(
            tools=tuple(tool.to_runtime() for tool in self.tools),
            choice=mode,  # type: ignore[arg-type]
            named=named,
            parallel=self._parallel(),
        )

    def _parallel(self) -> bool:
        """Whether the reply may hold several tool_use blocks.

        A named tool means one call unless the client sets disable_parallel_tool_use to
        false itself: as with OpenAI's named tool_choice, a small model otherwise called the
        same tool again and again until max_tokens cut it off.
        """
        choice = self.tool_choice
        disable = getattr(choice, "disable_parallel_tool_use", None)
        if disable is not None:
            return not disable
        return not isinstance(choice, ToolChoiceTool)

    def thinking_asked(self) -> Thinking:
        if isinstance(self.thinking, ThinkingEnabled):
            return Thinking(enabled=True, budget_tokens=self.thinking.budget_tokens)
        if isinstance(self.thinking, ThinkingDisabled):
            return Thinking(enabled=False)
        if isinstance(self.thinking, ThinkingAdaptive):
            return Thinking(enabled=True)
        return Thinking()

    def to_runtime(self) -> ChatRequest:
        return ChatRequest(
            turns=self.turns(), tools=self.tool_use(), thinking=self.thinking_asked()
        )


class MessagesRequest(ConversationFields):
    max_tokens: int = Field(ge=1)
    metadata: Metadata | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)

    # ---- Hearth extensions (not in Anthropic's API) -------------------------------------
    # As chat completions take it: a GBNF grammar (root rule `root`) the reply must follow.
    grammar: str | None = Field(default=None, description="GBNF the output must follow.")
    # ---- end of Hearth extensions --------------------------------------------------------

    @model_validator(mode="after")
    def _one_constraint(self) -> MessagesRequest:
        active = bool(self.tools) and not isinstance(self.tool_choice, ToolChoiceNone)
        if self.grammar is not None and active:
            raise _field_error(("grammar",), "tools cannot be combined with grammar")
        return self

    def stops(self) -> tuple[str, ...]:
        return tuple(stop for stop in self.stop_sequences or () if stop)

    def to_runtime(self) -> ChatRequest:
        """The request in the runtime's terms (runtime/requests.py)."""
        output = OutputFormat(grammar=self.grammar, param="grammar") if self.grammar else None
        return ChatRequest(
            turns=self.turns(),
            max_tokens=self.max_tokens,
            sampling=Sampling(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p),
            stop=self.stops(),
            output=output,
            tools=self.tool_use(),
            thinking=self.thinking_asked(),
            # Anthropic's max_tokens bounds the reply; its clients send 32000 to a model
            # whose context may hold 8192 in all, and expect a reply that stops at the end.
            fit_max_tokens=True,
        )


class CountTokensRequest(ConversationFields):
    """POST /v1/messages/count_tokens: the conversation a Messages request would send."""


def _field_error(where: tuple[str | int, ...], message: str) -> ValidationError:
    """A 400 naming the field at `where`, raised from a validator of the whole request."""
    return ValidationError.from_exception_data(
        "MessagesRequest",
        [{"type": PydanticCustomError("invalid_value", message), "loc": where, "input": None}],
    )


# ---------------------------------------------------------------------------- responses


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class OutputText(BaseModel):
    type: Literal["text"] = "text"
    text: str


class OutputThinking(BaseModel):
    type: Literal["thinking"] = "thinking"
    thinking: str
    # Anthropic signs its thinking so that it can check a block sent back to it; Hearth has
    # nothing to check, but the SDKs' types require the field: always the empty string.
    signature: str = ""


class OutputToolUse(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict


OutputBlock = Annotated[OutputText | OutputThinking | OutputToolUse, Field(discriminator="type")]


class Usage(BaseModel):
    # Anthropic counts a prompt's tokens in three parts that add up to the whole:
    # input_tokens are the ones read anew, cache_read_input_tokens came from the cache.
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class Message(BaseModel):
    id: str = Field(default_factory=message_id)
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[OutputBlock]
    model: str
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: Usage


class TokenCount(BaseModel):
    input_tokens: int


ErrorType = Literal[
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
]


class AnthropicErrorDetail(BaseModel):
    type: ErrorType
    message: str


class AnthropicErrorResponse(BaseModel):
    type: Literal["error"] = "error"
    error: AnthropicErrorDetail
