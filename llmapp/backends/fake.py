"""The ``fake`` backend: scripted replies through the same machinery as the real backends.

Code built on llmapp (chains, the REPL, the server) can be unit-tested in milliseconds with it:
replies stream word by word through :class:`~llmapp.backends.base.TextStream`, so stop strings,
``max_tokens``, usage, cancellation and the context-window check behave as they do on a real
model. A "token" is a word or a run of spaces.

    from llmapp.backends import load_chat_model
    chat = load_chat_model("scripted", backend="fake", replies=["Hello there.", "Bye."])
    chat.invoke("hi").content        # 'Hello there.'
    chat.invoke("hi").content        # 'Bye.'  (then it cycles)
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import PrivateAttr

from llmapp.backends.base import LocalChatModel
from llmapp.core.config import GenerationConfig

_TOKEN = re.compile(r"\s+|\S+")


class FakeEngine:
    """Replies from a list, in turn; ``delay`` seconds between tokens makes streaming observable."""

    def __init__(self, replies: list[str], context_window: int, delay: float) -> None:
        self.name, self.context_window, self.delay = "fake", context_window, delay
        self._replies = itertools.cycle(replies or ["Hello."])
        self._lock = threading.Lock()
        self.vocab: dict[str, int] = {}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [self.vocab.setdefault(t, len(self.vocab)) for t in _TOKEN.findall(text)]

    def chat_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        return self.encode("".join(f"<{m['role']}> {m['content']} " for m in messages) + "<assistant>")

    def generate(self, ids: list[int], config: GenerationConfig, cancel: threading.Event,
                 **options: Any) -> FakeGeneration:  # scripted: no grammar applies
        with self._lock:
            reply = next(self._replies)
        return FakeGeneration(_TOKEN.findall(reply), config.max_tokens, cancel, self.delay)

    def info(self) -> dict[str, Any]:
        return {"backend": "fake", "version": "scripted", "threads": 0}


class FakeGeneration:
    def __init__(self, tokens: list[str], max_tokens: int, cancel: threading.Event, delay: float) -> None:
        self.tokens, self.max_tokens, self.cancel, self.delay = tokens, max_tokens, cancel, delay
        self.output_tokens = 0
        self.finish_reason: str | None = None

    def __iter__(self) -> Iterator[str]:
        for token in self.tokens[:self.max_tokens]:
            if self.cancel.is_set():
                return
            if self.delay:
                time.sleep(self.delay)
            self.output_tokens += 1
            yield token
        self.finish_reason = "length" if len(self.tokens) > self.max_tokens else "stop"


class FakeChat(LocalChatModel):
    """A chat model that answers from ``replies`` in turn."""

    backend_name: ClassVar[str] = "fake"
    model: str = "fake"
    replies: list[str] = ["Hello."]
    window: int = 2048  # the context window it pretends to have
    delay: float = 0.0  # seconds per token
    _engine: FakeEngine | None = PrivateAttr(default=None)

    @property
    def engine(self) -> FakeEngine:
        if self._engine is None:
            self._engine = FakeEngine(self.replies, self.window, self.delay)
        return self._engine
