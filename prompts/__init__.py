"""Chat formats: how a conversation becomes the text a model continues.

Public API, used by the server and by `hearth chat`:

- `load_chat_format(spec, *, model_template, user_name=None, ai_name=None) -> ChatFormat`
- `bundled_prompts() -> dict[str, Path]`
- the types of `hearth.prompts.base`.

See prompts/README.md for the transcript format and how messages map onto it.
"""

from __future__ import annotations

from hearth.prompts.base import (
    ChatFormat,
    Message,
    ModelTemplate,
    PromptError,
    PromptFileError,
    PromptRenderFailed,
    PromptTooLong,
    RenderedPrompt,
    Role,
    TokenCounter,
)
from hearth.prompts.loading import (
    DEFAULT_TRANSCRIPT,
    TEMPLATE,
    bundled_prompts,
    load_chat_format,
    load_transcript,
)
from hearth.prompts.model_template import ModelChatTemplate
from hearth.prompts.transcript import TranscriptTemplate

__all__ = [
    "DEFAULT_TRANSCRIPT",
    "TEMPLATE",
    "ChatFormat",
    "Message",
    "ModelChatTemplate",
    "ModelTemplate",
    "PromptError",
    "PromptFileError",
    "PromptRenderFailed",
    "PromptTooLong",
    "RenderedPrompt",
    "Role",
    "TokenCounter",
    "TranscriptTemplate",
    "bundled_prompts",
    "load_chat_format",
    "load_transcript",
]
