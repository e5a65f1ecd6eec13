"""GET /v1/models: the ids a client may send, one per chat format on offer."""

from __future__ import annotations

from fastapi import APIRouter
from hearth.server.protocol import ModelCard, ModelList
from hearth.server.state import ReadyServices

router = APIRouter()


@router.get("/v1/models")
async def list_models(services: ReadyServices) -> ModelList:
    return ModelList(data=services.catalog.cards())


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, services: ReadyServices) -> ModelCard:
    services.catalog.resolve(model_id)
    return next(card for card in services.catalog.cards() if card.id == model_id)
