"""``POST /v1/chat/completions``: chat replies and cited RAG answers, streamed (SSE) or whole."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from llmapp.server.catalog import Final, chat_producer, lookup
from llmapp.server.respond import Answer, respond, usage
from llmapp.server.schemas import (
    APIError,
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Delta,
    new_id,
)
from llmapp.server.settings import generation_settings

router = APIRouter()


@dataclass
class ChatWire:
    """OpenAI's ``chat.completion`` body and ``chat.completion.chunk`` stream."""

    model: str
    include_usage: bool
    id: str = ""
    created: int = 0

    def __post_init__(self) -> None:
        self.id, self.created = new_id("chatcmpl"), int(time.time())

    def chunk(self, delta: Delta, finish: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=self.id, created=self.created, model=self.model,
                                   choices=[ChunkChoice(delta=delta, finish_reason=finish)])

    def opening(self) -> list[BaseModel]:
        return [self.chunk(Delta(role="assistant", content=""))]

    def piece(self, text: str) -> BaseModel:
        return self.chunk(Delta(content=text))

    def closing(self, final: Final) -> list[BaseModel]:
        last: list[BaseModel] = [self.chunk(Delta(), final.finish_reason)]
        if self.include_usage:
            last.append(ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=[],
                                            usage=usage(final)))
        return last

    def whole(self, text: str, final: Final) -> BaseModel:
        return ChatCompletion(id=self.id, created=self.created, model=self.model, usage=usage(final), choices=[
            ChatChoice(message=AssistantMessage(content=text), finish_reason=final.finish_reason)])


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    state = request.app.state
    body.refuse_unsupported()
    served = lookup(state.catalog, body.model, ("chat", "rag"), "/v1/chat/completions")
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    if not any(m["content"].strip() for m in messages):
        raise APIError(400, "messages are empty: write a message for the model to answer", param="messages")
    produce = chat_producer(served, messages, generation_settings(body, state.config))
    return await respond(request, Answer(produce, ChatWire(body.model, body.include_usage()), f"chat {body.model}",
                                         "messages", body.stream, body.include_usage()))
