"""``POST /v1/embeddings``: float or base64 vectors, with the inputs capped per request.

Limits (``llmapp serve`` flags; docs/serve.md): at most ``--max-embedding-inputs`` inputs (256) and
``--max-embedding-tokens`` tokens in all (32,768), each input within the model's window (256 for
MiniLM), the body within ``--max-body-bytes``. Each is a 400 naming the limit, before any work.
"""

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
        raise APIError(400, f"{len(texts)} inputs is over this server's limit of {limit} per request; send them in "
                       "batches", param="input", code="request_too_large")
    job = submit(state.pool, embeddings_producer(served, texts, state.config.max_embedding_tokens),
                 f"embeddings {body.model}")
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
