"""The model registry: names -> weights, and loaders that return ready-to-use LangChain objects.

A registry name (``smollm2-135m-instruct``, ``minilm-l6``, ``minilm-l6-mlm``), a local Hugging Face
directory, a ``.gguf`` file or a hub id all work wherever llmapp takes a model. Loaded weights are
kept in an in-process LRU, so every chain, the REPL and the server share one copy.

    from llmapp import load_chat_model, load_embeddings
    chat = load_chat_model()                     # SmolLM2-135M-Instruct, greedy
    print(chat.invoke("Name a primary colour.").content)
    vectors = load_embeddings().embed_documents(["a", "b"])

    llmapp models                                # the table, from the shell
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmapp import bundled
from llmapp.errors import LLMAppError, ModelNotFound

if TYPE_CHECKING:
    from llmapp.lc import ChatLocal, LocalEmbeddings, LocalLLM
    from llmapp.masked import MaskedLM

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: what the model is and where its weights come from."""

    name: str
    kind: str  # "chat" (causal LM with a chat template), "embeddings" or "masked"
    description: str
    package: str  # the pip requirement that ships the weights
    params: int  # parameter count, shown by `llmapp models` without loading the weights
    context_window: int  # tokens the model attends over
    source: Callable[[], Path]  # where the weights come from (raises ModelNotFound if not installed)
    locate: Callable[[], Path] | None = None  # the loadable folder, if it differs from `source` (e.g. a cache)


MLM_HEAD = Path(__file__).parent / "weights" / "minilm_l6_mlm_head.safetensors"


def _mlm_source() -> Path:
    bundled.minilm_dir()  # the encoder comes from the MiniLM package
    if not MLM_HEAD.exists():
        raise ModelNotFound(f"the MLM head {MLM_HEAD.name} is missing; rebuild it with: python -m llmapp.mlm")
    return MLM_HEAD


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec("smollm2-135m-instruct", "chat", "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to fp32 once)",
                  bundled.SMOLLM2_PACKAGE, 134_515_008, 8192, bundled.smollm2_gguf, bundled.smollm2_hf_dir),
        ModelSpec("minilm-l6", "embeddings", "all-MiniLM-L6-v2 sentence embeddings (384-d, normalized)",
                  bundled.MINILM_PACKAGE, 22_713_216, 256, bundled.minilm_dir),
        ModelSpec("minilm-l6-mlm", "masked", "MiniLM-L6 encoder with an MLM head trained by llmapp (fill-mask)",
                  bundled.MINILM_PACKAGE, 22_713_216 + 30_522 + 384 * 384 + 2 * 384 + 384, 512, _mlm_source),
    ]
}

DEFAULT_CHAT = "smollm2-135m-instruct"
DEFAULT_EMBEDDINGS = "minilm-l6"
DEFAULT_MASKED = "minilm-l6-mlm"


def resolve(name_or_path: str | Path, kind: str | None = None) -> str:
    """Turn a registry name, local directory, ``.gguf`` file or hub id into something loadable.

    Returns:
        A local directory path, or the hub id unchanged.

    Raises:
        ModelNotFound: an unknown name (the message lists valid names) or a registry model that is
            not installed (the message gives the pip command).
    """
    name = str(name_or_path)
    spec = REGISTRY.get(name)
    if spec is not None:
        if kind and spec.kind != kind:
            valid = ", ".join(n for n, s in REGISTRY.items() if s.kind == kind)
            raise ModelNotFound(f"{name!r} is a model of kind {spec.kind!r}, not {kind!r}; use one of: {valid}")
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
    if name.count("/") == 1 and not name.startswith((".", "/", "~")) and not path.exists():
        return name  # a hub id; transformers finds it in the local HF cache (or the hub, when online)
    valid = ", ".join(n for n, s in REGISTRY.items() if not kind or s.kind == kind)
    raise ModelNotFound(f"unknown model {name!r}; use one of: {valid}, or a local HF directory, .gguf file or hub id")


