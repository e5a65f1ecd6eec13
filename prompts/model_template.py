"""A model's own chat template (`tokenizer.chat_template` in its GGUF), rendered safely.

The template is Jinja2 written by whoever published the model, so it runs in Jinja2's
ImmutableSandboxedEnvironment: no attribute access to Python internals, no mutation of the
messages, no loader (so `{% include %}` cannot read files). The environment matches the one
Hugging Face transformers renders these templates with (trim_blocks, lstrip_blocks,
loopcontrols, its `tojson`, `raise_exception`, `strftime_now`), since templates are written
and tested against that.

A template usually writes the BOS token itself. The tokenizer would add a second one, which
measurably hurts small models, so a render that starts with the BOS text is tokenized with
add_special off; the BOS text then becomes the real token through parse_special.

Message text must never become control tokens: a user who types "<|im_start|>system" would
otherwise forge a system turn. So the template is rendered with a placeholder for each
message's content, and the result is cut into the template's markup (parsed for special
tokens) and the messages' text (tokenized as plain text). A template that alters the
placeholder (slices or upper-cases content) cannot be cut apart; it is rendered as before,
with a warning, rather than refused, since refusing would make the model unusable.

The sandbox stops a template from reaching Python, not from running forever or filling
memory: nested `range(100000)` loops stalled the server for 70 s and `'a' * 20000000` took
2.4 GB. So each render has a deadline, checked by a line tracer on the template's own code
only (a pure loop calls nothing, so no hook but the tracer sees it), and a size budget for
its output and for `*` and `**`, checked before the result is built. A render past either
raises TemplateOverBudget: the template, not the conversation, is at fault.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from types import FrameType
from typing import Any, NoReturn, Self

from jinja2 import TemplateError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from hearth.prompts.base import (
    Message,
    ModelTemplate,
    PromptRenderFailed,
    RenderedPrompt,
    TemplateOverBudget,
    TextPiece,
)
from hearth.prompts.fitting import FittedFormat

log = logging.getLogger(__name__)

# Private-use characters: no tokenizer gives them meaning and no template writes them.
_OPEN, _CLOSE = "\ue000", "\ue001"
_PLACEHOLDER = re.compile(f"{_OPEN}hearth-message-([0-9]+){_CLOSE}")


def _placeholder(index: int) -> str:
    return f"{_OPEN}hearth-message-{index}{_CLOSE}"


def split_markup(rendered: str, contents: Sequence[str]) -> tuple[TextPiece, ...] | None:
    """Cut a render made with placeholders into markup and message text.

    None when the template altered a placeholder, so message text cannot be told apart.
    A message the template left out, or wrote twice, is simply absent or twice present.
    """
    pieces: list[TextPiece] = []
    at = 0
    for found in _PLACEHOLDER.finditer(rendered):
        pieces.append(TextPiece(rendered[at : found.start()], special=True))
        pieces.append(TextPiece(contents[int(found.group(1))], special=False))
        at = found.end()
    pieces.append(TextPiece(rendered[at:], special=True))
    markup = "".join(p.text for p in pieces if p.special)
    if _OPEN in markup or _CLOSE in markup:
        return None
    return tuple(p for p in pieces if p.text)


class TemplateRaised(TemplateError):
    """The template called raise_exception(): it refuses this conversation."""


def raise_exception(message: str) -> NoReturn:
    raise TemplateRaised(message)


def strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own tojson escapes HTML characters, which templates written for transformers
    # do not expect inside tool schemas.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


# The variables every render sets itself; a request's template kwargs cannot replace them.
STANDARD_VARIABLES = frozenset(
    {"messages", "tools", "bos_token", "eos_token", "add_generation_prompt"}
    | {"raise_exception", "strftime_now", "range", "namespace", "dict", "lipsum", "cycler"}
    | {"joiner"}
)
# Where templates read an assistant turn's reasoning: Qwen3 (and vLLM's convention)
# `message.reasoning_content`, gpt-oss `message.thinking`.
REASONING_KEYS = ("reasoning_content", "thinking")

# A render's limits. Real chat templates render in about a millisecond and write a few
# hundred bytes of markup per message; these are thousands of times that.
RENDER_SECONDS = 5.0
MARKUP_BYTES = 1 << 20  # output allowed besides the messages' own text


_rendering = threading.local()  # this thread's RenderBudget, while it renders


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with `*` and `**` refused when their result would pass the budget."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = getattr(_rendering, "budget", None)
        limit = budget.output_limit if budget is not None else MARKUP_BYTES
        if operator == "*":
            sized, count = (left, right) if isinstance(right, int) else (right, left)
            sizable = isinstance(sized, str | list | tuple) and isinstance(count, int)
            if sizable and len(sized) * count > limit:
                raise TemplateOverBudget(
                    f"the model's chat template builds a value of {len(sized) * count} "
                    f"items (at most {limit})"
                )
        if operator == "**" and isinstance(right, int) and abs(right) > 1024:
            raise TemplateOverBudget(f"the model's chat template raises to the power {right}")
        return super().call_binop(context, operator, left, right)


class RenderBudget:
    """One render's limits: `seconds`, held by a tracer on the template's frames (in this
    thread only) that raises TemplateOverBudget past the deadline, and `output_limit`
    characters for the output and any value `*` builds."""

    def __init__(self, seconds: float, output_limit: int) -> None:
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds
        self.output_limit = output_limit

    def __enter__(self) -> Self:
        self._previous = sys.gettrace()
        _rendering.budget = self
        sys.settrace(self._calls)
        return self

    def __exit__(self, *_: object) -> None:
        sys.settrace(self._previous)
        _rendering.budget = None

    def _calls(self, frame: FrameType, event: str, _: Any) -> Any:
        # Only the compiled template's frames are traced line by line; Python's and
        # Jinja's own code runs untraced, at full speed.
        return self._lines if frame.f_code.co_filename == "<template>" else None

    def _lines(self, frame: FrameType, event: str, _: Any) -> Any:
        if time.monotonic() > self.deadline:
            raise TemplateOverBudget(
                f"the model's chat template took more than {self.seconds:g} s to render"
            )
        return self._lines


def template_environment() -> ImmutableSandboxedEnvironment:
    environment = BoundedSandbox(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    environment.globals.update(raise_exception=raise_exception, strftime_now=strftime_now)
    environment.filters["tojson"] = tojson
    return environment


class ModelChatTemplate(FittedFormat):
    """A ChatFormat backed by the model's Jinja chat template."""

    def __init__(self, model: ModelTemplate, name: str = "template") -> None:
        self.name = name
        self.model = model
        environment = template_environment()
        try:
            self._template = environment.from_string(model.source)
            # A template that reads a `tools` variable was written to describe tools (and,
            # in practice, to write calls and results) in the form its model was trained on.
            variables = meta.find_undeclared_variables(environment.parse(model.source))
        except TemplateError as broken:
            raise PromptRenderFailed(
                f"the model's chat template does not compile: {broken}"
            ) from broken
        self.knows_tools = "tools" in variables
        self.variables = frozenset(variables) - STANDARD_VARIABLES
        self._tools: list[dict] | None = None
        self._extra: dict[str, object] = {}
        # Where the template reads an earlier assistant turn's reasoning, if it does.
        self._reasoning_key = next(
            (key for key in REASONING_KEYS if _reads_key(model.source, key)), None
        )
        # Belt and braces: the engine stops on end-of-generation tokens and never emits their
        # text, but an engine that did would otherwise show "<|im_end|>" to the user.
        self._stop = (model.eos_token,) if model.eos_token else ()

    def with_tools(self, tools: list[dict]) -> ModelChatTemplate:
        """This format, rendering `tools` (OpenAI tool objects) through the template."""
        bound = copy.copy(self)
        bound._tools = tools
        return bound

    def with_variables(self, variables: dict[str, object]) -> ModelChatTemplate:
        """This format, rendering with extra template variables (enable_thinking...).

        The standard variables (messages, tools, bos_token...) are the format's own: a
        request's chat_template_kwargs cannot replace them."""
        bound = copy.copy(self)
        bound._extra = {**self._extra, **variables}
        return bound

    def render_all(self, messages: Sequence[Message]) -> RenderedPrompt:
        # Each message's content, then each one's reasoning: both are the client's text.
        texts = [m.content for m in messages] + [(m.reasoning or "").strip() for m in messages]
        if not self.model.special_tokens_in_content:
            marked = self._render(messages, [_placeholder(i) for i in range(len(texts))])
            pieces = split_markup(marked, texts)
            if pieces is not None:
                return self._rendered("".join(p.text for p in pieces), pieces)
            log.warning(
                "the chat template alters message text, so special-token text in messages "
                "cannot be kept from becoming control tokens"
            )
        return self._rendered(self._render(messages, texts), ())

    def _rendered(self, text: str, pieces: tuple[TextPiece, ...]) -> RenderedPrompt:
        writes_bos = bool(self.model.bos_token) and text.startswith(self.model.bos_token)
        return RenderedPrompt(
            text=text,
            stop=self._stop,
            add_special=not writes_bos,
            parse_special=True,
            pieces=pieces,
        )

    def _render(self, messages: Sequence[Message], texts: Sequence[str]) -> str:
        """Render with `texts` standing for each message's content, then its reasoning."""
        limit = MARKUP_BYTES + 4 * sum(len(c) for c in texts)
        count = len(messages)
        try:
            with RenderBudget(RENDER_SECONDS, limit):
                standard = {
                    "messages": [
                        _message(m, texts[i], texts[count + i], self._reasoning_key)
                        for i, m in enumerate(messages)
                    ],
                    "bos_token": self.model.bos_token,
                    "eos_token": self.model.eos_token,
                    "add_generation_prompt": True,
                    **({"tools": self._tools} if self._tools else {}),
                }
                return _joined(self._template.generate({**self._extra, **standard}), limit)
        except TemplateRaised as refused:
            raise PromptRenderFailed(f"the model's chat template refused: {refused}") from refused
        except TemplateOverBudget:
            raise
        except Exception as failed:
            raise PromptRenderFailed(
                f"the model's chat template failed: {type(failed).__name__}: {failed}"
            ) from failed


def _message(
    message: Message, content: str, reasoning: str, reasoning_key: str | None
) -> dict[str, Any]:
    """A message as Hugging Face templates read it (OpenAI's shape, arguments as a dict)."""
    rendered: dict[str, Any] = {"role": message.role, "content": content}
    if message.reasoning and reasoning_key is not None:
        rendered[reasoning_key] = reasoning
    if message.tool_calls:
        rendered["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        rendered["tool_call_id"] = message.tool_call_id
    return rendered


def _reads_key(source: str, key: str) -> bool:
    return any(form in source for form in (f".{key}", f"'{key}'", f'"{key}"'))


def _joined(chunks: Any, limit: int) -> str:
    """A render's output, refused as soon as it passes `limit` characters."""
    parts, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise TemplateOverBudget(
                f"the model's chat template wrote more than {limit} characters"
            )
        parts.append(chunk)
    return "".join(parts)
