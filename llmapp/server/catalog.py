"""What the server serves: its catalog of model names, and the producers that run requests on them.

A served name is a chat model (``/v1/chat/completions`` and ``/v1/completions``), an embeddings
model (``/v1/embeddings``) or a RAG store, ``rag:NAME``, answered with ``[n]`` citations through
``chains.rag`` by the server's chat model. Everything is loaded by :func:`load_catalog` before the
server accepts traffic. A *producer* is a zero-argument function returning an iterator, run on a
worker thread (``llmapp.server.pool``): chat and completion producers yield text pieces and then one
:class:`Final`; closing the iterator stops the model.

    catalog = load_catalog(ServeConfig(models=["smollm2-135m-instruct"], stores=["./store"]))
    sorted(catalog)   # ['rag:store', 'smollm2-135m-instruct']
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmapp.core.errors import LLMAppError
from llmapp.models import DEFAULT_CHAT, REGISTRY
from llmapp.server.schemas import APIError

if TYPE_CHECKING:
    from llmapp.server.config import ServeConfig

log = logging.getLogger(__name__)

Producer = Callable[[], Iterator[Any]]


@dataclass
class Final:
    """The last item of a text producer: token counts and why generation ended."""

    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # OpenAI's: "stop", "length" or "tool_calls"
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # LangChain tool calls of the reply


@dataclass(eq=False)  # hashed by identity: it keys the RAG chain cache
class ServedModel:
    """One name in ``/v1/models`` and what answers for it."""

    name: str
    kind: str  # "chat", "embeddings" or "rag"
    target: str  # registry name / path of the weights, or the store folder for "rag"
    chat_model: str = DEFAULT_CHAT  # the chat model a "rag" store answers with
    store: Any = None  # the loaded chains.store.Store, for "rag"
    rag_config: Any = None  # RAGConfig for "rag"
    chat: Any = None  # the loaded chat model ("chat": its own; "rag": the one that answers), warm
    options: dict[str, Any] = field(default_factory=dict)  # backend and engine options, for load_llm too
    # The embeddings tokenizer is a Rust object whose truncation setting encode() flips; concurrent
    # flips raise "Already borrowed", so embedding requests take turns (each takes milliseconds).
    lock: threading.Lock = field(default_factory=threading.Lock)


def load_catalog(config: ServeConfig) -> dict[str, ServedModel]:
    """Load every model and store the server will serve, so the first request is fast.

    Raises:
        LLMAppError: an unknown or unservable model, a missing store, or a duplicate name.
    """
    from llmapp.models.embeddings import load_sentence_transformer

    chat_models: dict[str, Any] = {}

    def chat(name: str) -> Any:  # one chat model per name, shared by its own entry and the RAG stores
        if name not in chat_models:
            chat_models[name] = _load_chat(name, config)
        return chat_models[name]

    entries: list[ServedModel] = []
    for name in config.models:
        if name.startswith("rag:"):  # a URL is served under its store name: no password in /v1/models
            entries.append(ServedModel(_rag_name(name), "rag", name[4:]))
        else:
            entries.append(ServedModel(name, _kind_of(name), name))
    for store in config.stores:
        entries.append(ServedModel(f"rag:{_store_name(store)}", "rag", str(store)))
    chat_names = [e.name for e in entries if e.kind == "chat"]
    rag_chat = config.chat_model or (chat_names[0] if chat_names else DEFAULT_CHAT)
    catalog: dict[str, ServedModel] = {}
    for entry in entries:
        if entry.name in catalog:
            raise LLMAppError(f"model name {entry.name!r} is served twice; give each model or store once")
        if entry.kind == "chat":
            entry.chat = chat(entry.target)
            entry.options = _options(entry.target, config)
        elif entry.kind == "embeddings":
            load_sentence_transformer(entry.target)
        else:
            entry.chat_model, entry.rag_config = rag_chat, config.rag
            entry.store = _load_store(entry.target)
            entry.chat = chat(rag_chat)
        catalog[entry.name] = entry
        log.info("serving %s (%s)", entry.name, entry.kind)
    if not catalog:
        raise LLMAppError("nothing to serve: pass --model NAME or --store DIR")
    return catalog


def lookup(catalog: dict[str, ServedModel], name: str, kinds: tuple[str, ...], endpoint: str) -> ServedModel:
    """The served model called ``name``, checked against the kinds an endpoint accepts.

    Raises:
        APIError: 404 ``model_not_found`` for an unknown name, 400 for the wrong kind of model.
    """
    served = catalog.get(name)
    if served is None:
        raise APIError(404, f"The model `{name}` does not exist on this server; served models: {', '.join(catalog)}",
                       param="model", code="model_not_found")
    if served.kind not in kinds:
        fit = ", ".join(n for n, m in catalog.items() if m.kind in kinds) or "none"
        raise APIError(400, f"`{name}` is a {served.kind} model and cannot serve {endpoint}; use one of: {fit}",
                       param="model", code="model_not_supported")
    return served


def chat_producer(served: ServedModel, messages: list[dict[str, Any]], settings: dict[str, Any],
                  constraints: dict[str, Any] | None = None) -> Producer:
    """Stream a chat reply (or, for ``rag:`` names, a cited answer to the last user message).

    ``messages`` are OpenAI message dicts (tool calls and tool turns included); ``constraints`` are the
    request's ``tools``/``tool_choice``/``response_format``, passed to the chat model as they are.
    """
    if served.kind == "rag":
        if constraints:
            raise APIError(400, f"{served.name} answers in cited text; tools and response_format need a chat model",
                           param="tools" if "tools" in constraints else "response_format")
        return _rag_producer(served, messages, settings)

    def produce() -> Iterator[Any]:
        from langchain_core.messages import AIMessageChunk, convert_to_messages

        chat = served.chat.with_generation(settings)
        usage: dict[str, int] = {}
        finish = "stop"
        reply: Any = AIMessageChunk(content="")
        stream = chat.stream(convert_to_messages(messages), **(constraints or {}))
        try:
            for chunk in stream:
                if chunk.content:
                    yield chunk.content
                if chunk.tool_call_chunks:
                    reply = reply + chunk
                usage = chunk.usage_metadata or usage
                finish = chunk.response_metadata.get("finish_reason") or finish
        finally:
            stream.close()  # stops generate() within a token when the client went away
        yield Final(usage.get("input_tokens", 0), usage.get("output_tokens", 0),
                    finish if finish in ("length", "tool_calls") else "stop", list(reply.tool_calls))

    return produce


def completion_producer(served: ServedModel, prompt: str, settings: dict[str, Any], echo: bool) -> Producer:
    """Continue ``prompt`` as plain text through ``LocalLLM`` (no chat template)."""

    def produce() -> Iterator[Any]:
        from llmapp.backends import load_llm

        llm = load_llm(served.target, **served.options, **settings)
        if echo:
            yield prompt
        parts: list[str] = []
        yield from _relay(llm.stream(prompt), parts)
        text = "".join(parts)
        # LangChain's LLM stream carries no usage, so count with the model's own tokenizer.
        out = len(llm.get_token_ids(text)) if text else 0
        yield Final(llm.get_num_tokens(prompt), out, "length" if out >= settings["max_tokens"] else "stop")

    return produce


def _relay(stream: Iterator[str], parts: list[str]) -> Iterator[str]:
    """Yield ``stream``'s pieces, collecting them in ``parts``; closing this closes ``stream`` (stops the model)."""
    try:
        for piece in stream:
            parts.append(piece)
            yield piece
    finally:
        stream.close()