def default_device() -> str:
    """``cuda`` or ``mps`` when present, else ``cpu``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:
    """``auto`` is fp32 on CPU (bf16 decodes slower on these CPUs) and bf16/fp16 on GPUs."""
    import torch

    if dtype == "auto":
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise LLMAppError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None


@dataclass
class LoadedLM:
    """A causal LM and its tokenizer, loaded once and shared."""

    name: str
    path: str
    model: Any
    tokenizer: Any
    device: str
    context_window: int
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def pad_token_id(self) -> int | None:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def load_causal_lm(name: str = DEFAULT_CHAT, device: str | None = None, dtype: str = "auto") -> LoadedLM:
    """Load (or fetch from the in-process cache) a causal LM and its tokenizer.

    Args:
        name: registry name, local HF directory, ``.gguf`` file or hub id.
        device: ``cpu``, ``cuda``, ``mps``; default: the best available.
        dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
    """
    device = device or default_device()
    return _load_causal_cached(resolve(name, kind=None if name not in REGISTRY else "chat"), str(name), device, dtype)


@functools.lru_cache(maxsize=4)
def _load_causal_cached(path: str, name: str, device: str, dtype: str) -> LoadedLM:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_loading()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype, device))
    except OSError as exc:
        raise ModelNotFound(f"could not load {name!r}: {str(exc).splitlines()[0]}; check the path or hub id "
                            f"(offline: download it once, or use a registry name: {', '.join(REGISTRY)})") from None
    model.to(device).eval()
    return LoadedLM(name=name, path=path, model=model, tokenizer=tokenizer, device=device,
                    context_window=context_window_of(model.config, tokenizer))


def _quiet_loading() -> None:
    """No "Loading weights" bar for loads that take a second; the GGUF conversion keeps its own bar."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def context_window_of(config: Any, tokenizer: Any = None) -> int:
    """The context window from a model config, falling back to the tokenizer's limit."""
    for attr in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", 0) or 0
    return limit if 0 < limit < 1_000_000 else 2048


@functools.lru_cache(maxsize=4)
def load_sentence_transformer(name: str = DEFAULT_EMBEDDINGS, device: str | None = None) -> Any:
    """A cached ``SentenceTransformer`` for a registry name, local directory or hub id."""
    from sentence_transformers import SentenceTransformer

    _quiet_loading()
    path = resolve(name, kind=None if name not in REGISTRY else "embeddings")
    try:
        return SentenceTransformer(path, device=device or default_device())
    except OSError as exc:
        raise ModelNotFound(f"could not load embeddings {name!r}: {str(exc).splitlines()[0]}") from None


def load_chat_model(name: str = DEFAULT_CHAT, **settings: Any) -> ChatLocal:
    """A LangChain chat model over a local causal LM.

    Args:
        name: registry name, local HF directory, ``.gguf`` file or hub id.
        **settings: ``max_tokens``, ``temperature``, ``top_p``, ``top_k``, ``seed``, ``stop``,
            ``repetition_penalty``, ``truncate``, ``device``, ``dtype``.
    """
    from llmapp.lc import ChatLocal

    return ChatLocal(model=name, **settings)


def load_llm(name: str = DEFAULT_CHAT, **settings: Any) -> LocalLLM:
    """A LangChain text-completion LLM (no chat template) over a local causal LM."""
    from llmapp.lc import LocalLLM

    return LocalLLM(model=name, **settings)


def load_embeddings(name: str = DEFAULT_EMBEDDINGS, **settings: Any) -> LocalEmbeddings:
    """LangChain embeddings: batched, L2-normalized sentence-transformers vectors."""
    from llmapp.lc import LocalEmbeddings

    return LocalEmbeddings(model=name, **settings)


def load_masked_lm(name: str = DEFAULT_MASKED, device: str | None = None) -> MaskedLM:
    """A masked LM with ``fill_mask(text) -> [{token, score, sequence}, ...]``."""
    from llmapp.masked import load_masked

    return load_masked(name, device=device or default_device())
