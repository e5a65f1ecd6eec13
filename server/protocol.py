"""The OpenAI wire format, as pydantic models.

Fields follow the order of the OpenAI API reference. Fields we accept but cannot honour yet
are validated here so that a client gets a 400 naming the parameter instead of silently
different behaviour. Hearth's own sampling extensions live in one fenced block per request
type, and turning a request into engine parameters is a method on the request model.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from typing import Annotated, Literal

from hearth.server.engine.base import SamplingParams
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

# Response header: how many of the oldest messages were left out to fit the context.
DROPPED_MESSAGES_HEADER = "X-Hearth-Dropped-Messages"


def _chat_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex}"


def _now() -> int:
    return int(time.time())


def _has_lone_surrogate(value: object) -> bool:
    """Whether any string in `value` holds a lone UTF-16 surrogate such as "\\ud800".

    JSON may spell one (`"\\ud800"` is valid JSON) but no UTF-8 text can hold it, so it
    would fail later, in the tokenizer or while writing the error body, as a 500.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, BaseModel):
        value = value.__dict__
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_lone_surrogate(item) for item in value)
    return False


class RequestBody(BaseModel):
    """A request's body: unknown fields ignored, text checked to be real Unicode."""

    # Unknown fields are ignored: clients and SDKs add new optional fields faster than any
    # server can follow, and refusing them would break clients that merely send defaults.
    model_config = ConfigDict(extra="ignore")

    @field_validator("*")
    @classmethod
    def _utf8_only(cls, value: object) -> object:
        if _has_lone_surrogate(value):
            raise ValueError("text must be valid Unicode (it holds a lone UTF-16 surrogate)")
        return value


# ---------------------------------------------------------------------------- messages


class TextContentPart(BaseModel):
    type: Literal["text"]
    text: str


class ImageContentPart(BaseModel):
    type: Literal["image_url"]
    image_url: dict


ContentPart = Annotated[TextContentPart | ImageContentPart, Field(discriminator="type")]


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class FunctionCall(BaseModel):
    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCall(BaseModel):
    id: str = Field(default_factory=_call_id)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(RequestBody):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # assistant turns that called tools
    tool_call_id: str | None = None  # a tool turn: the call it answers

    @field_validator("content")
    @classmethod
    def _text_only(cls, content: str | list | None) -> str | list | None:
        if isinstance(content, list):
            for part in content:
                if isinstance(part, ImageContentPart):
                    # pydantic turns ValueError (not TypeError) into a 400 naming the field.
                    raise ValueError("image content is not supported by this model")  # noqa: TRY004
        return content

    def text(self) -> str:
        """The message's text: a string as is, text parts joined in order."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextContentPart))


class StreamOptions(BaseModel):
    include_usage: bool = False


class TextResponseFormat(BaseModel):
    type: Literal["text"]


class JSONObjectResponseFormat(BaseModel):
    type: Literal["json_object"]


class JSONSchemaSpec(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    # `schema` would shadow pydantic's BaseModel.schema; the wire name stays `schema`.
    json_schema: dict | None = Field(default=None, alias="schema")
    strict: bool | None = False


class JSONSchemaResponseFormat(BaseModel):
    type: Literal["json_schema"]
    json_schema: JSONSchemaSpec


ResponseFormat = Annotated[
    TextResponseFormat | JSONObjectResponseFormat | JSONSchemaResponseFormat,
    Field(discriminator="type"),
]


class FunctionDefinition(BaseModel):
    name: str = Field(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    parameters: dict | None = None
    strict: bool | None = False


class ToolDefinition(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


Stop = str | list[str] | None


def _stop_list(stop: Stop) -> tuple[str, ...]:
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else stop
    return tuple(s for s in items if s)


def _check_stop(stop: Stop) -> Stop:
    if isinstance(stop, list) and len(stop) > 4:
        raise ValueError("at most 4 stop sequences are allowed")
    return stop


# A token id as OpenAI sends it: plain ASCII digits. str.isdigit() also admits "²" and
# other Unicode digits that int() refuses, and nine digits keep int() and llama.cpp's
# 32-bit token ids out of trouble (no vocabulary comes near a billion tokens).
_TOKEN_ID = re.compile(r"[0-9]{1,9}")


def _check_logit_bias(bias: dict[str, float] | None) -> dict[str, float] | None:
    if bias is None:
        return None
    for key, value in bias.items():
        if not _TOKEN_ID.fullmatch(key):
            raise ValueError(f"logit_bias keys must be token ids, got {key[:20]!r}")
        if not -100 <= value <= 100:
            raise ValueError(f"logit_bias values must be between -100 and 100, got {value}")
    return bias


class _SamplingFields(RequestBody):
    """Sampling fields shared by chat and text completions (OpenAI names and ranges)."""

    # A sampling field left out (or null) takes the server's default from its settings,
    # as llama.cpp's server does: OpenAI's temperature 1.0 suits large hosted models, not
    # the small local ones Hearth often serves.
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: int | None = None
    stop: Stop = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    user: str | None = None

    # ---- Hearth extensions (not in the OpenAI API) --------------------------------------
    # Samplers that llama.cpp offers and local users expect: top_k 0, min_p 0 and
    # repeat_penalty 1.0 switch the sampler off.
    top_k: int | None = Field(default=None, ge=0, description="Keep only the k most likely tokens.")
    min_p: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Drop tokens below min_p x the top probability."
    )
    repeat_penalty: float | None = Field(
        default=None, gt=0.0, le=10.0, description="llama.cpp repetition penalty (1.0 = off)."
    )
    # As llama.cpp's server: a GBNF grammar (root rule `root`) the output must follow.
    grammar: str | None = Field(default=None, description="GBNF the output must follow.")
    # ---- end of Hearth extensions --------------------------------------------------------

    _stop_limit = field_validator("stop")(_check_stop)
    _bias_keys = field_validator("logit_bias")(_check_logit_bias)

    def stop_sequences(self) -> tuple[str, ...]:
        return _stop_list(self.stop)

    def sampling_params(self, defaults: SamplingParams) -> SamplingParams:
        """The request's samplers, each field left out falling back to `defaults`."""
        chosen = {
            name: getattr(self, name)
            for name in _SAMPLING_FIELDS
            if getattr(self, name) is not None
        }
        if self.logit_bias:
            chosen["logit_bias"] = tuple((int(k), v) for k, v in self.logit_bias.items())
        return dataclasses.replace(defaults, **chosen)

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


