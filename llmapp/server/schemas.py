"""Request and response schemas of llmapp's OpenAI-compatible server, as pydantic models.

They follow OpenAI's API reference for ``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings`` and ``/v1/models`` closely enough that the official ``openai`` client works
unchanged. Requests forbid unknown fields (OpenAI answers those with a 400 too), so a typo is an error,
not silence; fields a local model cannot honour (``n>1``, logprobs) are refused with a message. Tools,
``tool_choice`` and ``response_format`` (``json_object``, ``json_schema``) are honoured by constrained
decoding (``llmapp.backends.structured``); tool calls come back in OpenAI's ``tool_calls`` shape.
Errors use OpenAI's body, ``{"error": {"message", "type", "param", "code"}}``, raised as :class:`APIError`.

    from llmapp.server.schemas import ChatCompletionRequest
    ChatCompletionRequest.model_validate({"model": "smollm2-135m-instruct",
                                          "messages": [{"role": "user", "content": "Hi"}]})
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_serializer, field_validator

FINGERPRINT = "fp_llmapp"  # OpenAI's system_fingerprint; constant because the backend is not versioned per call


class APIError(Exception):
    """An error answered as OpenAI's JSON error body with an HTTP status.

    Args:
        status: HTTP status code (400, 401, 404, 413, 429, 500, 503).
        message: one line: the problem and the fix.
        type: OpenAI's error type (``invalid_request_error``, ``authentication_error``, ...).
        param: the request field at fault, if any.
        code: OpenAI's machine-readable code (``model_not_found``, ``context_length_exceeded``, ...).
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def new_id(prefix: str) -> str:
    """An id in OpenAI's style, e.g. ``chatcmpl-3f2a...``."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class StreamOptions(_Request):
    include_usage: bool = False  # one extra chunk before [DONE] with the token counts
    include_obfuscation: bool | None = None  # OpenAI's padding against side channels; nothing to hide on loopback


class TextPart(_Request):
    type: Literal["text"]
    text: str


class FunctionCall(BaseModel):
    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionSpec(_Request):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None  # accepted: constrained calls always follow the schema


class ToolSpec(_Request):
    type: Literal["function"]
    function: FunctionSpec


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant turn that called tools
    tool_call_id: str | None = None  # a tool turn: the call it answers
    refusal: str | None = None  # echoed back by clients that resend whole assistant messages

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""

    def wire(self) -> dict[str, Any]:
        """This message as an OpenAI dict LangChain converts (``developer`` is read as ``system``)."""
        out: dict[str, Any] = {"role": "system" if self.role == "developer" else self.role, "content": self.text()}
        if self.tool_calls:
            out["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.role == "tool":
            out["tool_call_id"] = self.tool_call_id or ""
        if self.name:
            out["name"] = self.name
        return out


class _SamplingBase(_Request):
    """Fields shared by chat and text completions; ``None`` means the server's default."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)  # default 0: greedy suits a 135M model best
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(1, ge=1)
    # Accepted so existing clients work unchanged; a local model ignores them.
    user: str | None = None
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    logprobs: Any = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty strings")
        return stops

    def refuse_unsupported(self) -> None:
        """Raise a 400 for options that would silently change the answer if ignored."""
        if self.n not in (None, 1):
            raise APIError(400, f"n={self.n} is not supported; llmapp returns one choice (n=1)", param="n")
        if self.logprobs not in (None, False, 0):
            raise APIError(400, "logprobs are not supported by llmapp's server; leave logprobs unset", param="logprobs")
        if self.logit_bias:
            raise APIError(400, "logit_bias is not supported by llmapp's server; leave it unset", param="logit_bias")

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def _generation_extras() -> dict[str, Any]:
    """Decoding settings beyond OpenAI's own (``top_k``, ``repetition_penalty``, ...) under vLLM's names,
    derived from GenerationConfig so that a new setting reaches the API by itself."""
    import typing

    from llmapp.core.config import GENERATION_FIELDS, GenerationConfig

    hints = typing.get_type_hints(GenerationConfig)
    return {f.metadata["engines"]["openai"]: (hints[name] | None, None) for name, f in GENERATION_FIELDS.items()
            if f.metadata["engines"].get("openai") and f.metadata["engines"]["openai"] not in _SamplingBase.model_fields}


