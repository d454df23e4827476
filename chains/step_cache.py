"""A resumable cache of a long chain's intermediate model calls (the map and refine steps of a summary).

One JSON file per run, under ``$LLMAPP_HOME/summaries/``, named by a hash of the text, the model and
every setting that changes an output; inside, each finished step's reply keyed by a hash of the exact
messages sent. The file is rewritten atomically after every step, so an interrupted 100 KB summary
(Ctrl-C, a crash, a closed laptop) continues where it stopped: finished steps are read back, not
recomputed. A damaged or foreign file is ignored (and replaced), never trusted. JSON only, no pickle.

    from chains.step_cache import StepCache, cache_key
    cache = StepCache.open(cache_key(text, chat_model, settings))
    reply = cache.get(messages) or cache.put(messages, chat_model.invoke(messages).content)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from llmapp.core.files import write_text

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the file's shape changes; other versions are ignored


def _sha(blob: Any) -> str:
    data = blob if isinstance(blob, str) else json.dumps(blob, sort_keys=True, default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def model_identity(chat_model: Any) -> dict[str, Any]:
    """What makes one chat model's replies differ from another's: class, name and decoding settings."""
    ident: dict[str, Any] = {"class": type(chat_model).__name__,
                             "model": str(getattr(chat_model, "model", getattr(chat_model, "model_name", "")))}
    config = getattr(chat_model, "generation_config", None)
    if callable(config):
        ident["generation"] = dataclasses.asdict(config())
    else:
        ident["params"] = getattr(chat_model, "_identifying_params", {})
    return ident


def cache_key(text: str, chat_model: Any, settings: Any) -> str:
    """The run's key: the text's hash, the model's identity and the chain's settings."""
    return _sha({"text": _sha(text), "model": model_identity(chat_model), "settings": settings})[:32]


class StepCache:
    """Finished steps of one run, persisted after each step.

    Args:
        path: the JSON file; None keeps steps in memory only (no resuming).
        key: the run's key, stored in the file and checked on load.
    """

    def __init__(self, path: Path | None, key: str) -> None:
        self.path, self.key = path, key
        self.steps: dict[str, str] = {}
        self.hits = 0
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("version") == CACHE_VERSION and data.get("key") == key:
                    self.steps = {str(k): str(v) for k, v in data.get("steps", {}).items()}
            except (OSError, ValueError, AttributeError):
                log.warning("ignoring the damaged summary cache %s; it will be rewritten", path)

    @classmethod
    def open(cls, key: str, folder: str | Path | None = None) -> StepCache:
        """The cache file for ``key`` in ``folder`` (default ``$LLMAPP_HOME/summaries``)."""
        if folder is None:
            from llmapp.core.paths import home

            folder = home() / "summaries"
        return cls(Path(folder).expanduser() / f"{key}.json", key)

    @staticmethod
    def step_key(messages: Any) -> str:
        """A step's key: the hash of the exact messages sent (role and content of each)."""
        return _sha([(getattr(m, "type", ""), getattr(m, "content", m)) for m in messages])

    def get(self, messages: Any) -> str | None:
        """The cached reply to ``messages``, or None."""
        reply = self.steps.get(self.step_key(messages))
        if reply is not None:
            self.hits += 1
        return reply

    def put(self, messages: Any, reply: str) -> str:
        """Record a finished step (and persist the file atomically); returns ``reply``."""
        self.steps[self.step_key(messages)] = reply
        if self.path is not None:
            write_text(self.path, json.dumps({"version": CACHE_VERSION, "key": self.key, "steps": self.steps}))
        return reply


__all__ = ["CACHE_VERSION", "StepCache", "cache_key", "model_identity"]
