"""Thinking models: where a reply's reasoning ends and its answer begins.

Models trained to think first (Qwen3, DeepSeek-R1 distills, SmolLM3...) write their
reasoning between two tags before the answer; some templates open the tag in the prompt, so
the reply starts inside the reasoning and only closes it. A `ReasoningStyle` says which tags
a model uses and whether the prompt opened them; a `ThinkingSplitter` reads a reply, whole
or as it streams, into reasoning and content, so no API ever shows a client the tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from hearth.engine.text import held_overlap
from hearth.runtime.requests import Thinking

PieceKind = Literal["reasoning", "content"]

# --reasoning-format: `auto` reads the style from the chat template, `none` leaves every
# reply whole in content, the others force one style whatever the template says.
ReasoningFormat = Literal["auto", "none", "think-tags", "gpt-oss"]


@dataclass(frozen=True)
class Piece:
    """A run of a reply's text that is all reasoning or all content."""

    kind: PieceKind
    text: str


@dataclass(frozen=True)
class ReasoningStyle:
    open: str = "<think>"
    close: str = "</think>"
    # The prompt ends inside the reasoning (the template wrote the opening tag): the reply
    # is reasoning from its first token until the closing tag.
    opened_in_prompt: bool = False

    def after_prompt(self, markup: str) -> ReasoningStyle:
        """This style for a reply to a prompt whose template markup ends with `markup`:
        opened in the prompt when the last opening tag there is not closed after it.

        Read from the render, not from the template's source, because whether a template
        opens the tag depends on its variables: DeepSeek-R1 distills always open it,
        Qwen3 with enable_thinking=false writes a closed, empty block instead.
        """
        opened = markup.rfind(self.open)
        closed = markup.rfind(self.close)
        return replace(self, opened_in_prompt=opened >= 0 and opened > closed)

    def budget_text(self) -> str:
        """What is written into the reply when its thinking budget is spent."""
        return self.close


@dataclass(frozen=True)
class ReasoningFamily:
    """A way models mark their reasoning, and the template text that gives it away."""

    name: str
    markers: tuple[str, ...]
    style: ReasoningStyle


# Most specific first. gpt-oss writes its reasoning in the "analysis" channel and its answer
# in "final"; llama.cpp renders <|channel|>, <|message|> and <|start|> as text but not
# <|end|>, which is a control token, so the answer's header is what closes the reasoning.
REASONING_FAMILIES = (
    ReasoningFamily(
        "gpt-oss",
        ("<|channel|>analysis<|message|>",),
        ReasoningStyle(
            open="<|channel|>analysis<|message|>",
            close="<|start|>assistant<|channel|>final<|message|>",
        ),
    ),
    # Qwen3, QwQ, DeepSeek-R1 and its distills, SmolLM3, Granite's thinking, MiniMax...
    ReasoningFamily("think-tags", ("<think>", "</think>"), ReasoningStyle()),
)
FAMILY_BY_NAME = {family.name: family for family in REASONING_FAMILIES}


def detect_reasoning(
    template: str | None, setting: ReasoningFormat = "auto"
) -> ReasoningStyle | None:
    """How a model marks its reasoning: from --reasoning-format when it names a style,
    else from its chat template; None when its replies are all content."""
    if setting == "none":
        return None
    if setting != "auto":
        return FAMILY_BY_NAME[setting].style
    if not template:
        return None
    for family in REASONING_FAMILIES:
        if any(marker in template for marker in family.markers):
            return family.style
    return None


def thinking_variables(thinking: Thinking, variables: frozenset[str]) -> dict[str, object]:
    """The chat template variables that carry a request's thinking choice, for a template
    that reads them (Qwen3 and SmolLM3 `enable_thinking`, gpt-oss `reasoning_effort`).

    enable_thinking is passed even when the request leaves thinking alone, as llama.cpp's
    server does: some templates (llama.cpp's DeepSeek-R1 one) switch thinking off when it
    is undefined.
    """
    found: dict[str, object] = {}
    if "enable_thinking" in variables:
        found["enable_thinking"] = thinking.enabled is not False
    if "reasoning_effort" in variables:
        effort = "low" if thinking.enabled is False else thinking.effort
        if effort is not None:
            found["reasoning_effort"] = effort
    return found


