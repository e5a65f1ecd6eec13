"""The OpenAI wire format, as pydantic models.

Fields follow the order of the OpenAI API reference. Fields we accept but cannot honour yet
are validated here so that a client gets a 400 naming the parameter instead of silently
different behaviour. Hearth's own sampling extensions live in one fenced block per request
type, and turning a request into engine parameters is a method on the request model.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import fields
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from hearth.runtime.requests import Sampling, Turn
from hearth.runtime.requests import ToolCall as RuntimeToolCall

# Response header: how many of the oldest messages were left out to fit the context.
DROPPED_MESSAGES_HEADER = "X-Hearth-Dropped-Messages"


def unix_now() -> int:
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
    # `function`: a result of the deprecated function calling (see `_legacy_functions`).
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    function_call: FunctionCall | None = None  # a deprecated assistant turn's one call
    tool_calls: list[ToolCall] | None = None  # assistant turns that called tools
    tool_call_id: str | None = None  # a tool turn: the call it answers
    # An assistant turn's reasoning sent back: DeepSeek's and vLLM's `reasoning_content`,
    # or `reasoning` as Ollama and newer vLLM name it.
    reasoning_content: str | None = None
    reasoning: str | None = None

    @field_validator("content")
    @classmethod
    def _text_only(cls, content: str | list | None) -> str | list | None:
        if isinstance(content, list):
            for part in content:
                if isinstance(part, ImageContentPart):
                    # pydantic turns ValueError (not TypeError) into a 400 naming the field.
                    raise ValueError("image content is not supported by this model")
        return content

    def text(self) -> str:
        """The message's text: a string as is, text parts joined in order."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextContentPart))

    def to_turn(self) -> Turn:
        # OpenAI's `developer` role is the newer name of `system`; `function` turns were
        # made tool turns by the chat request's validator.
        role = (
            "system"
            if self.role == "developer"
            else "tool"
            if self.role == "function"
            else self.role
        )
        calls = tuple(
            RuntimeToolCall(call.id, call.function.name, call.function.arguments)
            for call in self.tool_calls or ()
        )
        reasoning = self.reasoning_content or self.reasoning
        return Turn(
            role,
            self.text(),
            tool_calls=calls,
            tool_call_id=self.tool_call_id,
            reasoning=reasoning if role == "assistant" else None,
        )


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


class SamplingFields(RequestBody):
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

    def sampling(self) -> Sampling:
        """The samplers the request set; the model's defaults fill in the rest."""
        chosen = {name: getattr(self, name) for name in _SAMPLING_FIELDS}
        bias = tuple((int(k), v) for k, v in self.logit_bias.items()) if self.logit_bias else None
        return Sampling(**chosen, logit_bias=bias)

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


# The samplers a request may set by name, as the runtime names them (logit_bias is keyed
# by token id on the wire, so it is converted on its own).
_SAMPLING_FIELDS = tuple(f.name for f in fields(Sampling) if f.name != "logit_bias")


# Choices per request (`n`): each takes a slot, so a few are decoded side by side and the
# rest wait their turn; more than this would let one request fill the queue.
MAX_CHOICES = 8


# Alternatives reported per token: OpenAI's limit for chat (the legacy completions API
# stops at 5; llama.cpp's server, like Hearth, allows the chat limit on both).
MAX_TOP_LOGPROBS = 20


Choices = Annotated[int | None, Field(ge=1, le=MAX_CHOICES)]


Truncation = Literal["disabled", "auto"]


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0  # prompt tokens whose KV came from the prompt cache


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


FinishReason = Literal["stop", "length", "tool_calls", "function_call"]


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


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
