"""The chat completions endpoint's wire format (OpenAI's), and its request in runtime terms."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hearth.runtime.requests import ChatRequest, OutputFormat, Thinking, Tool, ToolUse
from hearth.server.openai.protocol import (
    MAX_TOP_LOGPROBS,
    ChatMessage,
    ChoiceLogprobs,
    Choices,
    FinishReason,
    FunctionCall,
    FunctionDefinition,
    JSONObjectResponseFormat,
    JSONSchemaResponseFormat,
    NamedFunction,
    NamedToolChoice,
    ResponseFormat,
    SamplingFields,
    TextResponseFormat,
    ToolCall,
    ToolChoice,
    ToolDefinition,
    Truncation,
    Usage,
    unix_now,
)


def _chat_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    model: str
    # Deprecated by OpenAI for tools and tool_choice, and served as them (see
    # `_legacy_functions`): legacy clients still send these and need their calls back.
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    functions: list[FunctionDefinition] | None = Field(default=None, min_length=1)
    logprobs: bool | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    n: Choices = 1
    parallel_tool_calls: bool | None = True
    reasoning_effort: ReasoningEffort | None = None
    response_format: ResponseFormat | None = None
    tool_choice: ToolChoice | None = None
    tools: list[ToolDefinition] | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)

    # ---- Hearth extensions (not in the OpenAI API) --------------------------------------
    # The Responses API's name: "auto" drops the oldest turns when the conversation does not
    # fit (the response says how many in X-Hearth-Dropped-Messages); "disabled" answers 400
    # context_length_exceeded, as OpenAI does. Left out: the server's --truncation.
    truncation: Truncation | None = Field(
        default=None, description="'auto' drops the oldest turns to fit the context."
    )
    # vLLM's and llama.cpp's name: extra variables for the model's chat template
    # (`{"enable_thinking": false}`); the template's standard variables cannot be replaced.
    chat_template_kwargs: dict[str, Any] | None = Field(
        default=None, description="Extra variables for the model's chat template."
    )
    # A thinking model's reasoning ends after this many tokens: its closing tag is written
    # for it, and the answer follows.
    reasoning_budget: int | None = Field(
        default=None, ge=0, description="Most tokens a thinking model may reason for."
    )
    # ---- end of Hearth extensions --------------------------------------------------------

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs_need_logprobs(cls, top: int | None, info: ValidationInfo) -> int | None:
        if top is not None and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return top

    def token_logprobs(self) -> int | None:
        """How many alternatives to report per token, or None for no logprobs."""
        return (self.top_logprobs or 0) if self.logprobs else None

    @model_validator(mode="after")
    def _legacy_functions(self) -> ChatCompletionRequest:
        """The deprecated function calling as the tool calling that replaced it.

        `functions` become `tools`, `function_call` the `tool_choice` (one call: a legacy
        reply has room for one), and the history's `function_call` turns and `function`
        results become tool calls and tool results. The reply is written back in the legacy
        shape (`message.function_call`, finish_reason `function_call`). Ignoring these
        fields answered a legacy client with prose and no call.
        """
        if self.functions is not None and self.tools is not None:
            raise _field_error("functions", "send either functions or tools, not both")
        if self.function_call is not None and self.tool_choice is not None:
            raise _field_error(
                "function_call", "send either function_call or tool_choice, not both"
            )
        if self.function_call is not None and self.functions is None:
            raise _field_error("function_call", "function_call needs functions")
        self.messages = _without_legacy_turns(self.messages)
        if self.functions is None:
            return self
        names = {function.name for function in self.functions}
        if isinstance(self.function_call, NamedFunction):
            if self.function_call.name not in names:
                raise _field_error(
                    "function_call",
                    f"function_call names '{self.function_call.name}', which is not in functions",
                )
            self.tool_choice = NamedToolChoice(type="function", function=self.function_call)
        elif self.function_call is not None:
            self.tool_choice = self.function_call
        self.tools = [ToolDefinition(type="function", function=f) for f in self.functions]
        self.parallel_tool_calls = False
        return self

    def legacy_functions(self) -> bool:
        """Whether the reply's call goes back as the deprecated `function_call`."""
        return self.functions is not None

    @model_validator(mode="after")
    def _one_constraint(self) -> ChatCompletionRequest:
        if self.grammar is not None and self.structured_format() is not None:
            raise ValueError("send either grammar or a json response_format, not both")
        if self.tools_active() and (self.grammar is not None or self.structured_format()):
            raise ValueError("tools cannot be combined with grammar or a json response_format")
        if isinstance(self.tool_choice, NamedToolChoice):
            named = self.tool_choice.function.name
            if named not in {tool.function.name for tool in self.tools or ()}:
                raise ValueError(f"tool_choice names '{named}', which is not in tools")
        elif self.tool_choice == "required" and not self.tools:
            raise ValueError("tool_choice 'required' needs tools")
        return self

    def parallel_calls(self) -> bool:
        """Whether the reply may hold several tool calls.

        A named tool_choice means one call of that function unless the client sets
        parallel_tool_calls to true itself: under the default, a small model called the same
        function again and again until max_tokens cut it off.
        """
        if self.parallel_tool_calls is False:
            return False
        if isinstance(self.tool_choice, NamedToolChoice):
            return "parallel_tool_calls" in self.model_fields_set
        return True

    def tools_active(self) -> bool:
        """Whether the reply may (or must) be tool calls."""
        return bool(self.tools) and self.tool_choice != "none"

    def structured_format(self) -> JSONObjectResponseFormat | JSONSchemaResponseFormat | None:
        """The response_format when it constrains the reply (anything but text)."""
        if isinstance(self.response_format, TextResponseFormat):
            return None
        return self.response_format

    def token_limit(self) -> int | None:
        """max_completion_tokens supersedes the deprecated max_tokens when both are sent."""
        return self.max_completion_tokens or self.max_tokens

    def to_runtime(self) -> ChatRequest:
        """The request in the runtime's terms (runtime/requests.py)."""
        return ChatRequest(
            turns=[message.to_turn() for message in self.messages],
            max_tokens=self.token_limit(),
            sampling=self.sampling(),
            stop=self.stop_sequences(),
            n=self.n or 1,
            logprobs=self.token_logprobs(),
            truncation=self.truncation,
            output=self._output_format(),
            tools=self._tool_use(),
            thinking=thinking(self.reasoning_effort, self.reasoning_budget),
            template_kwargs=self.chat_template_kwargs or {},
        )

    def _output_format(self) -> OutputFormat | None:
        structured = self.structured_format()
        if isinstance(structured, JSONSchemaResponseFormat):
            schema = structured.json_schema.json_schema
            return OutputFormat(
                schema=schema if schema is not None else {"type": "object"},
                param="response_format.json_schema.schema",
            )
        if isinstance(structured, JSONObjectResponseFormat):
            return OutputFormat(schema={"type": "object"}, param="response_format")
        if self.grammar is not None:
            return OutputFormat(grammar=self.grammar, param="grammar")
        return None

    def _tool_use(self) -> ToolUse | None:
        if not self.tools:
            return None
        named = (
            self.tool_choice.function.name
            if isinstance(self.tool_choice, NamedToolChoice)
            else None
        )
        choice = "auto" if named is not None or self.tool_choice is None else self.tool_choice
        return ToolUse(
            tools=tuple(
                Tool(
                    name=tool.function.name,
                    description=tool.function.description,
                    parameters=tool.function.parameters,
                    # As the client sent it: a template that renders tools may print any key.
                    as_sent=tool.model_dump(exclude_unset=True),
                )
                for tool in self.tools
            ),
            choice=choice,
            named=named,
            parallel=self.parallel_calls(),
        )