def thinking_grammar(style: ReasoningStyle, grammar: str) -> str:
    """`grammar` with the thinking block allowed before it (required when the prompt
    opened it), so that a forced tool call or JSON reply still lets the model think.

    The reasoning may hold any text that does not contain the closing tag. The GBNF below
    spells that as "a character other than the tag's next one after each of its prefixes".
    For a tag whose first character recurs inside it (gpt-oss's `<|`), a closing tag written
    right after a broken start of one is read as more reasoning; the model then closes again.
    """
    body = " | ".join(
        (f"{_gbnf_literal(style.close[:i])} " if i else "") + f"[^{_gbnf_class(style.close[i])}]"
        for i in range(len(style.close))
    )
    block = f"hearth-thought-body {_gbnf_literal(style.close)} [ \\t\\n]*"
    if not style.opened_in_prompt:
        block = f"({_gbnf_literal(style.open)} {block})?"
    answer = re.sub(r"^root(\s*::=)", r"hearth-answer\1", grammar, count=1, flags=re.MULTILINE)
    return "\n".join(
        [
            "root ::= hearth-thought hearth-answer",
            f"hearth-thought ::= {block}",
            f"hearth-thought-body ::= ({body})*",
            answer,
        ]
    )


def _gbnf_literal(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _gbnf_class(char: str) -> str:
    return "\\" + char if char in "]^-\\" else char


class ThinkingSplitter:
    """Splits a streamed reply into reasoning and content as it comes.

    Text that could be the start of a tag is held back (as a stop string is) until it is
    known not to be one, so a tag's first characters never leak into either part. The
    whitespace a model writes between the closing tag and the answer is dropped.
    """

    def __init__(self, style: ReasoningStyle) -> None:
        self._style = style
        self._state: Literal["start", "reasoning", "after", "content"] = (
            "reasoning" if style.opened_in_prompt else "start"
        )
        self._held = ""

    @property
    def reasoning(self) -> bool:
        """Whether the reply is inside its reasoning now."""
        return self._state == "reasoning"

    def feed(self, text: str) -> list[Piece]:
        self._held += text
        pieces: list[Piece] = []
        while self._held:
            before = (self._state, len(self._held))
            piece = self._step()
            if piece is not None and piece.text:
                pieces.append(piece)
            if (self._state, len(self._held)) == before:
                break  # waiting for more text
        return pieces

    def finish(self) -> list[Piece]:
        """What is still held, once the reply has ended."""
        held, self._held = self._held, ""
        if not held:
            return []
        if self._state == "reasoning":
            return [Piece("reasoning", held)]
        if self._state == "after":
            held = held.lstrip()
        return [Piece("content", held)] if held else []

    def _step(self) -> Piece | None:
        style = self._style
        if self._state == "start":
            visible = self._held.lstrip()
            if not visible:
                return None
            if visible.startswith(style.open):
                self._held = visible[len(style.open) :]
                self._state = "reasoning"
            elif not style.open.startswith(visible):
                self._state = "content"
            return None
        if self._state == "reasoning":
            found = self._held.find(style.close)
            if found >= 0:
                text = self._held[:found]
                self._held = self._held[found + len(style.close) :]
                self._state = "after"
                return Piece("reasoning", text)
            return Piece(
                "reasoning",
                self._release(len(self._held) - held_overlap(self._held, style.close)),
            )
        if self._state == "after":
            self._held = self._held.lstrip()
            if self._held:
                self._state = "content"
            return None
        return Piece("content", self._release(len(self._held)))

    def _release(self, upto: int) -> str:
        out, self._held = self._held[:upto], self._held[upto:]
        return out


def split_reasoning(style: ReasoningStyle | None, text: str) -> tuple[str, str]:
    """A whole reply's reasoning and content."""
    if style is None:
        return "", text
    splitter = ThinkingSplitter(style)
    pieces = splitter.feed(text) + splitter.finish()
    reasoning = "".join(p.text for p in pieces if p.kind == "reasoning")
    return reasoning, "".join(p.text for p in pieces if p.kind == "content")
