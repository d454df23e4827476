"""LangChain adapters over local models: a chat model, a text LLM and embeddings.

They are small on purpose and pass langchain-tests' standard suites (``tests/test_lc_standard.py``).
Weights come from the registry's shared cache, so building an adapter is cheap.

    from llmapp.lc import ChatLocal
    chat = ChatLocal(model="smollm2-135m-instruct", max_tokens=64)
    for chunk in chat.stream("Tell me a joke"):
        print(chunk.content, end="", flush=True)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import LLM, BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, GenerationChunk
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from llmapp.config import GenerationConfig
from llmapp.errors import LLMAppError
from llmapp.generation import TextStream, fit_prompt
from llmapp.models import (
    DEFAULT_CHAT,
    DEFAULT_EMBEDDINGS,
    LoadedLM,
    load_causal_lm,
    load_sentence_transformer,
)

_ROLES = {"system": "system", "human": "user", "ai": "assistant", "chat": "user"}


class LocalModelSettings(BaseModel):
    """Decoding settings shared by :class:`ChatLocal` and :class:`LocalLLM` (see GenerationConfig)."""

    model: str = DEFAULT_CHAT  # registry name, local HF directory, .gguf file or hub id
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: list[str] | None = None
    truncate: bool = False  # left-truncate an over-long prompt instead of raising PromptTooLong
    device: str | None = None
    dtype: str = "auto"
    streaming: bool = False  # LangChain's flag: invoke() streams internally (for callbacks)
    timeout: float | None = None  # seconds; generation stops there and returns what it has
    # Accepted so code written for hosted models runs unchanged; a local model needs neither.
    max_retries: int = 0
    api_key: SecretStr | None = Field(default=None, exclude=True)

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    @property
    def lm(self) -> LoadedLM:
        """The loaded model and tokenizer, shared through the registry's cache."""
        return load_causal_lm(self.model, device=self.device, dtype=self.dtype)

    @property
    def context_window(self) -> int:
        return self.lm.context_window

    def generation_config(self, stop: list[str] | None = None, **overrides: Any) -> GenerationConfig:
        """This object's settings, with per-call ``stop`` and keyword overrides applied."""
        fields = {k: overrides.get(k, getattr(self, k)) for k in
                  ("max_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed", "truncate")}
        return GenerationConfig(stop=list(stop if stop is not None else self.stop or []), **fields)

    def _text_stream(self, input_ids: list[int], stop: list[str] | None, **kwargs: Any) -> TextStream:
        config = self.generation_config(stop, **kwargs)
        return TextStream(self.lm, fit_prompt(self.lm, input_ids, config), config)


class ChatLocal(LocalModelSettings, BaseChatModel):
    """A chat model over a local Hugging Face causal LM, using the model's own chat template.

    Streams token by token, honours ``stop``/``max_tokens``/``temperature``/``top_p``/``seed`` and
    reports ``usage_metadata``. Tool calling and multimodal input are not supported.
    """

    @property
    def _llm_type(self) -> str:
        return "llmapp-local-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "max_tokens": self.max_tokens, "temperature": self.temperature}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params.update(ls_provider="llmapp", ls_model_name=kwargs.get("model", self.model),
                      ls_temperature=kwargs.get("temperature", self.temperature),
                      ls_max_tokens=kwargs.get("max_tokens", self.max_tokens))
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    def prompt_ids(self, messages: list[BaseMessage]) -> list[int]:
        """Token ids of ``messages`` rendered with the chat template, ready for the reply."""
        chat = [to_chat_dict(m) for m in messages]
        if not any(m["content"].strip() for m in chat):
            raise LLMAppError("empty prompt: write a message for the model to answer")
        tok = self.lm.tokenizer
        if getattr(tok, "chat_template", None):
            out = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
            return list(out["input_ids"] if hasattr(out, "keys") else out)
        # A model without a chat template (e.g. a GPT trained by `llmapp train`): plain transcript.
        text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in chat) + "Assistant:"
        return tok(text, add_special_tokens=False)["input_ids"]

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Any = None) -> int:
        return len(self.prompt_ids(messages)) if messages else 0

    def get_token_ids(self, text: str) -> list[int]:
        return self.lm.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        stream = self._text_stream(self.prompt_ids(messages), stop, **kwargs)
        text = ""
        for piece in stream:
            text += piece
            if run_manager:
                run_manager.on_llm_new_token(piece)
        message = AIMessage(content=text, usage_metadata=_usage(stream),
                            response_metadata=self._response_metadata(stream))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        stream = self._text_stream(self.prompt_ids(messages), stop, **kwargs)
        for piece in stream:
            if run_manager:
                run_manager.on_llm_new_token(piece)
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        yield ChatGenerationChunk(message=AIMessageChunk(
            content="", usage_metadata=_usage(stream), response_metadata=self._response_metadata(stream),
            chunk_position="last"))

    def _response_metadata(self, stream: TextStream) -> dict[str, Any]:
        return {"model_name": self.model, "finish_reason": stream.usage["finish_reason"]}


