"""The Responses API's wire format, as OpenAI's reference lists it (the parts Hearth serves).

A request becomes a chat completion request (`to_chat`), so the chat pipeline, chat formats,
grammars and tool-call parsing serve both APIs alike.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_core import PydanticCustomError

from hearth.runtime.errors import InvalidRequest
from hearth.server.openai.chat.protocol import ChatCompletionRequest, ReasoningEffort
from hearth.server.openai.protocol import (
    ChatMessage,
    FunctionCall,
    FunctionDefinition,
    JSONObjectResponseFormat,
    JSONSchemaResponseFormat,
    JSONSchemaSpec,
    NamedFunction,
    NamedToolChoice,
    RequestBody,
    TextResponseFormat,
    ToolCall,
    ToolDefinition,
)


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


# ---------------------------------------------------------------------------- input items


# Chat request fields under the names the Responses API gives them.
RESPONSES_NAME = {
    "messages": "input",
    "max_tokens": "max_output_tokens",
    "response_format": "text.format",
}


class InputText(BaseModel):
    type: Literal["input_text", "output_text"]
    text: str


class InputMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputText]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionCallItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function_call"]
    id: str | None = None
    call_id: str
    name: str
    arguments: str
    status: str | None = None


class FunctionCallOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function_call_output"]
    call_id: str
    output: str


class ReasoningText(BaseModel):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class ReasoningItem(BaseModel):
    """A reasoning item sent back (a client managing the conversation itself): its text
    goes with the assistant turn that follows it, as a chat message's reasoning_content."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["reasoning"]
    id: str | None = None
    summary: list[dict] = Field(default_factory=list)
    content: list[ReasoningText] | None = None

    def text(self) -> str:
        if self.content:
            return "".join(part.text for part in self.content)
        return "".join(str(part.get("text", "")) for part in self.summary)


def _item_type(item: object) -> object:
    # OpenAI lets a message leave out `"type": "message"`, and the openai-agents SDK and
    # the AI SDK do: a discriminator that needs the key refused their every request.
    if isinstance(item, dict):
        return item.get("type", "message")
    return getattr(item, "type", None)


InputItem = Annotated[
    Annotated[InputMessage, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutput, Tag("function_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")],
    Discriminator(
        _item_type,
        custom_error_type="input_item_type",
        custom_error_message="an input item's type must be message, function_call, "
        "function_call_output or reasoning",
    ),
]


def _item_errors(error: ValidationError) -> ValidationError:
    """A list input's errors located as the client wrote the items: `input[0].role`.

    pydantic locates an error by the union branches it went through (`str`, then the list
    and the item's type), and the first one it lists, `input.str`, named the wrong field.
    """
    located = []
    for line in error.errors():
        branch, *where = line["loc"]
        if not str(branch).startswith("list["):
            continue  # the `str` branch: the client sent a list
        # `where` is the item's position, its type's tag, then the path inside the item.
        path = (*where, "type") if line["type"] == "input_item_type" else (*where[:1], *where[2:])
        # The message as pydantic wrote it (with no context it is not formatted again).
        located.append(
            {
                "type": PydanticCustomError(line["type"], line["msg"]),
                "loc": path,
                "input": line["input"],
            }
        )
    return ValidationError.from_exception_data(error.title, located) if located else error


# -------------------------------------------------------------------------------- request