_SAMPLING_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "seed",
)


# Choices per request (`n`): each takes a slot, so a few are decoded side by side and the
# rest wait their turn; more than this would let one request fill the queue.
MAX_CHOICES = 8
# Alternatives reported per token: OpenAI's limit for chat (the legacy completions API
# stops at 5; llama.cpp's server, like Hearth, allows the chat limit on both).
MAX_TOP_LOGPROBS = 20

Choices = Annotated[int | None, Field(ge=1, le=MAX_CHOICES)]
Truncation = Literal["disabled", "auto"]


# ------------------------------------------------------------------- chat completions


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    model: str
    logprobs: bool | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    n: Choices = 1
    parallel_tool_calls: bool | None = True
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

    def tools_active(self) -> bool:
        """Whether the reply may (or must) be tool calls."""
        return bool(self.tools) and self.tool_choice != "none"

    def structured_format(self) -> JSONObjectResponseFormat | JSONSchemaResponseFormat | None:
        """The response_format when it constrains the reply (anything but text)."""
        if isinstance(self.response_format, TextResponseFormat):
            return None
        return self.response_format

    def truncates(self, server_default: Truncation) -> bool:
        """Whether old turns may be dropped to fit: the request's choice, else the server's."""
        return (self.truncation or server_default) == "auto"

    def token_limit(self) -> int | None:
        """max_completion_tokens supersedes the deprecated max_tokens when both are sent."""
        return self.max_completion_tokens or self.max_tokens


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0  # prompt tokens whose KV came from the prompt cache


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


FinishReason = Literal["stop", "length", "tool_calls"]


def _without_absent_calls(data: dict) -> dict:
    # OpenAI leaves `tool_calls` out of a message or delta that has none; some clients
    # read a null there as "calls follow".
    if data.get("tool_calls") is None:
        data.pop("tool_calls", None)
    return data


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None

    @model_serializer(mode="wrap")
    def _omit_absent_calls(self, handler: SerializerFunctionWrapHandler) -> dict:
        return _without_absent_calls(handler(self))


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprobOut(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    """A chat choice's logprobs: one entry per generated token of its content."""

    content: list[TokenLogprobOut] | None
    refusal: list[TokenLogprobOut] | None = None


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=_chat_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=_now)
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
    tool_calls: list[ToolCallDelta] | None = None

    @model_serializer(mode="wrap")
    def _omit_absent_calls(self, handler: SerializerFunctionWrapHandler) -> dict:
        return _without_absent_calls(handler(self))

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


