"""``POST /v1/embeddings``: float or base64 vectors, with the input count capped per request."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Request

from llmapp.server.catalog import embeddings_producer, lookup
from llmapp.server.respond import first, submit
from llmapp.server.schemas import APIError, EmbeddingItem, EmbeddingList, EmbeddingRequest, EmbeddingUsage

router = APIRouter()


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> EmbeddingList:
    state = request.app.state
    served = lookup(state.catalog, body.model, ("embeddings",), "/v1/embeddings")
    texts = body.texts()
    limit = state.config.max_embedding_inputs
    if len(texts) > limit:
        raise APIError(400, f"{len(texts)} inputs is over the limit of {limit} per request; send them in batches",
                       param="input")
    job = submit(state.pool, embeddings_producer(served, texts), f"embeddings {body.model}")
    vectors, tokens = await first(request, job, "input")
    if body.dimensions not in (None, vectors.shape[1]):
        raise APIError(400, f"{body.model} makes {vectors.shape[1]}-dimensional vectors; drop `dimensions` "
                       "or set it to that", param="dimensions")
    if body.encoding_format == "base64":  # little-endian float32, which the openai client decodes
        data = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
    else:
        data = vectors.tolist()
    return EmbeddingList(model=body.model, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
                         data=[EmbeddingItem(index=i, embedding=e) for i, e in enumerate(data)])