class LocalLLM(LocalModelSettings, LLM):
    """A plain text-completion LLM over a local causal LM: the prompt is continued as is."""

    @property
    def _llm_type(self) -> str:
        return "llmapp-local-llm"

    def _call(self, prompt: str, stop: list[str] | None = None,
              run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> str:
        return "".join(chunk.text for chunk in self._stream(prompt, stop, run_manager, **kwargs))

    def _stream(self, prompt: str, stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[GenerationChunk]:
        if not prompt.strip():
            raise LLMAppError("empty prompt: give the model some text to continue")
        ids = self.lm.tokenizer(prompt)["input_ids"]
        for piece in self._text_stream(ids, stop, **kwargs):
            if run_manager:
                run_manager.on_llm_new_token(piece)
            yield GenerationChunk(text=piece)

    def get_token_ids(self, text: str) -> list[int]:
        return self.lm.tokenizer(text, add_special_tokens=False)["input_ids"]


class LocalEmbeddings(BaseModel, Embeddings):
    """Sentence-transformers embeddings, encoded in batches and L2-normalized (cosine = dot product)."""

    model: str = DEFAULT_EMBEDDINGS  # registry name, local sentence-transformers directory or hub id
    batch_size: int = 64  # texts per forward pass; 64 keeps MiniLM near its peak throughput on CPU
    normalize: bool = True  # unit vectors, so FAISS inner product is cosine similarity
    show_progress: bool = False
    device: str | None = None

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    @property
    def client(self) -> Any:
        """The shared ``SentenceTransformer``."""
        return load_sentence_transformer(self.model, self.device)

    @property
    def dimension(self) -> int:
        return int(self.client.get_sentence_embedding_dimension())

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts).tolist() if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self.encode([text])[0].tolist()

    def encode(self, texts: list[str]) -> Any:
        """Embed ``texts`` as a float32 numpy array of shape (len(texts), dimension)."""
        return self.client.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=self.normalize,
                                  convert_to_numpy=True, show_progress_bar=self.show_progress)


def to_chat_dict(message: BaseMessage) -> dict[str, str]:
    """A LangChain message as a ``{"role", "content"}`` dict for a chat template."""
    role = _ROLES.get(message.type)
    if role is None:
        raise LLMAppError(f"{message.type} messages are not supported by local chat models; "
                          "send system, human and AI messages only")
    content = message.content
    if isinstance(content, list):  # content blocks: keep the text ones
        content = "".join(b if isinstance(b, str) else b.get("text", "") for b in content)
    return {"role": role, "content": content}


def _usage(stream: TextStream) -> dict[str, int]:
    inp, out = stream.usage["input_tokens"], stream.usage["output_tokens"]
    return {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out}
