"""``POST /v1/chat/completions``: chat replies and cited RAG answers, streamed (SSE) or whole.

``tools``/``tool_choice`` and ``response_format`` (``json_object``, ``json_schema``) decode under a
grammar (``llmapp.backends.structured``): a JSON reply streams as content pieces, a tool call arrives
as one ``tool_calls`` delta and ends with finish reason ``tool_calls``, as OpenAI sends them.
"""

from __future__ import annotations

import json
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
    FunctionCall,
    ToolCall,
    ToolCallDelta,
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
        last: list[BaseModel] = []
        if final.tool_calls:
            calls = [ToolCallDelta(index=i, **c.model_dump()) for i, c in enumerate(_tool_calls(final))]
            last.append(self.chunk(Delta(tool_calls=calls)))
        last.append(self.chunk(Delta(), final.finish_reason))
        if self.include_usage:
            last.append(ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=[],
                                            usage=usage(final)))
        return last

    def whole(self, text: str, final: Final) -> BaseModel:
        calls = _tool_calls(final) or None
        message = AssistantMessage(content=None if calls and not text else text, tool_calls=calls)
        return ChatCompletion(id=self.id, created=self.created, model=self.model, usage=usage(final), choices=[
            ChatChoice(message=message, finish_reason=final.finish_reason)])


def _tool_calls(final: Final) -> list[ToolCall]:
    """LangChain tool calls in OpenAI's shape (arguments as JSON text)."""
    return [ToolCall(id=c["id"], function=FunctionCall(name=c["name"], arguments=json.dumps(c["args"], ensure_ascii=False)))
            for c in final.tool_calls]


def _named(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool turns with the name of the tool they answer (the prompt says which tool returned what)."""
    names = {c["id"]: c["function"]["name"] for m in messages for c in m.get("tool_calls", [])}
    return [{**m, "name": names[m["tool_call_id"]]} if m["role"] == "tool" and not m.get("name")
            and m.get("tool_call_id") in names else m for m in messages]


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    state = request.app.state
    body.refuse_unsupported()
    served = lookup(state.catalog, body.model, ("chat", "rag"), "/v1/chat/completions")
    messages = _named([m.wire() for m in body.messages])
    if not any(m["content"].strip() or m.get("tool_calls") for m in messages):
        raise APIError(400, "messages are empty: write a message for the model to answer", param="messages")
    produce = chat_producer(served, messages, generation_settings(body, state.config), body.constraints())
    return await respond(request, Answer(produce, ChatWire(body.model, body.include_usage()), f"chat {body.model}",
                                         "messages", body.stream, body.include_usage()))
