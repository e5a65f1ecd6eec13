"""Which model ids this server answers to, and the chat format behind each.

One model is loaded. Its id (`smollm2`, from --alias or the file name) chats in its default
format: the model's own chat template when it has one, else the configured transcript.
`ID:NAME` chats through the bundled transcript NAME (`smollm2:chat-with-bob`), and
`ID:template` through the model's own template, so a client that only sends standard
OpenAI fields can still choose. Any other id is a 404: a server never answers with a
model the client did not ask for.
"""

from __future__ import annotations

from dataclasses import dataclass

from hearth.prompts import TEMPLATE, bundled_prompts, load_chat_format
from hearth.prompts.base import ChatFormat, ModelTemplate
from hearth.server.engine.base import ModelInfo
from hearth.server.errors import ModelNotFound
from hearth.server.protocol import ModelCard
from hearth.server.settings import ModelSettings


@dataclass(frozen=True)
class ServedModel:
    id: str
    chat_format: ChatFormat
    prompt: str


class ModelCatalog:
    def __init__(self, models: list[ServedModel], context_length: int) -> None:
        self._models = {model.id: model for model in models}
        self._context_length = context_length

    @classmethod
    def build(cls, settings: ModelSettings, info: ModelInfo) -> ModelCatalog:
        """Load every chat format now, so a broken prompt file fails start-up, not a request."""
        template = (
            ModelTemplate(
                info.chat_template,
                info.bos_token,
                info.eos_token,
                info.add_bos,
                special_tokens_in_content=settings.special_tokens_in_content,
            )
            if info.chat_template
            else None
        )
        names = {"user_name": settings.user_name, "ai_name": settings.ai_name}
        default = load_chat_format(settings.prompt, model_template=template, **names)
        models = [ServedModel(info.name, default, default.name)]
        if template is not None:
            fmt = load_chat_format(TEMPLATE, model_template=template)
            models.append(ServedModel(f"{info.name}:{TEMPLATE}", fmt, fmt.name))
        for name in sorted(bundled_prompts()):
            fmt = load_chat_format(name, model_template=template, **names)
            models.append(ServedModel(f"{info.name}:{name}", fmt, name))
        return cls(models, info.n_ctx)

    def resolve(self, model_id: str) -> ServedModel:
        try:
            return self._models[model_id]
        except KeyError:
            raise ModelNotFound(model_id, list(self._models)) from None

    def ids(self) -> list[str]:
        return list(self._models)

    def cards(self) -> list[ModelCard]:
        return [
            ModelCard(id=model.id, prompt=model.prompt, context_length=self._context_length)
            for model in self._models.values()
        ]