# ------------------------------------------------------------------- text completions


class CompletionRequest(_SamplingFields):
    model: str
    prompt: str | list[str]
    echo: bool | None = False
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    max_tokens: int | None = Field(default=16, ge=1)
    n: Choices = 1
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _single_prompt(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and len(prompt) != 1:
            raise ValueError("exactly one prompt is supported")
        return prompt

    @model_validator(mode="after")
    def _unsupported(self) -> CompletionRequest:
        if self.logprobs is not None and self.echo:
            # The prompt's own logprobs would need logits for every prompt token.
            raise ValueError("logprobs with echo is not supported")
        if self.suffix:
            raise ValueError("suffix (insertion) is not supported")
        return self

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class CompletionLogprobs(BaseModel):
    """The legacy completions shape: parallel lists, one entry per generated token."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]


class CompletionChoice(BaseModel):
    text: str
    index: int = 0
    logprobs: CompletionLogprobs | None = None
    finish_reason: FinishReason | None = None


class Completion(BaseModel):
    id: str = Field(default_factory=_completion_id)
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


# -------------------------------------------------------------------------- embeddings


class EmbeddingRequest(RequestBody):
    input: str | list[str] | list[int] | list[list[int]]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _not_empty(
        cls, value: str | list[str] | list[int] | list[list[int]]
    ) -> str | list[str] | list[int] | list[list[int]]:
        if isinstance(value, list) and (not value or any(item in ("", []) for item in value)):
            raise ValueError("input must not be empty, nor contain an empty item")
        if isinstance(value, list) and len(value) > MAX_EMBEDDING_INPUTS:
            raise ValueError(f"at most {MAX_EMBEDDING_INPUTS} inputs per request")
        if value == "":
            raise ValueError("input must not be empty")
        return value

    @field_validator("dimensions")
    @classmethod
    def _no_dimensions(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError(
                "dimensions is not supported: a model's embeddings have the size it was "
                "trained with"
            )
        return value

    def inputs(self) -> list[str | list[int]]:
        """Texts or token lists, one item per embedding asked for."""
        if isinstance(self.input, str):
            return [self.input]
        if all(isinstance(item, int) for item in self.input):
            return [list(self.input)]  # type: ignore[arg-type]
        return list(self.input)  # type: ignore[arg-type]


MAX_EMBEDDING_INPUTS = 2048


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str
    index: int


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


# ------------------------------------------------------------ tokenizer (llama.cpp's shape)
# Not part of OpenAI's API: llama.cpp's server offers these, and tools that count tokens or
# build prompts by hand (llama.cpp's own web UI, some agent frameworks) call them.


class TokenizeRequest(RequestBody):
    model: str | None = Field(default=None, description="Default: the default model.")
    content: str
    add_special: bool = Field(default=False, description="Add BOS (and whatever else).")
    parse_special: bool = Field(
        default=True, description="Let text such as <|im_start|> become its control token."
    )
    with_pieces: bool = Field(default=False, description="Return each token's text too.")


class TokenPiece(BaseModel):
    id: int
    piece: str


class TokenizeResponse(BaseModel):
    tokens: list[int] | list[TokenPiece]


class DetokenizeRequest(RequestBody):
    model: str | None = None
    tokens: list[int] = Field(max_length=1_000_000)


class DetokenizeResponse(BaseModel):
    content: str


# ------------------------------------------------------------------------------ models


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=_now)
    owned_by: str = "hearth"
    # ---- Hearth extensions: what this id serves --------------------------------------
    prompt: str | None = Field(default=None, description="The chat format this id applies.")
    context_length: int | None = None
    loaded: bool | None = Field(default=None, description="Whether the model is resident.")
    state: Literal["unloaded", "loading", "loaded", "failed", "missing"] | None = None
    # ---- end of Hearth extensions ------------------------------------------------------


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# ------------------------------------------------------------------------------ errors


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