class FunctionTool(BaseModel):
    type: Literal["function"]
    name: str = Field(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    parameters: dict | None = None
    strict: bool | None = None


class NamedToolChoiceR(BaseModel):
    type: Literal["function"]
    name: str


class TextFormatText(BaseModel):
    type: Literal["text"]


class TextFormatJSONObject(BaseModel):
    type: Literal["json_object"]


class TextFormatJSONSchema(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    type: Literal["json_schema"]
    name: str = Field(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    json_schema: dict = Field(alias="schema")
    strict: bool | None = None


TextFormat = Annotated[
    TextFormatText | TextFormatJSONObject | TextFormatJSONSchema, Field(discriminator="type")
]


class TextConfig(BaseModel):
    format: TextFormat | None = None


class ReasoningConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    effort: ReasoningEffort | None = None
    summary: str | None = None  # accepted; the reasoning item carries the whole text


class ResponseRequest(RequestBody):
    model: str
    input: str | list[Annotated[InputItem, Field()]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    stream: bool = False
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoiceR | None = None
    parallel_tool_calls: bool | None = True
    text: TextConfig | None = None
    previous_response_id: str | None = None
    store: bool = True
    metadata: dict[str, str] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    user: str | None = None
    reasoning: ReasoningConfig | None = None

    # ---- Hearth extensions (not in the OpenAI API) --------------------------------------
    # As on chat completions: a GBNF grammar (root rule `root`) the output must follow.
    grammar: str | None = Field(default=None, description="GBNF the output must follow.")
    # ---- end of Hearth extensions --------------------------------------------------------

    @field_validator("input", mode="wrap")
    @classmethod
    def _some_input(cls, value: object, handler: ValidatorFunctionWrapHandler) -> str | list:
        if isinstance(value, list) and not value:
            raise ValueError("input must hold at least one item")
        if not isinstance(value, str | list):
            raise ValueError("input must be text or a list of input items")
        try:
            return handler(value)
        except ValidationError as error:
            if isinstance(value, list):
                raise _item_errors(error) from None
            raise

    def input_messages(self) -> list[ChatMessage]:
        """This request's own turns (instructions and input) as chat messages."""
        items = (
            [InputMessage(role="user", content=self.input)]
            if isinstance(self.input, str)
            else self.input
        )
        messages: list[ChatMessage] = []
        thought: str | None = None  # a reasoning item's, for the assistant turn after it
        for item in items:
            if isinstance(item, ReasoningItem):
                thought = item.text()
            elif isinstance(item, InputMessage):
                reasoning = thought if item.role == "assistant" else None
                messages.append(
                    ChatMessage(role=item.role, content=item.text(), reasoning_content=reasoning)
                )
                thought = None
            elif isinstance(item, FunctionCallItem):
                call = ToolCall(
                    id=item.call_id, function=FunctionCall(name=item.name, arguments=item.arguments)
                )
                if messages and messages[-1].role == "assistant" and messages[-1].tool_calls:
                    messages[-1].tool_calls.append(call)  # parallel calls: one turn
                else:
                    messages.append(
                        ChatMessage(
                            role="assistant",
                            content=None,
                            tool_calls=[call],
                            reasoning_content=thought,
                        )
                    )
                thought = None
            else:
                messages.append(
                    ChatMessage(role="tool", content=item.output, tool_call_id=item.call_id)
                )
        return messages

    def to_chat(self, history: list[ChatMessage]) -> ChatCompletionRequest:
        """The chat completion request that answers this response."""
        system = (
            [ChatMessage(role="system", content=self.instructions)] if self.instructions else []
        )
        fields: dict = {
            "model": self.model,
            "messages": system + history + self.input_messages(),
            "max_tokens": self.max_output_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            # Only when sent: left out, a named tool_choice means one call.
            "parallel_tool_calls": self.parallel_tool_calls
            if "parallel_tool_calls" in self.model_fields_set
            else None,
            "response_format": self._response_format(),
            "truncation": self.truncation,
            "reasoning_effort": self.reasoning.effort if self.reasoning else None,
            "grammar": self.grammar,
        }
        if self.tools:
            fields["tools"] = [
                ToolDefinition(
                    type="function",
                    function=FunctionDefinition(
                        name=t.name,
                        description=t.description,
                        parameters=t.parameters,
                        strict=t.strict,
                    ),
                )
                for t in self.tools
            ]
        if isinstance(self.tool_choice, NamedToolChoiceR):
            fields["tool_choice"] = NamedToolChoice(
                type="function", function=NamedFunction(name=self.tool_choice.name)
            )
        elif self.tool_choice is not None:
            fields["tool_choice"] = self.tool_choice
        try:
            return ChatCompletionRequest.model_validate(
                {k: v for k, v in fields.items() if v is not None}
            )
        except ValidationError as error:
            # The chat request checks what a response request cannot alone (a tool_choice
            # naming a tool that is not in tools); its complaint is the client's fault, a 400
            # named in the Responses API's own terms, not a 500.
            first = error.errors()[0]
            field = next((str(part) for part in first.get("loc", ())), None)
            message = first.get("msg", "invalid value").removeprefix("Value error, ")
            raise InvalidRequest(message, param=RESPONSES_NAME.get(field, field)) from None

    def _response_format(
        self,
    ) -> TextResponseFormat | JSONObjectResponseFormat | JSONSchemaResponseFormat | None:
        found = self.text.format if self.text else None
        if isinstance(found, TextFormatJSONSchema):
            return JSONSchemaResponseFormat(
                type="json_schema",
                json_schema=JSONSchemaSpec(
                    name=found.name,
                    description=found.description,
                    schema=found.json_schema,
                    strict=found.strict,
                ),
            )
        if isinstance(found, TextFormatJSONObject):
            return JSONObjectResponseFormat(type="json_object")
        return None


# ------------------------------------------------------------------------------- response


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list = Field(default_factory=list)


class OutputReasoning(BaseModel):
    """A thinking model's reasoning, as OpenAI's reasoning item: the text whole in
    `content` (Hearth writes no summaries, so `summary` is empty)."""

    type: Literal["reasoning"] = "reasoning"
    id: str = Field(default_factory=lambda: _id("rs"))
    summary: list[dict] = Field(default_factory=list)
    content: list[ReasoningText]
    status: Literal["completed", "in_progress", "incomplete"] = "completed"


class OutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str = Field(default_factory=lambda: _id("msg"))
    status: Literal["completed", "in_progress", "incomplete"] = "completed"
    role: Literal["assistant"] = "assistant"
    content: list[OutputText]


class OutputFunctionCall(BaseModel):
    type: Literal["function_call"] = "function_call"
    id: str = Field(default_factory=lambda: _id("fc"))
    call_id: str
    name: str
    arguments: str
    status: Literal["completed", "in_progress"] = "completed"


OutputItem = OutputReasoning | OutputMessage | OutputFunctionCall


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens"]


class Response(BaseModel):
    id: str = Field(default_factory=lambda: _id("resp"))
    object: Literal["response"] = "response"
    created_at: int = Field(default_factory=lambda: int(time.time()))
    status: Literal["completed", "incomplete", "in_progress", "failed"] = "completed"
    error: dict | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputItem] = Field(default_factory=list)
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    store: bool = True
    temperature: float | None = None
    top_p: float | None = None
    text: dict = Field(default_factory=lambda: {"format": {"type": "text"}})
    tool_choice: object = "auto"
    tools: list[FunctionTool] = Field(default_factory=list)
    usage: ResponseUsage | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    reasoning: dict | None = None  # the request's reasoning settings, as OpenAI echoes them
