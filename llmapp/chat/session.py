"""The chat REPL's engine: a :class:`ChatSession`, free of terminal I/O
(its slash commands are ``llmapp.chat.commands``).

The session holds the history, the system prompt, generation settings (a ``GenerationConfig``), the
chat model (switched through the registry) and, in RAG mode, a store. ``session.send(text)`` returns
a :class:`Reply` to iterate piece by piece; the history is trimmed oldest-first to fit the context
window, and every change is autosaved to a JSONL log (``llmapp.chat.conversation``). The terminal front
end lives in ``llmapp.chat.terminal``; ``llmapp chat`` wires them together.

    from llmapp.chat.session import ChatSession
    session = ChatSession(settings={"max_tokens": 32})
    for piece in session.send("My name is Ada."):
        print(piece, end="", flush=True)
    print(session.run_command("/tokens"))
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmapp.chat.commands import ExitChat, run_command
from llmapp.chat.conversation import ChatState, ConversationLog, fit_history
from llmapp.chat.state import clean_text, parse_settings
from llmapp.core.config import GenerationConfig, RAGConfig
from llmapp.core.errors import LLMAppError
from llmapp.models import DEFAULT_CHAT

log = logging.getLogger(__name__)

SESSION_KEYS = ("max_context",)  # /set keys that are the session's, not GenerationConfig's


class Reply:
    """One streamed answer. Iterate it for text pieces; when iteration ends (or :meth:`stop` is
    called after Ctrl-C) the answer joins the history, marked ``partial`` if it was cut short.

    Attributes:
        dropped: messages trimmed from the prompt to fit the context window (0 = none).
        sources: RAG sources (``[{"n", "source", "snippet", "score", ...}]``), else empty.
        text: the text so far.
        output_tokens / elapsed / first_token_s: filled in as it streams, for the status line.
    """

    def __init__(self, session: ChatSession, pieces: Iterator[Any], dropped: int = 0, rag: bool = False) -> None:
        self.session, self._pieces, self.dropped, self.rag = session, pieces, dropped, rag
        self.sources: list[dict[str, Any]] = []
        self.abstained = False
        self.text = ""
        self.partial = False
        self.output_tokens: int | None = None
        self.started = time.perf_counter()
        self.first_token_s: float | None = None
        self.elapsed = 0.0
        self._done = False
        if rag:  # the RAG chain's first chunk carries the sources: read it now so they show first
            first = next(self._pieces, None)
            if isinstance(first, dict):
                self.sources = list(first.get("sources") or [])
                self.abstained = bool(first.get("abstained"))

    def __iter__(self) -> Iterator[str]:
        for chunk in self._pieces:
            piece = self._text_of(chunk)
            if piece:
                if self.first_token_s is None:
                    self.first_token_s = time.perf_counter() - self.started
                self.text += piece
                yield piece
        self._finish(partial=False)

    def _text_of(self, chunk: Any) -> str:
        if isinstance(chunk, dict):  # RAG: {"answer": piece} (or a late {"sources": ...})
            if "sources" in chunk:
                self.sources = list(chunk["sources"] or [])
            return str(chunk.get("answer") or "")
        usage = getattr(chunk, "usage_metadata", None)
        if usage:
            self.output_tokens = usage.get("output_tokens")
        return chunk.content if isinstance(chunk.content, str) else ""

    def stop(self) -> None:
        """Cancel generation (the model stops within one token) and keep what was said, marked partial."""
        close = getattr(self._pieces, "close", None)
        if close:
            close()
        self._finish(partial=True)

    @property
    def tokens_per_s(self) -> float | None:
        """Decode speed after the first token (prefill excluded), or None for a one-token reply."""
        n = self.output_tokens or 0
        decode = self.elapsed - (self.first_token_s or 0.0)
        return (n - 1) / decode if n > 1 and decode > 0 else None

    def _finish(self, partial: bool) -> None:
        if self._done:
            return
        self._done = True
        self.partial = partial
        self.elapsed = time.perf_counter() - self.started
        if self.output_tokens is None and self.text:
            self.output_tokens = self.session.count_text(self.text)
        if self.text or not partial:
            msg: dict[str, Any] = {"role": "assistant", "content": self.text}
            if partial:
                msg["partial"] = True
            if self.sources:
                msg["sources"] = self.sources
            self.session.add_message(msg)


class ChatSession:
    """A conversation with a local chat model.

    Args:
        model: registry name, local HF directory, ``.gguf`` file or hub id.
        system: the system prompt (None: the model's own default).
        settings: ``GenerationConfig`` overrides, e.g. ``{"max_tokens": 64}`` or ``["temperature=0.7"]``.
        max_context: cap on the context window in tokens (None: the model's window). A smaller
            window trims sooner and keeps prefill fast on CPU.
        store: a RAG store folder; answers then come from ``chains.rag`` with ``[n]`` citations.
        log: where to autosave (None: do not save).
        chat_model: an already built chat model to use instead of loading ``model``.
        backend: ``llamacpp``, ``hf``, ``openai`` or ``fake`` (default: chosen from the model name).
    """

    def __init__(self, model: str = DEFAULT_CHAT, system: str | None = None,
                 settings: dict[str, Any] | list[str] | None = None, max_context: int | None = None,
                 store: str | Path | None = None, log: ConversationLog | None = None,
                 chat_model: Any = None, backend: str | None = None) -> None:
        self.model_name, self.backend = model, backend
        self.system = system or None
        self.config = GenerationConfig()
        self.max_context = max_context
        self.messages: list[dict[str, Any]] = []
        self.log = log
        self.rag_config = RAGConfig()
        self.store: Any = None
        self._chat_model = chat_model
        self._load_lock = threading.Lock()
        if settings:
            self.set(settings, record=False)
        if store:
            self.use_store(store)

    # -- the model ---------------------------------------------------------------------------
    @property
    def chat_model(self) -> Any:
        """The chat model, built on first use (its weights come from the registry's shared cache)."""
        with self._load_lock:
            if self._chat_model is None:
                from llmapp.backends import load_chat_model

                self._chat_model = load_chat_model(self.model_name, backend=self.backend).warm()  # errors surface here
            return self._chat_model

    def preload(self) -> threading.Thread:
        """Load the model in a background thread (the REPL does this while you type)."""
        def run() -> None:
            try:
                self.chat_model  # noqa: B018
                self.count([{"role": "user", "content": "hi"}])  # compiles the chat template (~0.1-1 s)
            except Exception:  # noqa: BLE001 - the error resurfaces, one line, on first use
                log.debug("preload failed", exc_info=True)

        thread = threading.Thread(target=run, daemon=True, name="llmapp-preload")
        thread.start()
        return thread

    @property
    def context_window(self) -> int:
        """Tokens available: the model's window, capped by ``max_context``."""
        window = self.chat_model.context_window
        return min(window, self.max_context) if self.max_context else window

    def switch_model(self, name: str, backend: str | None = None) -> None:
        """Switch to another model or backend (the history stays). Raises LLMAppError for an unknown name."""
        from llmapp.backends import load_chat_model

        model = load_chat_model(name, backend=backend).warm()  # unknown -> one line listing valid names
        with self._load_lock:
            self._chat_model, self.model_name, self.backend = model, name, backend
        self._record_settings()

    # -- state -------------------------------------------------------------------------------
    @property
    def state(self) -> ChatState:
        return ChatState(system=self.system, messages=[dict(m) for m in self.messages], model=self.model_name,
                         settings=self.settings_dict())

    def settings_dict(self) -> dict[str, Any]:
        """Settings that differ from the defaults (what /save and the autosave record)."""
        default = GenerationConfig()
        out = {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config)
               if getattr(self.config, f.name) != getattr(default, f.name)}
        if self.max_context:
            out["max_context"] = self.max_context
        return out

    def restore(self, state: ChatState, record: bool = True) -> None:
        """Replace the history, system prompt and settings with ``state`` (from /load or --continue).

        All or nothing: settings are validated first, so a bad file leaves the session as it was.

        Raises:
            LLMAppError: a setting that is unknown or out of range (one line naming it).
        """
        config, max_context = parse_settings(dict(state.settings or {}), GenerationConfig(), None)
        self.system, self.messages = state.system, [dict(m) for m in state.messages]
        self.config, self.max_context = config, max_context
        if record:
            self._record({"type": "reset"})
            self._record({"type": "system", "content": self.system})
            self._record_settings()
            for m in self.messages:
                self._record({"type": "message", **m})

    def add_message(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self._record({"type": "message", **message})

    def _record(self, event: dict[str, Any]) -> None:
        if self.log is None:
            return
        try:
            self.log.append(event, header={"model": self.model_name, "system": self.system,
                                           "settings": self.settings_dict()})
        except (OSError, ValueError) as exc:  # a full disk, a removed folder...: say so once, the chat goes on
            log.warning("autosave to %s failed (%s); the chat goes on unsaved: /save FILE keeps it",
                        self.log.path, getattr(exc, "strerror", None) or exc)
            self.log = None

    def record_start(self) -> None:
        """Log the system prompt and settings now in force (after changing them on --continue)."""
        self._record({"type": "system", "content": self.system})
        self._record_settings()

    def _record_settings(self) -> None:
        self._record({"type": "settings", "values": self.settings_dict(), "model": self.model_name})

    def set(self, pairs: dict[str, Any] | list[str], record: bool = True) -> None:
        """Apply ``key=value`` settings (GenerationConfig fields, plus ``max_context``).

        Raises:
            LLMAppError: an unknown key or a bad value (one line; the settings stay as they were).
        """
        items = dict(p.split("=", 1) if "=" in p else (p, "") for p in pairs) if isinstance(pairs, list) else dict(pairs)
        self.config, self.max_context = parse_settings(items, self.config, self.max_context)
        if record:
            self._record_settings()

    # -- RAG ---------------------------------------------------------------------------------
    def use_store(self, store: str | Path | None) -> None:
        """Answer from a RAG store folder from now on (None: back to plain chat)."""
        if store is None:
            self.store = None
            return
        try:
            from chains.stores import open_store
        except ImportError as exc:
            raise LLMAppError(f"RAG needs the chains package ({exc}); reinstall llmapp") from None
        self.store = open_store(store)  # a folder or a postgresql:// URL

    # -- talking -----------------------------------------------------------------------------
    def count(self, messages: list[dict[str, Any]]) -> int:
        """Tokens of ``messages`` rendered with the model's own chat template."""
        return self.chat_model.get_num_tokens_from_messages(_to_lc(messages))

    def count_text(self, text: str) -> int:
        return len(self.chat_model.get_token_ids(text))

    def context_usage(self) -> dict[str, int]:
        """How the history fills the window, counted the way the next prompt will be built.

        Returns:
            ``{"used", "window", "reserved", "free", "messages", "kept"}``: tokens of the prompt
            after trimming, the window, tokens kept for the reply, what is left, and how many of
            the messages (``kept``) still fit.
        """
        window, reserved = self.context_window, self.config.max_tokens
        head = [{"role": "system", "content": self.system}] if self.system else []
        kept = self.messages
        try:
            kept, _ = fit_history(self.messages, self.system, self.count, max(1, window - reserved))
        except LLMAppError:
            pass  # even the newest turn is too long: report the whole thing
        rows = head + [{"role": m["role"], "content": m["content"]} for m in kept]
        used = self.count(rows) if rows else 0
        return {"used": used, "window": window, "reserved": reserved, "free": max(0, window - used - reserved),
                "messages": len(self.messages), "kept": len(kept)}

    def send(self, text: str) -> Reply:
        """Add a user message and start the reply.

        Raises:
            LLMAppError: an empty message, or one too long for the window even with no history.
        """
        if not text.strip():
            raise LLMAppError("empty message: type something for the model to answer")
        self.add_message({"role": "user", "content": clean_text(text)})
        return self._answer()

    def retry(self) -> Reply:
        """Withdraw the last reply and generate it again (sample with /set temperature>0 to vary it)."""
        while self.messages and self.messages[-1]["role"] == "assistant":
            self.messages.pop()
            self._record({"type": "pop"})
        if not self.messages:
            raise LLMAppError("nothing to retry yet: send a message first")
        return self._answer()

    def _answer(self) -> Reply:
        model = self._model_with_settings()
        if self.store is not None:
            from chains.rag import rag_chain

            chain = rag_chain(self.store, model, config=self.rag_config, return_sources=True)
            return Reply(self, iter(chain.stream({"question": self.messages[-1]["content"]})), rag=True)
        budget = self.context_window - self.config.max_tokens
        if budget <= 0:
            raise LLMAppError(f"max_tokens={self.config.max_tokens} leaves no room in the {self.context_window}-token "
                              "window; /set max_tokens lower or max_context higher")
        try:
            kept, dropped = fit_history(self.messages, self.system, self.count, budget)
        except LLMAppError:
            self.messages.pop()  # the message that cannot fit does not stay to poison later turns
            self._record({"type": "pop"})
            raise
        head = [{"role": "system", "content": self.system}] if self.system else []
        return Reply(self, iter(model.stream(_to_lc(head + kept))), dropped=dropped)

    def _model_with_settings(self) -> Any:
        return self.chat_model.with_generation(self.config)

    # -- commands ----------------------------------------------------------------------------
    def run_command(self, line: str) -> Any:
        """Run a slash command line such as ``/set temperature=0.7``.

        Returns:
            Text to show, a :class:`Reply` to stream (``/retry``), or None.

        Raises:
            LLMAppError: unknown command or bad argument (one line).
            ExitChat: ``/exit``.
        """
        return run_command(self, line)


def _to_lc(messages: list[dict[str, Any]]) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [kinds[m["role"]](content=m["content"]) for m in messages]


__all__ = ["ChatSession", "ExitChat", "Reply"]