def embeddings_producer(served: ServedModel, texts: list[str], max_total_tokens: int | None = None) -> Producer:
    """Embed ``texts``; yields one ``(vectors, token_count)`` pair. Over-long texts are refused, not cut,
    and so is a request of more than ``max_total_tokens`` tokens in all."""

    def produce() -> Iterator[Any]:
        from llmapp.models.embeddings import load_sentence_transformer

        st = load_sentence_transformer(served.target)
        limit = st.max_seq_length
        with served.lock:
            lengths = [len(ids) for ids in st.tokenizer(texts, truncation=False)["input_ids"]]
            for i, n in enumerate(lengths):
                if n > limit:
                    raise APIError(400, f"input[{i}] is {n} tokens but {served.name} reads at most {limit}; "
                                   "split the text into smaller chunks", param="input", code="context_length_exceeded")
            if max_total_tokens and sum(lengths) > max_total_tokens:
                raise APIError(400, f"the inputs are {sum(lengths)} tokens in all, over this server's limit of "
                               f"{max_total_tokens} per request; send them in smaller batches", param="input",
                               code="request_too_large")
            vectors = st.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
        yield vectors, sum(lengths)

    return produce


def _rag_producer(served: ServedModel, messages: list[dict[str, str]], settings: dict[str, Any]) -> Producer:
    questions = [m["content"] for m in messages if m["role"] == "user" and m["content"].strip()]
    if not questions:
        raise APIError(400, f"{served.name} answers the last user message, and there is none; send a question",
                       param="messages")
    question = questions[-1]  # a RAG store answers one question; earlier turns are not retrieved against

    def produce() -> Iterator[Any]:
        chat = served.chat.with_generation(settings)
        chain = _rag_chain(served, tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                                for k, v in settings.items())))
        parts: list[str] = []
        yield from _relay(chain.stream({"question": question}), parts)
        text = "".join(parts)
        # The chain hides its prompt (question + retrieved chunks): count what the client sent and got.
        yield Final(chat.get_num_tokens(question), chat.get_num_tokens(text) if text else 0, "stop")

    return produce


