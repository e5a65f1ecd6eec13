"""Thinking models: where a reply's reasoning ends and its answer begins.

Models trained to think first (Qwen3, DeepSeek-R1 distills, SmolLM3...) write their
reasoning between two tags before the answer; some templates open the tag in the prompt, so
the reply starts inside the reasoning and only closes it. A `ReasoningStyle` says which tags
a model uses and whether the prompt opened them; a `ThinkingSplitter` reads a reply, whole
or as it streams, into reasoning and content, so no API ever shows a client the tags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PieceKind = Literal["reasoning", "content"]


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
                self._release(len(self._held) - tag_prefix_overlap(self._held, style.close)),
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


def tag_prefix_overlap(text: str, tag: str) -> int:
    """The length of the longest end of text that is a start of tag."""
    for size in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0
