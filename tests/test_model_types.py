"""The registry of trainable model types: one entry makes a new type trainable, sampleable and scorable.

This is the worked example of docs/training.md ("Adding a model type"), run for real: a character
GRU is a model class plus one entry in ``MODEL_TYPES``, and then ``llmapp train``, ``llmapp sample``,
``bits_per_char`` and ``llmapp eval perplexity`` serve it with no other change.
"""

from __future__ import annotations

import json
import math

import pytest
import torch.nn as nn
from click.testing import CliRunner

from llmapp.cli import cli
from llmapp.core.errors import LLMAppError
from llmapp.train import checkpoint, registry
from llmapp.train.baselines import CharLSTM, LSTMConfig
from llmapp.train.registry import MODEL_TYPES, NetworkType


class CharGRU(CharLSTM):
    """The LSTM baseline with a GRU cell: the same interface, so the same loop, sampler and scorer."""

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__(config)
        self.lstm = nn.GRU(config.n_embd, config.n_embd, config.n_layer, batch_first=True)


def _gru() -> tuple[type, type]:
    return CharGRU, LSTMConfig


GRU = NetworkType("gru", "a character GRU", classes=_gru,
                  shape=lambda c, vocab: dict(vocab_size=vocab, block_size=c.block_size, n_layer=1, n_embd=2 * c.n_embd))


@pytest.fixture
def with_gru(monkeypatch):
    monkeypatch.setitem(MODEL_TYPES, "gru", GRU)  # the one line a contributor adds to registry.py


def test_a_registered_type_trains_samples_and_scores_through_the_same_commands(with_gru, tmp_path):
    from tests.conftest import CORPORA

    corpus = (CORPORA / "tinyshakespeare.txt").read_text()
    (tmp_path / "train.txt").write_text(corpus[:20_000])
    (tmp_path / "held_out.txt").write_text(corpus[20_000:21_000])
    run = tmp_path / "gru"
    r = CliRunner().invoke(cli, ["train", "--data", str(tmp_path / "train.txt"), "--preset", "tiny", "--quiet",
                                 "--set", "model_type=gru", "--set", "max_iters=20", "--set", "lr_decay_iters=20",
                                 "--set", "eval_interval=10", "--set", "threads=1", "--out", str(run)])
    assert r.exit_code == 0, r.output
    assert checkpoint.read_config(run)["model"] == {"vocab_size": 58, "block_size": 32, "n_layer": 1, "n_embd": 64,
                                                   "dropout": 0.0}
    loaded = checkpoint.load(run)
    assert isinstance(loaded.model, CharGRU) and loaded.type is GRU

    s = CliRunner().invoke(cli, ["sample", "--ckpt", str(run), "--prompt", "ROMEO:", "--max-tokens", "20", "--seed", "1"])
    assert s.exit_code == 0 and s.output.startswith("ROMEO:") and len(s.output.rstrip("\n")) == 26

    text = (tmp_path / "held_out.txt").read_text()
    bpc = checkpoint.bits_per_char(run, text)
    assert 0 < bpc < math.log2(58) + 0.5  # 20 steps: about a uniform guess, finite and scored per character
    out = tmp_path / "ppl"
    e = CliRunner().invoke(cli, ["eval", "perplexity", "--model", str(run), "--data", f"perplexity={tmp_path / 'held_out.txt'}",
                                 "--out", str(out)])
    assert e.exit_code == 0, e.output
    systems = json.loads((out / "results.json").read_text())["tasks"]["perplexity"]["systems"]
    assert systems[str(run)]["metrics"]["bits_per_char"] == pytest.approx(bpc, rel=1e-6)  # one scorer, two callers

    with pytest.raises(LLMAppError, match="only GPT checkpoints export to Hugging Face; gru models"):
        checkpoint.export_hf(run, tmp_path / "hf")


def test_unknown_model_type_lists_the_registered_ones(tmp_path):
    with pytest.raises(LLMAppError, match="unknown model_type 'gpt3'; use one of: gpt, lstm, markov"):
        registry.get("gpt3")
    r = CliRunner().invoke(cli, ["train", "--data", "x.txt", "--set", "model_type=gpt3", "--out", str(tmp_path / "r")])
    assert r.exit_code != 0 and "unknown model_type 'gpt3'" in str(r.exception)


def test_each_type_knows_how_it_is_made():
    assert [n for n, t in MODEL_TYPES.items() if t.fitted] == ["markov"]
    assert [n for n, t in MODEL_TYPES.items() if getattr(t, "exportable", False)] == ["gpt"]
    with pytest.raises(LLMAppError, match="fitted, not trained by gradient descent"):
        MODEL_TYPES["markov"].build(None, 65)
