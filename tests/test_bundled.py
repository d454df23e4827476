"""The GGUF cache: written atomically, detected when damaged, rebuilt. Each test dequantizes once (~20 s)."""

from __future__ import annotations

import json
import shutil

import pytest

from llmapp.core import paths
from llmapp.models import bundled


@pytest.fixture
def cache_root(tmp_path):
    return tmp_path / "models"


def _target(cache_root):
    gguf = bundled.smollm2_gguf()
    return gguf, cache_root / f"{gguf.stem}-{bundled._fingerprint(gguf)}"


@pytest.mark.slow
def test_interrupted_conversion_leaves_nothing_behind(cache_root, monkeypatch):
    import safetensors.torch

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_model", disk_full)
    gguf, target = _target(cache_root)
    with pytest.raises(OSError, match="No space left"):
        bundled.gguf_to_hf_dir(gguf, cache_root=cache_root)
    assert not target.exists()
    assert [p.name for p in cache_root.iterdir() if p.is_dir()] == []


@pytest.mark.slow
def test_corrupt_cache_is_rebuilt(cache_root):
    gguf, target = _target(cache_root)
    good = bundled.smollm2_hf_dir()
    # A cache whose manifest is consistent but whose weights file is garbage (e.g. a bad disk block).
    target.mkdir(parents=True)
    for p in good.iterdir():
        if p.name not in ("model.safetensors", "llmapp-cache.json"):
            shutil.copy(p, target / p.name)
    (target / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    files = {p.name: p.stat().st_size for p in target.iterdir()}
    (target / "llmapp-cache.json").write_text(json.dumps({"format": bundled.CACHE_FORMAT, "files": files}))
    assert not bundled._cache_ok(target)

    rebuilt = bundled.gguf_to_hf_dir(gguf, cache_root=cache_root)
    assert rebuilt == target and bundled._cache_ok(target)
    assert (target / "model.safetensors").stat().st_size == (good / "model.safetensors").stat().st_size


def test_cache_check_rejects_truncated_weights(tmp_path):
    good = bundled.smollm2_hf_dir()
    assert bundled._cache_ok(good)
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in good.iterdir():
        if p.name != "model.safetensors":
            shutil.copy(p, copy / p.name)
    with (good / "model.safetensors").open("rb") as src, (copy / "model.safetensors").open("wb") as dst:
        dst.write(src.read(1 << 20))  # a write cut short after 1 MiB
    assert not bundled._cache_ok(copy)


def test_home_follows_env(llmapp_home):
    assert paths.home() == llmapp_home
