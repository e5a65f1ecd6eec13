"""Choosing a chat format: the model's own template, a bundled transcript, or a file.

`load_chat_format(spec, ...)` understands, in this order:

- `None` or `auto`: the model's own chat template when it has one, else `chat-with-bob`.
- `template`: the model's own chat template; an error when the model has none.
- the name of a bundled prompt (a file stem in prompts/, e.g. `chat-with-bob`);
- a path to a transcript file.

Everything that can be wrong with a file is found here, at start-up, and raised as
PromptFileError naming the file: not at the first request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hearth.prompts.base import (
    ChatFormat,
    ModelTemplate,
    PromptFileError,
    PromptRenderFailed,
)
from hearth.prompts.model_template import ModelChatTemplate
from hearth.prompts.placeholders import (
    DEFAULT_AI_NAME,
    DEFAULT_USER_NAME,
    PlaceholderValues,
    UnknownPlaceholder,
    fill_placeholders,
)
from hearth.prompts.transcript import TranscriptTemplate
from hearth.prompts.transcript_file import TranscriptFileError, parse_transcript

log = logging.getLogger(__name__)

DEFAULT_TRANSCRIPT = "chat-with-bob"
TEMPLATE = "template"


@dataclass(frozen=True)
class FormatRequest:
    model_template: ModelTemplate | None
    user_name: str | None
    ai_name: str | None


def bundled_prompts() -> dict[str, Path]:
    """Each transcript that ships in prompts/, by name (the file stem)."""
    folder = resources.files("hearth.prompts")
    files = [entry for entry in folder.iterdir() if entry.name.endswith(".txt")]
    return {Path(entry.name).stem: Path(str(entry)) for entry in sorted(files, key=str)}


def load_transcript(
    path: Path, *, name: str | None = None, user_name: str | None = None, ai_name: str | None = None
) -> TranscriptTemplate:
    """Read, fill and parse a transcript file; any problem is a PromptFileError naming it."""
    try:
        raw = path.read_text(encoding="utf-8")
        values = PlaceholderValues(
            user_name=user_name or DEFAULT_USER_NAME, ai_name=ai_name or DEFAULT_AI_NAME
        )
        layout = parse_transcript(
            fill_placeholders(raw, values), user_name=user_name, ai_name=ai_name
        )
    except UnicodeDecodeError as problem:
        raise PromptFileError(f"{path} is not UTF-8 text ({problem.reason})") from problem
    except OSError as problem:
        raise PromptFileError(f"{path} cannot be read: {problem.strerror or problem}") from problem
    except TranscriptFileError as problem:
        raise PromptFileError(f"{path} {problem}") from problem
    except UnknownPlaceholder as problem:
        raise PromptFileError(f"{path}: {problem}") from problem
    return TranscriptTemplate(name=name or path.stem, layout=layout)


def _model_template(request: FormatRequest) -> ChatFormat:
    if request.model_template is None:
        raise PromptFileError(
            "prompt 'template' asks for the model's chat template, but the model has none; "
            f"choose a transcript such as {DEFAULT_TRANSCRIPT}"
        )
    try:
        return ModelChatTemplate(request.model_template, name=TEMPLATE)
    except PromptRenderFailed as broken:
        raise PromptFileError(str(broken)) from broken


def _automatic(request: FormatRequest) -> ChatFormat:
    if request.model_template is not None:
        try:
            return ModelChatTemplate(request.model_template, name=TEMPLATE)
        except PromptRenderFailed as broken:
            # The user asked for nothing in particular; a model whose template is broken
            # still chats through the transcript, and the log says why.
            log.warning("%s; using the %s transcript instead", broken, DEFAULT_TRANSCRIPT)
    return _bundled(DEFAULT_TRANSCRIPT, request)


def _bundled(name: str, request: FormatRequest) -> ChatFormat:
    return load_transcript(
        bundled_prompts()[name], name=name, user_name=request.user_name, ai_name=request.ai_name
    )


CHOOSERS: dict[str, Callable[[FormatRequest], ChatFormat]] = {
    "auto": _automatic,
    TEMPLATE: _model_template,
}


def load_chat_format(
    spec: str | None,
    *,
    model_template: ModelTemplate | None,
    user_name: str | None = None,
    ai_name: str | None = None,
) -> ChatFormat:
    """The chat format named by `spec` (see the module docstring); raises PromptFileError."""
    request = FormatRequest(model_template, user_name, ai_name)
    chooser = CHOOSERS.get(spec or "auto")
    if chooser is not None:
        return chooser(request)
    assert spec is not None
    bundled = bundled_prompts()
    if spec in bundled:
        return _bundled(spec, request)
    path = Path(spec).expanduser()
    if path.is_file():
        return load_transcript(path, user_name=user_name, ai_name=ai_name)
    names = ", ".join([*CHOOSERS, *bundled])
    raise PromptFileError(f"prompt {spec!r} is neither a file nor a bundled prompt ({names})")
