"""The model registry: names -> weights, the backend that runs them, and where the weights live.

A registry name (``smollm2-135m-instruct``, ``minilm-l6``, ``minilm-l6-mlm``), a local Hugging Face
directory, a ``.gguf`` file or a hub id already in the local Hugging Face cache works wherever llmapp
takes a model. Nothing is downloaded: an id that is not cached is refused at once.

This module knows weights, not LangChain: the chat backends (``llmapp.backends``) and the embeddings
and masked-LM loaders (``llmapp.models.embeddings``, ``llmapp.models.masked``) build on it.

    from llmapp.models.registry import REGISTRY, resolve, gguf_file
    resolve("smollm2-135m-instruct")       # a loadable HF folder (the dequantized GGUF cache)
    gguf_file("smollm2-135m-instruct")     # the GGUF the llama.cpp backend reads

    llmapp models                          # the table, from the shell
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmapp.core.errors import ModelNotFound
from llmapp.models import bundled

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: what the model is, where its weights come from and what runs it."""

    name: str
    kind: str  # "chat" (causal LM with a chat template), "embeddings" or "masked"
    description: str
    package: str  # the pip requirement that ships the weights
    params: int  # parameter count, shown by `llmapp models` without loading the weights
    context_window: int  # tokens the model attends over
    source: Callable[[], Path]  # the shipped weights (raises ModelNotFound if not installed)
    locate: Callable[[], Path] | None = None  # the HF-loadable folder, if it differs from `source` (e.g. a cache)
    backend: str = "hf"  # the chat backend that runs it by default (llmapp.backends.BACKENDS)


def _mlm_source() -> Path:
    bundled.minilm_dir()  # the encoder comes from the MiniLM package
    if not bundled.MLM_HEAD.exists():
        raise ModelNotFound(f"the MLM head {bundled.MLM_HEAD.name} is missing; rebuild it with: python -m llmapp.train.mlm")
    return bundled.MLM_HEAD


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec("smollm2-135m-instruct", "chat", "SmolLM2-135M-Instruct (Q4_1 GGUF; llama.cpp, or dequantized for HF)",
                  bundled.SMOLLM2_PACKAGE, 134_515_008, 8192, bundled.smollm2_gguf, bundled.smollm2_hf_dir,
                  backend="llamacpp"),
        ModelSpec("minilm-l6", "embeddings", "all-MiniLM-L6-v2 sentence embeddings (384-d, normalized)",
                  bundled.MINILM_PACKAGE, 22_713_216, 256, bundled.minilm_dir),
        ModelSpec("minilm-l6-mlm", "masked", "MiniLM-L6 encoder with an MLM head trained by llmapp (fill-mask)",
                  bundled.MINILM_PACKAGE, 22_713_216 + 30_522 + 384 * 384 + 2 * 384 + 384, 512, _mlm_source),
    ]
}

DEFAULT_CHAT = "smollm2-135m-instruct"
DEFAULT_EMBEDDINGS = "minilm-l6"
DEFAULT_MASKED = "minilm-l6-mlm"


def valid_names(kind: str | None = None) -> str:
    """The registry names of ``kind`` (all when None), comma-separated, for error messages."""
    return ", ".join(n for n, s in REGISTRY.items() if not kind or s.kind == kind)


def resolve(name_or_path: str | Path, kind: str | None = None) -> str:
    """Turn a registry name, local directory, ``.gguf`` file or cached hub id into a loadable folder.

    Returns:
        A local directory path, or a hub id that is in the local Hugging Face cache.

    Raises:
        ModelNotFound: an unknown name (the message lists valid names), a registry model that is
            not installed (the message gives the pip command), or a hub id that is not cached.
    """
    name = str(name_or_path)
    spec = REGISTRY.get(name)
    if spec is not None:
        if kind and spec.kind != kind:
            raise ModelNotFound(f"{name!r} is a model of kind {spec.kind!r}, not {kind!r}; use one of: {valid_names(kind)}")
        try:
            return str((spec.locate or spec.source)())
        except ModelNotFound as exc:
            raise ModelNotFound(f"{name}: {exc}") from None
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(bundled.gguf_to_hf_dir(path))
    if path.is_dir():
        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise ModelNotFound(f"{path} is not a Hugging Face model directory (no config.json); point at the folder that has it")
        return str(path)
    if _looks_like_hub_id(name) and not path.exists():
        if hub_cached(name):
            return name
        raise ModelNotFound(f"{name!r} is not a local folder and not in the local Hugging Face cache, and llmapp never "
                            f"downloads; copy the model to a folder and pass its path, or use one of: {valid_names(kind)}")
    raise ModelNotFound(f"unknown model {name!r}; use one of: {valid_names(kind)}, or a local HF directory, "
                        ".gguf file or cached hub id")


def gguf_file(name_or_path: str | Path) -> Path:
    """The GGUF file behind a registry name or a ``.gguf`` path (what the llama.cpp backend reads).

    Raises:
        ModelNotFound: the model has no GGUF (an HF folder or hub id: use the ``hf`` backend).
    """
    name = str(name_or_path)
    spec = REGISTRY.get(name)
    if spec is not None:
        source = spec.source()
        if source.suffix == ".gguf":
            return source
    else:
        path = Path(name).expanduser()
        if path.suffix == ".gguf":
            if not path.is_file():
                raise ModelNotFound(f"GGUF file not found: {path}; check the path")
            return path
    raise ModelNotFound(f"{name!r} has no .gguf weights, which the llamacpp backend needs; use --backend hf, "
                        "or pass a .gguf file")


def _looks_like_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and all(name.split("/"))


def hub_cached(repo_id: str) -> bool:
    """True if the local Hugging Face cache holds a snapshot of ``repo_id`` with a ``config.json``."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers always brings it
        return False
    found = try_to_load_from_cache(repo_id, "config.json")
    if not isinstance(found, str):
        found = try_to_load_from_cache(repo_id, "modules.json")
    return isinstance(found, str)
