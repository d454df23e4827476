"""What every local chat backend shares: the LangChain models, stop strings, usage and the window check.

A local backend supplies an :class:`Engine`: it tokenizes, renders the chat template and streams raw
text pieces for a prompt. Everything a user relies on is written once here, over any engine:

- :class:`LocalChatModel` and :class:`LocalTextModel`: LangChain's ``BaseChatModel`` and ``LLM``
  with token-by-token streaming, ``usage_metadata``, and the decoding settings of
  :class:`~llmapp.core.config.GenerationConfig` as fields (derived from it, so never listed twice);
- :class:`TextStream`: stop strings that never leak (a partial match is held back), a cancel event
  that stops the engine within one token, a deadline, and ``usage``;
- :func:`fit_prompt`: the context-window check, with opt-in left-truncation;
- the two hooks the REPL, the server and the CLI use on any chat model: ``warm()`` and
  ``with_generation(config)``.

    from llmapp.backends import load_chat_model
    chat = load_chat_model(max_tokens=32)
    chat.warm()                                           # load the weights now
    greedy = chat.with_generation({"temperature": 0.7, "seed": 1})
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from typing import Any, ClassVar

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import LLM, BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, GenerationChunk
from pydantic import ConfigDict, Field, SecretStr, create_model

from llmapp.backends.engine import Engine, Generation, TextStream, fit_prompt
from llmapp.backends.structured import StructuredChat
from llmapp.backends.tools import to_chat_dict
from llmapp.core.config import GENERATION_FIELDS, GenerationConfig
from llmapp.core.errors import LLMAppError
from llmapp.models.registry import DEFAULT_CHAT


def _generation_fields() -> dict[str, Any]:
    """GenerationConfig's fields as pydantic fields: the chat models' settings are derived, not listed."""
    hints = typing.get_type_hints(GenerationConfig)
    out = {}
    for name, f in GENERATION_FIELDS.items():
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        annotation = hints[name] | None if name == "stop" else hints[name]  # LangChain passes stop=None
        out[name] = (annotation, Field(default=default, description=f.metadata["why"]))
    return out


GenerationSettings = create_model("GenerationSettings", __config__=ConfigDict(extra="forbid", protected_namespaces=()),
                                  **_generation_fields())


class LocalModel(GenerationSettings):  # type: ignore[misc, valid-type]
    """Settings and hooks shared by local chat and text models; subclasses say how to load the engine."""

    model: str = DEFAULT_CHAT  # registry name, local HF directory, .gguf file or cached hub id
    streaming: bool = False  # LangChain's flag: invoke() streams internally (for callbacks)
    timeout: float | None = None  # seconds; generation stops there and returns what it has
    # Accepted so code written for hosted models runs unchanged; a local model needs neither.
    max_retries: int = 0
    api_key: SecretStr | None = Field(default=None, exclude=True)

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    backend_name: ClassVar[str] = ""

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self.generation_config()  # validate now: a bad setting fails where it was written, in one line

    @property
    def engine(self) -> Engine:
        """The loaded model, shared through the backend's in-process cache."""
        raise NotImplementedError

    @property
    def context_window(self) -> int:
        return self.engine.context_window

    def warm(self) -> LocalModel:
        """Load the weights (and compile the chat template) now rather than on the first request."""
        self.engine.chat_ids([{"role": "user", "content": "hi"}])
        return self

    def with_generation(self, config: GenerationConfig | dict[str, Any]) -> LocalModel:
        """A copy of this model decoding with ``config`` (a GenerationConfig, or some of its fields)."""
        changes = dataclasses.asdict(config) if isinstance(config, GenerationConfig) else dict(config)
        self.generation_config().replace(**changes)  # validates, naming any bad setting
        return self.model_copy(update=changes)

    def backend_info(self) -> dict[str, Any]:
        """What runs this model: backend, version, threads or device."""
        return self.engine.info()

    def generation_config(self, stop: list[str] | None = None, **overrides: Any) -> GenerationConfig:
        """This object's settings, with per-call ``stop`` and keyword overrides applied (validated)."""
        fields = {k: overrides.get(k, getattr(self, k)) for k in GENERATION_FIELDS if k != "stop"}
        return GenerationConfig(stop=list(stop if stop is not None else self.stop or []), **fields)

    def get_token_ids(self, text: str) -> list[int]:
        return self.engine.encode(text, add_special_tokens=False)

    def text_stream(self, input_ids: list[int], stop: list[str] | None, **kwargs: Any) -> TextStream:
        config = self.generation_config(stop, **kwargs)
        engine = self.engine
        return TextStream(engine, fit_prompt(engine.context_window, input_ids, config), config, timeout=self.timeout)


