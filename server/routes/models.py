"""GET /v1/models: every model of the library, with each chat format on offer as its own id."""

from __future__ import annotations

from fastapi import APIRouter
from hearth.runtime.errors import ModelNotFound
from hearth.server.protocol import ModelCard, ModelList
from hearth.server.state import Registry

router = APIRouter()


@router.get("/v1/models")
async def list_models(registry: Registry) -> ModelList:
    return ModelList(data=registry.cards())


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, registry: Registry) -> ModelCard:
    card = next((card for card in registry.cards() if card.id == model_id), None)
    if card is None:
        raise ModelNotFound(model_id, registry.ids())
    return card