@functools.lru_cache(maxsize=16)
def _rag_chain(served: ServedModel, settings: tuple) -> Any:
    """A RAG chain per (store, decoding settings): building one may index BM25, so reuse it."""
    from chains.rag import rag_chain

    chat = served.chat.with_generation({k: list(v) if isinstance(v, tuple) else v for k, v in settings})
    return rag_chain(served.store, chat, config=served.rag_config, return_sources=False)


def _options(name: str, config: ServeConfig) -> dict[str, Any]:
    """The backend for ``name`` and its engine options: a llama.cpp engine gets a slot per worker."""
    from llmapp.backends import backend_for

    backend = backend_for(name, config.backend)
    options: dict[str, Any] = {"backend": backend}
    if backend == "llamacpp":
        options.update(slots=config.workers, threads=config.threads)
    return options


def _load_chat(name: str, config: ServeConfig) -> Any:
    from llmapp.backends import load_chat_model

    return load_chat_model(name, **_options(name, config)).warm()


def _kind_of(name: str) -> str:
    spec = REGISTRY.get(name)
    if spec is not None:
        if spec.kind not in ("chat", "embeddings"):
            servable = ", ".join(n for n, s in REGISTRY.items() if s.kind in ("chat", "embeddings"))
            raise LLMAppError(f"{name!r} is a {spec.kind} model, which the server cannot serve; use one of: {servable}")
        return spec.kind
    path = Path(name).expanduser()
    return "embeddings" if (path / "modules.json").exists() else "chat"


def _load_store(folder: str) -> Any:
    try:
        from chains.stores import is_postgres, open_store
    except ImportError as exc:
        raise LLMAppError(f"RAG stores need the chains package, which is not importable here ({exc})") from None
    from llmapp.core.files import readable_dir

    # readable_dir: a store left mid-swap by a killed writer is still served
    if not is_postgres(folder) and not readable_dir(Path(folder).expanduser()).is_dir():
        raise LLMAppError(f"store {folder!r} is not a folder; build one with: llmapp index FILES --store {folder}")
    return open_store(folder)  # a folder or a postgresql:// URL


def _store_name(store: str) -> str:
    from chains.stores import store_name

    return store_name(store)


def _rag_name(name: str) -> str:
    from chains.stores import is_postgres

    return f"rag:{_store_name(name[4:])}" if is_postgres(name[4:]) else name
