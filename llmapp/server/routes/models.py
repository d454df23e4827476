"""``GET /health``, ``GET /v1/models`` and ``GET /v1/models/{id}``: what is served, and the pool's counters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from llmapp.server.catalog import ServedModel, lookup
from llmapp.server.schemas import ModelCard, ModelList

router = APIRouter()


def card(served: ServedModel, created: int) -> ModelCard:
    if served.kind == "embeddings":
        from llmapp.models.embeddings import load_sentence_transformer

        window = load_sentence_transformer(served.target).max_seq_length
    else:
        window = served.chat.context_window  # a rag: store reports the window of the model that answers
    return ModelCard(id=served.name, created=created, kind=served.kind, context_window=window)


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    state = request.app.state
    return {"status": "ok", "models": list(state.catalog), **state.pool.stats()}


@router.get("/v1/models")
async def list_models(request: Request) -> ModelList:
    state = request.app.state
    return ModelList(data=[card(m, state.started) for m in state.catalog.values()])


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> ModelCard:
    state = request.app.state
    return card(lookup(state.catalog, model_id, ("chat", "embeddings", "rag"), "/v1/models"), state.started)
