"""Typed configs for every part of llmapp.

Each field carries a comment saying *why* it has its default. Configs are plain dataclasses so they
can be logged and saved (``dataclasses.asdict``) with every artifact, and built from ``--set k=v``
pairs by :func:`apply_overrides`.

    >>> from llmapp.config import GenerationConfig
    >>> GenerationConfig(max_tokens=64, temperature=0.0)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field


@dataclass
class GenerationConfig:
    """How the chat model decodes. Greedy by default: reproducible, and best for small models."""

    max_tokens: int = 256  # new tokens; a chat reply rarely needs more, and the window is shared with history
    temperature: float = 0.0  # 0 = greedy; >0 samples (0.7 is a good conversational value)
    top_p: float = 1.0  # nucleus sampling mass; 1.0 keeps the whole distribution
    top_k: int = 0  # 0 = off; top-p alone is usually enough
    repetition_penalty: float = 1.0  # >1 discourages loops that small models fall into; 1.0 = raw model
    seed: int | None = None  # the same seed gives the same sampled text
    stop: list[str] = field(default_factory=list)  # extra stop strings, on top of the model's EOS
    truncate: bool = False  # True: drop the oldest prompt tokens instead of refusing an over-long prompt


@dataclass
class RAGConfig:
    """How retrieval-augmented answering retrieves and cites."""

    k: int = 4  # chunks handed to the model; the 135M model reads 4 chunks of ~200 tokens well
    retrieval: str = "hybrid"  # "vector", "bm25" or "hybrid" (reciprocal-rank fusion of both)
    mmr: bool = False  # maximal marginal relevance: trades a little relevance for less redundancy
    mmr_lambda: float = 0.5  # 1.0 = pure relevance, 0.0 = pure diversity
    fetch_k: int = 20  # candidates per retriever before fusion / MMR
    min_score: float = 0.25  # cosine similarity below which a chunk counts as irrelevant
    chunk_tokens: int = 200  # chunk size in embedding-model tokens (MiniLM truncates at 256)
    chunk_overlap: int = 30  # tokens shared by neighbouring chunks so sentences are not cut blind
    attribute: bool = True  # cite an uncited answer sentence by its most similar source: small models forget [n]
    attribute_min_score: float = 0.3  # cosine a sentence needs with a source to be attributed to it


def apply_overrides(config: typing.Any, pairs: list[str] | dict[str, typing.Any]) -> typing.Any:
    """Return a copy of ``config`` with ``key=value`` overrides applied, typed by the field's annotation.

    Raises:
        ValueError: for an unknown key (listing the valid ones) or a value of the wrong type.
    """
    items = dict(p.split("=", 1) if "=" in p else (p, "") for p in pairs) if isinstance(pairs, list) else pairs
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    changes = {}
    for key, raw in items.items():
        if key not in names:
            raise ValueError(f"unknown setting {key!r}; valid settings: {', '.join(names)}")
        changes[key] = _coerce(key, raw, hints[key])
    return dataclasses.replace(config, **changes)


def _coerce(key: str, raw: typing.Any, hint: typing.Any) -> typing.Any:
    if not isinstance(raw, str):
        return raw
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and args else hint
    if raw.lower() in ("none", "null") and type(None) in typing.get_args(hint):
        return None
    try:
        if base is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if base in (int, float, str):
            return base(raw)
        if typing.get_origin(base) is list:
            return [s for s in raw.split(",") if s]
    except ValueError:
        raise ValueError(f"bad value for {key}: {raw!r} is not a {getattr(base, '__name__', base)}") from None
    return raw
