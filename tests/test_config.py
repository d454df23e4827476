"""Typed ``key=value`` overrides for dataclass configs."""

import pytest

from llmapp.core.config import GenerationConfig, RAGConfig, apply_overrides


def test_overrides_are_typed():
    cfg = apply_overrides(GenerationConfig(), ["temperature=0.7", "max_tokens=32", "seed=1", "truncate=yes"])
    assert (cfg.temperature, cfg.max_tokens, cfg.seed, cfg.truncate) == (0.7, 32, 1, True)
    assert apply_overrides(cfg, ["seed=none"]).seed is None
    assert apply_overrides(RAGConfig(), {"retrieval": "bm25"}).retrieval == "bm25"


def test_unknown_key_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown setting 'temprature'; valid settings: max_tokens, temperature"):
        apply_overrides(GenerationConfig(), ["temprature=1"])


def test_bad_value_names_the_type():
    with pytest.raises(ValueError, match="bad value for max_tokens: 'lots' is not a int"):
        apply_overrides(GenerationConfig(), ["max_tokens=lots"])
