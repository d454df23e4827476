"""``POST /v1/completions``: plain text continuation (no chat template), streamed (SSE) or whole."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from llmapp.server.catalog import Final, completion_producer, lookup
from llmapp.server.respond import Answer, respond, usage
from llmapp.server.schemas import APIError, Completion, CompletionChoice, CompletionRequest, Usage, new_id
from llmapp.server.settings import generation_settings

router = APIRouter()


@dataclass
class CompletionWire:
    """OpenAI's ``text_completion`` body, which is also its stream's chunk shape."""

    model: str
    include_usage: bool
    id: str = ""
    created: int = 0

    def __post_init__(self) -> None:
        self.id, self.created = new_id("cmpl"), int(time.time())

    def chunk(self, text: str, finish: str | None = None, tokens: Usage | None = None) -> Completion:
        return Completion(id=self.id, created=self.created, model=self.model, usage=tokens,
                          choices=[CompletionChoice(text=text, finish_reason=finish)])

    def opening(self) -> list[BaseModel]:
        return []

    def piece(self, text: str) -> BaseModel:
        return self.chunk(text)

    def closing(self, final: Final) -> list[BaseModel]:
        last: list[BaseModel] = [self.chunk("", final.finish_reason)]
        if self.include_usage:
            last.append(Completion(id=self.id, created=self.created, model=self.model, choices=[], usage=usage(final)))
        return last

    def whole(self, text: str, final: Final) -> BaseModel:
        return self.chunk(text, final.finish_reason, usage(final))


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Any:
    state = request.app.state
    body.refuse_unsupported()
    served = lookup(state.catalog, body.model, ("chat",), "/v1/completions")
    if not body.text().strip():
        raise APIError(400, "prompt is empty: give the model some text to continue", param="prompt")
    produce = completion_producer(served, body.text(), generation_settings(body, state.config), body.echo)
    return await respond(request, Answer(produce, CompletionWire(body.model, body.include_usage()),
                                         f"completion {body.model}", "prompt", body.stream, body.include_usage()))