# OpenAI's reasoning efforts. `none` and `minimal` switch thinking off where the model's
# template can; the others are accepted, and passed to a template that takes an effort.
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
EFFORT = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def thinking(effort: ReasoningEffort | None, budget: int | None = None) -> Thinking:
    """An OpenAI reasoning effort (chat's reasoning_effort, Responses' reasoning.effort)."""
    if effort in ("none", "minimal"):
        return Thinking(enabled=False, budget_tokens=budget)
    return Thinking(
        enabled=True if effort else None,
        budget_tokens=budget,
        effort=EFFORT[effort] if effort else None,  # type: ignore[arg-type]
    )


def _field_error(field: str, message: str) -> ValidationError:
    """A 400 naming `field`, raised from a validator of the whole request."""
    return ValidationError.from_exception_data(
        "ChatCompletionRequest",
        [{"type": PydanticCustomError("invalid_value", message), "loc": (field,), "input": None}],
    )


def _without_legacy_turns(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Deprecated function-calling turns as tool-calling ones: an assistant's
    `function_call` as its one tool call, a `function` message as the result answering it."""
    modern, last_call = [], None
    for message in messages:
        if message.role == "assistant" and message.function_call and not message.tool_calls:
            last_call = ToolCall(function=message.function_call)
            message = message.model_copy(update={"function_call": None, "tool_calls": [last_call]})
        elif message.role == "function":
            message = message.model_copy(
                update={"role": "tool", "tool_call_id": last_call.id if last_call else None}
            )
        modern.append(message)
    return modern


def _without_absent_parts(data: dict) -> dict:
    # OpenAI leaves `tool_calls` (and the deprecated `function_call`) out of a message or
    # delta that has none; some clients read a null there as "calls follow". A model that
    # does not think has no reasoning fields, as OpenAI's chat completions have none.
    for key in ("function_call", "tool_calls", "reasoning_content", "reasoning"):
        if data.get(key) is None:
            data.pop(key, None)
    return data


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    function_call: FunctionCall | None = None  # the reply to deprecated `functions`
    tool_calls: list[ToolCall] | None = None
    # A thinking model's reasoning, under both names clients look for (DeepSeek's and
    # vLLM's `reasoning_content`, Ollama's and newer vLLM's `reasoning`).
    reasoning_content: str | None = None
    reasoning: str | None = None

    @model_serializer(mode="wrap")
    def _omit_absent_parts(self, handler: SerializerFunctionWrapHandler) -> dict:
        return _without_absent_parts(handler(self))


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=_chat_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=unix_now)
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


class FunctionCallDelta(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta


class ChatDelta(BaseModel):
    """One chunk's change to the message. Keys not set are left out, as OpenAI does: only
    the first chunk carries `role` and the finishing chunk's delta is `{}`. Clients that
    append every `content` they see (or check `"role" in delta`) go wrong on nulls."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    function_call: FunctionCallDelta | None = None  # the reply to deprecated `functions`
    tool_calls: list[ToolCallDelta] | None = None
    reasoning_content: str | None = None  # see AssistantMessage
    reasoning: str | None = None

    @model_serializer(mode="wrap")
    def _omit_absent_parts(self, handler: SerializerFunctionWrapHandler) -> dict:
        return _without_absent_parts(handler(self))

    @model_serializer(mode="wrap")
    def _without_nulls(self, handler: SerializerFunctionWrapHandler) -> dict:
        return {key: value for key, value in handler(self).items() if value is not None}


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