_Sampling = create_model("_Sampling", __base__=_SamplingBase, **_generation_extras())


class ChatCompletionRequest(_Sampling):  # type: ignore[misc, valid-type]
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # newer name for max_tokens; wins when both are set
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None  # {"type": "text" | "json_object" | "json_schema", ...}
    tools: list[ToolSpec] | None = None
    tool_choice: str | dict[str, Any] | None = None  # "auto", "none", "required" or {"type": "function", ...}
    parallel_tool_calls: bool | None = None  # accepted: a reply holds at most one call
    reasoning_effort: str | None = None
    modalities: list[str] | None = None

    def constraints(self) -> dict[str, Any]:
        """``tools``, ``tool_choice`` and ``response_format`` as chat-model keywords, checked now (a bad
        schema or choice is a 400 naming the field, before any job is queued)."""
        from llmapp.backends.grammar import response_format_grammar, tool_grammar
        from llmapp.backends.tools import choice
        from llmapp.core.errors import LLMAppError

        out: dict[str, Any] = {}
        param = "response_format"
        try:
            if self.response_format and self.response_format.get("type", "text") != "text":
                response_format_grammar(self.response_format)
                out["response_format"] = self.response_format
            if self.tools:
                param = "tools"
                specs = [t.function.model_dump(exclude_none=True) for t in self.tools]
                for spec in specs:
                    tool_grammar([spec])
                param = "tool_choice"
                choice(self.tool_choice, specs)
                out["tools"] = [{"type": "function", "function": spec} for spec in specs]
                if self.tool_choice is not None:
                    out["tool_choice"] = self.tool_choice
            elif self.tool_choice not in (None, "none", "auto"):
                raise LLMAppError("tool_choice needs tools; send tools, or leave tool_choice unset")
        except LLMAppError as exc:
            raise APIError(400, str(exc), param=param, code="invalid_value") from None
        return out

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):  # type: ignore[misc, valid-type]
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for /v1/completions
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1)

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if isinstance(self.prompt, list) and len(self.prompt) != 1:
            raise APIError(400, "send one prompt per request (a string, or a list of one string)", param="prompt")
        if self.suffix:
            raise APIError(400, "suffix (fill-in-the-middle) is not supported; leave it unset", param="suffix")
        if self.best_of not in (None, 1):
            raise APIError(400, "best_of>1 is not supported; leave it unset", param="best_of")

    def text(self) -> str:
        return self.prompt[0] if isinstance(self.prompt, list) else self.prompt

    def token_limit(self) -> int | None:
        return self.max_tokens


class EmbeddingRequest(_Request):
    model: str
    input: str | list[str]  # token-id arrays are not accepted: the client sends text
    encoding_format: Literal["float", "base64"] = "float"  # the openai client asks for base64 by default
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    def texts(self) -> list[str]:
        texts = [self.input] if isinstance(self.input, str) else list(self.input)
        if not texts:
            raise APIError(400, "input is empty: send a string or a non-empty list of strings", param="input")
        if any(not t.strip() for t in texts):
            raise APIError(400, "input contains an empty string; embed non-empty text only", param="input")
        return texts


# ---- responses ----------------------------------------------------------------------------------------

class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: str


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    system_fingerprint: str = FINGERPRINT
    choices: list[ChatChoice]
    usage: Usage


class ToolCallDelta(BaseModel):
    index: int = 0
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    logprobs: None = None
    finish_reason: str | None = None

    @field_serializer("delta")
    def _compact(self, delta: Delta) -> dict[str, Any]:  # OpenAI sends {"content": ...}, and {} at the end
        return delta.model_dump(exclude_none=True)


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str = FINGERPRINT
    choices: list[ChunkChoice]
    usage: Usage | None = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: None = None
    finish_reason: str | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    system_fingerprint: str = FINGERPRINT
    choices: list[CompletionChoice]
    usage: Usage | None = None


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # str: base64 of little-endian float32


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llmapp"
    kind: str  # llmapp's addition: chat, embeddings or rag, so a client can tell what each name is for
    context_window: int | None = None  # llmapp's addition (vLLM calls it max_model_len): tokens a prompt may use


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
