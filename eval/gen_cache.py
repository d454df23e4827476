"""A chat model wrapper that caches whole generations on disk, so an ablation grid pays once per prompt.

Two configurations of a grid that send the same prompt with the same decoding settings (they differ
only in abstention, attribution or grounding, say) share one generation. A generation is stored
with the time each piece arrived, and a replay reports the time the consumer would have waited up to
the last piece it read (``seconds``), so "seconds per answer" stays honest for chains that stop the
model early. Entries are JSON lines appended under a lock-free single writer (the eval process).

    from eval.gen_cache import CachedChat
    chat = CachedChat(load_chat_model(max_tokens=96), "runs/rag/generations.jsonl", model="smollm2")
    for chunk in chat.stream(messages, stop=["\\nQuestion:"]): ...
    chat.seconds                                    # time to the last piece consumed (measured or replayed)
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessageChunk

log = logging.getLogger(__name__)


class GenerationCache:
    """prompt key -> ``{"pieces": [[text, seconds], ...]}``, one JSON line per entry."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.entries[row["key"]] = row
                except (json.JSONDecodeError, KeyError, TypeError):
                    log.warning("%s: skipping a damaged line (an interrupted write)", self.path)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def add(self, key: str, entry: dict[str, Any]) -> None:
        entry = {"key": key, **entry}
        self.entries[key] = entry
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
                f.flush()


def prompt_key(model: str, messages: list[Any], settings: dict[str, Any]) -> str:
    """A stable key for one generation: the model, the rendered messages and the decoding settings."""
    msgs = [[getattr(m, "type", "user"), getattr(m, "content", str(m))] for m in messages]
    blob = json.dumps({"model": model, "messages": msgs, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class CachedChat:
    """Stands in for a chat model in a chain: ``stream`` replays cached generations or records new ones.

    Args:
        chat: the real chat model (any local llmapp chat model).
        cache: a :class:`GenerationCache` (or a path for one).
        model: the model's name in the key (its spec string).
    """

    def __init__(self, chat: Any, cache: GenerationCache | str | Path | None, model: str) -> None:
        self.chat, self.model = chat, model
        self.cache = cache if isinstance(cache, GenerationCache) else GenerationCache(cache)
        self.seconds = 0.0  # time until the last piece the consumer read
        self.hit = False  # whether the last stream was replayed
        self.generated = 0.0  # seconds the last stream spent generating for real (0 on a replay)

    def __getattr__(self, name: str) -> Any:  # context_window, get_num_tokens_from_messages, ...
        return getattr(self.chat, name)

    @property
    def max_tokens(self) -> Any:
        return self.chat.max_tokens

    def settings(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The decoding settings a call runs with: the model's, overridden by the call's."""
        cfg = self.chat.generation_config(kwargs.get("stop"), **{k: v for k, v in kwargs.items() if k != "stop"})
        from dataclasses import asdict

        return asdict(cfg)

    def stream(self, messages: list[Any], config: Any = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        key = prompt_key(self.model, messages, self.settings(kwargs))
        entry = self.cache.get(key)
        self.hit, self.generated, self.seconds = entry is not None, 0.0, 0.0
        if entry is not None:
            for text, at in entry["pieces"]:
                self.seconds = at  # the consumer has waited this long by the time it reads this piece
                yield AIMessageChunk(content=text)
            if not entry.get("partial"):
                self.seconds = entry["seconds"]  # read to the end: the whole generation's time
                return
        # Generate live; a consumer that stops early leaves a partial entry, finished by a later one.
        skip = len(entry["pieces"]) if entry is not None else 0
        t0, pieces, done = time.perf_counter(), [], False
        try:
            for chunk in self.chat.stream(messages, config, **kwargs):
                if not chunk.content:
                    continue
                pieces.append([chunk.content, round(time.perf_counter() - t0, 4)])
                self.seconds = self.generated = pieces[-1][1]
                if len(pieces) > skip:  # greedy: the same text again up to where the partial one ended
                    yield AIMessageChunk(content=chunk.content)
            done = True
        finally:
            seconds = round(time.perf_counter() - t0, 4)
            self.generated = seconds
            if done:
                self.seconds = seconds
            if done or len(pieces) > skip:
                self.cache.add(key, {"pieces": pieces, "seconds": seconds, "partial": not done})

    def invoke(self, messages: list[Any], config: Any = None, **kwargs: Any) -> Any:
        text = "".join(c.content for c in self.stream(messages, config, **kwargs))
        return AIMessageChunk(content=text)
