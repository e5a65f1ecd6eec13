"""GET /v1/models: every model of the library, with each chat format on offer as its own id."""

from __future__ import annotations

from fastapi import APIRouter

from hearth.runtime.errors import ModelNotFound
from hearth.server.openai.models.protocol import ModelCard, ModelList
from hearth.server.state import Registry

router = APIRouter()


@router.get("/v1/models")
async def list_models(registry: Registry) -> ModelList:
    return ModelList(data=[ModelCard.of(listing) for listing in registry.listings()])


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, registry: Registry) -> ModelCard:
    listing = next((found for found in registry.listings() if found.id == model_id), None)
    if listing is None:
        raise ModelNotFound(model_id, registry.ids())
    return ModelCard.of(listing)
