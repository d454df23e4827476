"""Ablation grids for ``rag-qa``: named rows of RAG settings, each run as one system of the task.

A grid is a YAML file (or a preset name from ``eval/grids/``)::

    base: {k: 4}                     # every row starts from RAGConfig's defaults plus these
    rows:                            # explicit rows: name -> settings
      previous defaults: {preset: previous}
      plain, k=3: {context: plain, template: rag_answer, k: 3}
    axes:                            # one row per value, everything else at base ("k=2", "k=6", ...)
      k: [2, 6]
      retrieval: [vector, bm25]

A setting is any :class:`~llmapp.core.config.RAGConfig` field, ``template`` (a prompt template),
or a decoding setting of :class:`~llmapp.core.config.GenerationConfig` (``repetition_penalty``,
``stop_loops``; the answer budget is ``max_tokens``, a RAGConfig field). ``preset`` pulls in a named
set from :data:`PRESETS`. Each row becomes a system named ``MODEL · ROW``; its settings are part of
the harness cache key, so editing a grid re-runs only the rows that changed.

    from eval.rag_grid import load_grid, resolve
    rows = load_grid("ablation")                 # {"defaults": {}, "k=2": {"k": 2}, ...}
    rag_config, template, decoding = resolve(rows["k=2"])
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from llmapp.core.config import GENERATION_FIELDS, RAGConfig
from llmapp.core.errors import ConfigError, LLMAppError

GRIDS = Path(__file__).resolve().parent / "grids"
RAG_FIELDS = {f.name for f in dataclasses.fields(RAGConfig)}
DECODING = {"repetition_penalty", "stop_loops", "temperature", "top_p", "top_k"}
# Named setting sets. "previous": what `llmapp ask` did before the ablation (numbered sources and the
# one-shot citing prompt, LangChain's default recursive separators, per-chunk cosine 0.25, no
# grounding check, 128 new tokens, the raw model's decoding).
PRESETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "previous": {"context": "numbered", "template": "rag_cite_oneshot", "chunker": "recursive", "abstain": "cosine",
                 "min_score": 0.25, "ground": False, "quote": "fallback", "max_tokens": 128,
                 "repetition_penalty": 1.0, "stop_loops": False},
}


def load_grid(spec: str) -> dict[str, dict[str, Any]]:
    """The rows of a grid file or preset grid name, in order: explicit rows first, then the axes.

    Raises:
        LLMAppError: a missing file, malformed YAML, or an unknown setting (named, with the valid ones).
    """
    import yaml

    path = Path(spec).expanduser()
    if not path.is_file():
        path = GRIDS / f"{spec}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in GRIDS.glob("*.yaml")))
        raise LLMAppError(f"no grid {spec!r}: give a YAML file or one of: {known}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise LLMAppError(f"{path}: malformed YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise LLMAppError(f"{path}: a grid is a mapping with base, rows and axes")
    base = dict(data.get("base") or {})
    rows: dict[str, dict[str, Any]] = {}
    for name, settings in (data.get("rows") or {}).items():
        rows[str(name)] = {**base, **dict(settings or {})}
    for key, values in (data.get("axes") or {}).items():
        for value in values:
            rows[f"{key}={value}"] = {**base, key: value}
    for name, settings in rows.items():
        try:
            resolve(settings)
        except (ConfigError, LLMAppError) as exc:
            raise LLMAppError(f"{path}: row {name!r}: {exc}") from None
    return rows


def expand(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with any ``preset`` replaced by the preset's settings (the row's own win)."""
    settings = dict(settings)
    preset = settings.pop("preset", None)
    if preset is None:
        return settings
    if preset not in PRESETS:
        raise LLMAppError(f"unknown preset {preset!r}; use one of: {', '.join(PRESETS)}")
    return {**PRESETS[preset], **settings}


def resolved(settings: dict[str, Any]) -> dict[str, Any]:
    """Every setting a row runs with (RAGConfig's defaults filled in): what keys its cached results, so
    a change of the defaults re-runs a row that relies on them."""
    rag, template, decoding = resolve(settings)
    return {**dataclasses.asdict(rag), "template": template, **decoding}


def resolve(settings: dict[str, Any]) -> tuple[RAGConfig, str, dict[str, Any]]:
    """A row's settings as ``(RAGConfig, template name, decoding overrides for the chat model)``.

    Raises:
        LLMAppError: an unknown setting; ConfigError: a value RAGConfig refuses.
    """
    settings = expand(settings)
    unknown = sorted(set(settings) - RAG_FIELDS - DECODING - {"template"})
    if unknown:
        raise LLMAppError(f"unknown setting {unknown[0]!r}; use RAGConfig fields ({', '.join(sorted(RAG_FIELDS))}), "
                          f"template, or {', '.join(sorted(DECODING))}")
    rag = dataclasses.replace(RAGConfig(), **{k: v for k, v in settings.items() if k in RAG_FIELDS})
    decoding = {k: v for k, v in settings.items() if k in DECODING and k in GENERATION_FIELDS}
    return rag, settings.get("template", "rag_answer"), decoding
