"""Chat as transcript continuation: the reverse-prompt chat of llama.cpp's `main -r "User:"`.

How OpenAI messages map onto the transcript (prompts/README.md says the same for users):

- System messages at the start of the conversation are added to the preamble, as paragraphs
  after the file's own scene-setting text and before its examples. They add to the scene, they
  do not replace it: the preamble is what tells a base model it is reading a dialog.
- A system message later in the conversation becomes a line of narration, without a label, at
  its place in the transcript.
- User and assistant messages become `User: text` and `Bob: text` turns after the examples,
  text stripped of surrounding whitespace, inner newlines kept.
- The prompt ends with the assistant's bare label (`Bob:`), without a trailing space: most
  tokenizers fold the space into the reply's first word. Generation stops at a new line that
  starts with the user's label, and the server trims the reply.

The render of a conversation is a prefix of the render of that conversation plus a reply and
a new user message, so the engine's prompt cache reuses the whole earlier prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hearth.prompts.base import Message, RenderedPrompt
from hearth.prompts.fitting import FittedFormat
from hearth.prompts.transcript_file import TranscriptLayout


@dataclass(frozen=True)
class TranscriptTemplate(FittedFormat):
    """A ChatFormat that renders a conversation as the continuation of a transcript file."""

    name: str
    layout: TranscriptLayout

    @property
    def stop(self) -> tuple[str, ...]:
        # Only at a line start: the user's label inside a sentence ("ask the User: ...") is
        # not the model handing the turn back.
        return ("\n" + self.layout.user_label,)

    def render_all(self, messages: Sequence[Message]) -> RenderedPrompt:
        layout = self.layout
        head = 0
        while head < len(messages) and messages[head].role == "system":
            head += 1
        intro = "\n\n".join(
            part
            for part in (layout.preamble, *(m.content.strip() for m in messages[:head]))
            if part
        )
        pieces = [intro + layout.gap] if intro else []
        if layout.examples:
            pieces.append(layout.examples + layout.separator)
        pieces.extend(self._turn(message) for message in messages[head:])
        pieces.append(layout.ai_label)
        return RenderedPrompt(text="".join(pieces), stop=self.stop, trim_reply=True)

    def _turn(self, message: Message) -> str:
        layout = self.layout
        content = message.content.strip()
        label = {"user": layout.user_label, "assistant": layout.ai_label}.get(message.role)
        if label is None:
            return content + layout.separator
        return label + (layout.after_label + content if content else "") + layout.separator