class LocalChatModel(StructuredChat, LocalModel, BaseChatModel):
    """A chat model over a local engine, using the model's own chat template.

    Streams token by token, honours ``stop``/``max_tokens``/``temperature``/``top_p``/``seed`` and
    reports ``usage_metadata``; structured output and tools come from :class:`StructuredChat`.
    """

    @property
    def _llm_type(self) -> str:
        return f"llmapp-{self.backend_name}-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "backend": self.backend_name, "max_tokens": self.max_tokens,
                "temperature": self.temperature}

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
        return self.chat_ids([to_chat_dict(m) for m in messages])

    def chat_ids(self, chat: list[dict[str, str]]) -> list[int]:
        """Token ids of ``{"role", "content"}`` dicts rendered with the chat template."""
        if not any(m["content"].strip() for m in chat):
            raise LLMAppError("empty prompt: write a message for the model to answer")
        return self.engine.chat_ids(chat)

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Any = None) -> int:
        return len(self.prompt_ids(messages)) if messages else 0

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        chat, grammar = self.plan_reply(messages, kwargs)
        if grammar is not None:
            message = self.constrained_reply(chat, grammar, run_manager, **kwargs).result()
            return ChatResult(generations=[ChatGeneration(message=message)])
        stream = self.text_stream(self.chat_ids(chat), stop, **kwargs)
        text = ""
        for piece in stream:
            text += piece
            if run_manager:
                run_manager.on_llm_new_token(piece)
        message = AIMessage(content=text, usage_metadata=_usage(stream), response_metadata=self._metadata(stream))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        chat, grammar = self.plan_reply(messages, kwargs)
        if grammar is not None:
            yield from self.constrained_reply(chat, grammar, run_manager, **kwargs).chunks()
            return
        stream = self.text_stream(self.chat_ids(chat), stop, **kwargs)
        pieces = iter(stream)
        try:
            for piece in pieces:
                if run_manager:
                    run_manager.on_llm_new_token(piece)
                yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        finally:
            pieces.close()  # an early close of this generator stops the engine within one token
        yield ChatGenerationChunk(message=AIMessageChunk(
            content="", usage_metadata=_usage(stream), response_metadata=self._metadata(stream), chunk_position="last"))

    def _metadata(self, stream: TextStream) -> dict[str, Any]:
        return {"model_name": self.model, "finish_reason": stream.usage["finish_reason"]}


class LocalTextModel(LocalModel, LLM):
    """A plain text-completion LLM over a local engine: the prompt is continued as is."""

    @property
    def _llm_type(self) -> str:
        return f"llmapp-{self.backend_name}-llm"

    def _call(self, prompt: str, stop: list[str] | None = None,
              run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> str:
        return "".join(chunk.text for chunk in self._stream(prompt, stop, run_manager, **kwargs))

    def _stream(self, prompt: str, stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[GenerationChunk]:
        if not prompt.strip():
            raise LLMAppError("empty prompt: give the model some text to continue")
        pieces = iter(self.text_stream(self.engine.encode(prompt, add_special_tokens=True), stop, **kwargs))
        try:
            for piece in pieces:
                if run_manager:
                    run_manager.on_llm_new_token(piece)
                yield GenerationChunk(text=piece)
        finally:
            pieces.close()


def _usage(stream: TextStream) -> dict[str, int]:
    inp, out = stream.usage["input_tokens"], stream.usage["output_tokens"]
    return {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out}


__all__ = ["Engine", "Generation", "LocalChatModel", "LocalModel", "LocalTextModel", "TextStream",
           "fit_prompt", "to_chat_dict"]
