"""Typed configs for every part of llmapp, and the one place decoding settings are defined.

Each field carries a comment (or ``why`` text) saying why it has its default. Configs are plain
dataclasses so they can be logged and saved (``dataclasses.asdict``) with every artifact, and built
from ``--set k=v`` pairs by :func:`apply_overrides`.

:class:`GenerationConfig` is the single source of decoding settings: it validates itself, and the
chat models' fields, the REPL's ``/set``, the server's request mapping and the CLI options are all
derived from its fields. Adding a setting (say ``min_p``) is one :func:`setting` line here, naming
the parameter each engine calls it; the backends translate every setting generically.

    >>> from llmapp.core.config import GenerationConfig
    >>> GenerationConfig(max_tokens=64, temperature=0.0)
    >>> GenerationConfig(temperature=float("nan"))   # ConfigError: temperature=nan: must be a number ...
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from llmapp.core.errors import ConfigError

SEED_MAX = 2**32 - 2  # llama.cpp seeds are uint32 and 0xFFFFFFFF means "random"; torch takes any of these
MAX_STOPS = 16  # stop strings per request; each costs a scan of the tail on every token


def setting(default: Any = dataclasses.MISSING, *, why: str, check: tuple | None = None,
            engines: dict[str, str] | None = None, sampling: bool = False,
            default_factory: Any = dataclasses.MISSING) -> Any:
    """A decoding setting: its default, why it has it, its valid range and its name in each engine.

    Args:
        why: one line for ``--help``, ``/set`` help and the docs.
        check: ``("range", lo, hi)`` (inclusive; ``None`` = unbounded), ``("open_low", lo, hi)``
            (``lo`` excluded) or ``("stops",)``.
        engines: the parameter each engine calls it (``hf`` for transformers' ``generate``,
            ``llamacpp`` for llama.cpp's completion request, ``openai`` for the OpenAI wire format).
        sampling: it shapes sampling only, so greedy decoding (temperature 0) leaves it out.
    """
    meta = {"why": why, "check": check, "engines": engines or {}, "sampling": sampling}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class GenerationConfig:
    """How a chat model decodes. Greedy by default: reproducible, and best for small models."""

    max_tokens: int = setting(
        256, why="new tokens at most; a chat reply rarely needs more, and the window is shared with history",
        check=("range", 1, 1_000_000), engines={"hf": "max_new_tokens", "llamacpp": "n_predict", "openai": "max_tokens"})
    temperature: float = setting(
        0.0, why="0 = greedy (reproducible); above 0 samples (0.7 is a good conversational value)",
        check=("range", 0.0, 5.0), engines={"hf": "temperature", "llamacpp": "temperature", "openai": "temperature"})
    top_p: float = setting(
        1.0, why="nucleus sampling mass; 1.0 keeps the whole distribution",
        check=("open_low", 0.0, 1.0), engines={"hf": "top_p", "llamacpp": "top_p", "openai": "top_p"}, sampling=True)
    top_k: int = setting(
        0, why="sample from the k likeliest tokens; 0 = off (top-p alone is usually enough)",
        check=("range", 0, 1_000_000), engines={"hf": "top_k", "llamacpp": "top_k", "openai": "top_k"}, sampling=True)
    repetition_penalty: float = setting(
        1.0, why="above 1 discourages the loops small models fall into; 1.0 = the raw model",
        check=("open_low", 0.0, 10.0),
        engines={"hf": "repetition_penalty", "llamacpp": "repeat_penalty", "openai": "repetition_penalty"})
    seed: int | None = setting(
        None, why="the same seed gives the same sampled text (none = a fresh draw each time)",
        check=("range", 0, SEED_MAX), engines={"llamacpp": "seed", "openai": "seed"}, sampling=True)
    stop: list[str] = setting(
        default_factory=list, why="extra stop strings, on top of the model's end-of-turn token",
        check=("stops",), engines={"openai": "stop"})
    stop_loops: bool = setting(
        True, why="end a reply where it starts repeating one of its own sentences (small models loop); "
                  "the text before is unchanged", check=None)
    truncate: bool = setting(
        False, why="drop the oldest prompt tokens instead of refusing a prompt longer than the window",
        check=None)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, _checked(f, getattr(self, f.name)))

    def engine_kwargs(self, engine: str) -> dict[str, Any]:
        """Every setting that ``engine`` takes, under that engine's own parameter names (greedy
        decoding leaves the sampling-only ones out)."""
        greedy = self.temperature == 0
        return {f.metadata["engines"][engine]: getattr(self, f.name) for f in dataclasses.fields(self)
                if engine in f.metadata["engines"] and getattr(self, f.name) is not None
                and not (greedy and f.metadata["sampling"])}

    def replace(self, **changes: Any) -> GenerationConfig:
        """A validated copy with ``changes`` applied (unknown names raise :class:`ConfigError`)."""
        unknown = sorted(set(changes) - set(GENERATION_FIELDS))
        if unknown:
            raise ConfigError(f"unknown generation setting {unknown[0]!r}; valid settings: {', '.join(GENERATION_FIELDS)}")
        return dataclasses.replace(self, **changes)


GENERATION_FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(GenerationConfig)}


def _checked(f: dataclasses.Field, value: Any) -> Any:
    """``value`` for setting ``f``, type-checked and range-checked; raises :class:`ConfigError`."""
    name, check = f.name, f.metadata.get("check")
    hint = typing.get_type_hints(GenerationConfig)[name]
    if value is None and type(None) in typing.get_args(hint):
        return None
    if check and check[0] == "stops":
        return _checked_stops(value)
    base = _base_type(hint)
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}={value!r}: must be true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (base is int and not float(value).is_integer()):
        raise ConfigError(f"{name}={value!r}: must be {'a whole number' if base is int else 'a number'}")
    value = base(value) if math.isfinite(value) else value
    if check:
        kind, lo, hi = check
        low_ok = value > lo if kind == "open_low" else value >= lo
        if not (math.isfinite(value) and low_ok and value <= hi):
            bound = f"above {lo}" if kind == "open_low" else f"at least {lo}"
            raise ConfigError(f"{name}={value!r}: must be {bound} and at most {hi}")
    return value


def _checked_stops(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) for s in value):
        raise ConfigError(f"stop={value!r}: must be a list of strings")
    stops = [s for s in value if s]
    if len(stops) > MAX_STOPS:
        raise ConfigError(f"stop: {len(stops)} stop strings is over the limit of {MAX_STOPS}; keep the ones that matter")
    if any(len(s) > 200 for s in stops):
        raise ConfigError("stop: a stop string is over 200 characters; use a shorter marker")
    return list(stops)


def _base_type(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and args else hint


@dataclass
class RAGConfig:
    """How retrieval-augmented answering chunks, retrieves, prompts, abstains and cites.

    The defaults won the ablation on the dev split of ``eval/data/rag-qa.jsonl`` (``docs/chains.md``,
    "Why these defaults"); ``llmapp ask``, the REPL's ``/rag``, the server's ``rag:`` models and
    ``rag_chain()`` all read them from here.
    """

    k: int = 4  # chunks handed to the model; the 135M model reads 4 chunks of ~200 tokens well
    retrieval: str = "hybrid"  # "vector", "bm25" or "hybrid" (reciprocal-rank fusion of both)
    mmr: bool = False  # maximal marginal relevance: trades a little relevance for less redundancy
    mmr_lambda: float = 0.5  # 1.0 = pure relevance, 0.0 = pure diversity
    fetch_k: int = 20  # candidates per retriever before fusion / MMR
    context: str = "numbered"  # "numbered": "[n] chunk", so the model can cite (it answered better so on dev);
    #                           "plain": chunks joined by blank lines; attribution adds citations either way
    abstain: str = "fusion"  # relevance signal for abstention (chains.relevance): cosine, coverage, fusion, none
    min_score: float | None = None  # threshold on that signal; None: the one calibrated for the store's embeddings
    chunker: str = "markdown"  # chains.chunking: "markdown" (headings, paragraphs, sentences), "recursive", "tokens"
    chunk_tokens: int = 200  # chunk size in embedding-model tokens (MiniLM truncates at 256)
    chunk_overlap: int = 30  # tokens shared by neighbouring chunks so sentences are not cut blind
    attribute: bool = True  # cite an uncited answer sentence by the source that supports it: small models forget [n]
    attribute_min_score: float = 0.3  # support (overlap and cosine) a sentence needs for a source to be cited
    cite_min_new: float = 0.8  # share of a sentence's words not in the question that a cited source must hold:
    #                            a sentence that only restates the question is cited by nothing
    recite: bool = False  # cite every sentence by attribution, keeping the model's own number only where it supports
    ground: bool = True  # check each answer sentence against the sources; quote a source instead of a made-up claim
    min_support: float = 0.5  # share of a sentence's content words its best source must hold (chains.grounding)
    quote: str = "always"  # "always": end each answer with the source sentence that best answers the question;
    #                         "fallback": quote a source only in place of an unsupported answer
    max_tokens: int | None = 96  # answer budget (caps the chat model's max_tokens); answers are a sentence or two

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= 100:
            raise ConfigError(f"k={self.k!r}: must be a whole number from 1 to 100 (chunks handed to the model)")
        if (not 1 <= self.fetch_k <= 10_000 or not 16 <= self.chunk_tokens <= 8192
                or not 0 <= self.chunk_overlap < self.chunk_tokens):
            raise ConfigError(f"fetch_k={self.fetch_k}, chunk_tokens={self.chunk_tokens}, chunk_overlap={self.chunk_overlap}: "
                              "need 1 <= fetch_k <= 10000, 16 <= chunk_tokens <= 8192 and 0 <= chunk_overlap < chunk_tokens")
        if self.max_tokens is not None and (isinstance(self.max_tokens, bool) or not 1 <= self.max_tokens <= 100_000):
            raise ConfigError(f"max_tokens={self.max_tokens!r}: must be a whole number from 1 (or none: the model's own)")
        for name, valid in (("context", ("plain", "numbered")), ("abstain", ("cosine", "coverage", "fusion", "none")),
                            ("quote", ("fallback", "always"))):
            if getattr(self, name) not in valid:
                raise ConfigError(f"{name}={getattr(self, name)!r}: use one of: {', '.join(valid)}")
        for name in ("min_score", "attribute_min_score", "mmr_lambda", "min_support", "cite_min_new"):
            value = getattr(self, name)
            if value is None and name == "min_score":
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value) and -1 <= value <= 1):
                raise ConfigError(f"{name}={value!r}: must be a number from -1 to 1")


def apply_overrides(config: typing.Any, pairs: list[str] | dict[str, typing.Any]) -> typing.Any:
    """Return a copy of ``config`` with ``key=value`` overrides applied, typed by the field's annotation.

    Raises:
        ConfigError: an unknown key (listing the valid ones), a value of the wrong type, or one the
            config's own validation refuses. (``ConfigError`` is a ``ValueError`` too.)
    """
    items = dict(p.split("=", 1) if "=" in p else (p, "") for p in pairs) if isinstance(pairs, list) else pairs
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    changes = {}
    for key, raw in items.items():
        if key not in names:
            raise ConfigError(f"unknown setting {key!r}; valid settings: {', '.join(names)}")
        changes[key] = _coerce(key, raw, hints[key])
    return dataclasses.replace(config, **changes)


def _coerce(key: str, raw: typing.Any, hint: typing.Any) -> typing.Any:
    if not isinstance(raw, str):
        return raw
    base = _base_type(hint)
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
        raise ConfigError(f"bad value for {key}: {raw!r} is not a {getattr(base, '__name__', base)}") from None
    return raw
