"""The Markov and LSTM baselines: proper distributions, trained and sampled through the same CLI,
and scored in bits per character beside the GPT and SmolLM2."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from llmapp.cli import cli
from llmapp.core.errors import LLMAppError
from llmapp.train.baselines import CharLSTM, CharNGram, LSTMConfig


def test_ngram_is_a_proper_distribution_and_round_trips(tmp_path):
    text = "the cat sat on the mat. the dog sat on the log. " * 20
    lm = CharNGram(4).fit(text)
    for history in ("the c", "zzz", "", "on t"):
        assert sum(lm.prob(history, c) for c in lm.vocab) == pytest.approx(1.0, abs=1e-9)
    assert lm.bits_per_char("the cat sat on the log.") < math.log2(len(lm.vocab))
    lm.save(tmp_path / "ngram.json")
    again = CharNGram.load(tmp_path / "ngram.json")
    assert again.nll("the dog sat.") == lm.nll("the dog sat.")
    assert lm.generate("the ", 20, seed=1) == again.generate("the ", 20, seed=1)


def test_lstm_state_is_its_cache():
    torch.manual_seed(0)
    m = CharLSTM(LSTMConfig(vocab_size=20, n_embd=16, n_layer=2)).eval()
    x = torch.randint(0, 20, (1, 12))
    full = m(x)[0]
    _, _, state = m(x[:, :7])
    step = m(x[:, 7:], caches=state)[0]
    assert torch.allclose(full[:, 7:], step, atol=1e-6)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from tests.conftest import CORPORA

    root = tmp_path_factory.mktemp("baselines")
    corpus = (CORPORA / "tinyshakespeare.txt").read_text()
    (root / "train.txt").write_text(corpus[:40_000])
    (root / "held_out.txt").write_text(corpus[40_000:41_500])
    common = ["--data", str(root / "train.txt"), "--preset", "tiny", "--quiet", "--set", "threads=1",
              "--set", "max_iters=40", "--set", "lr_decay_iters=40", "--set", "eval_interval=20"]
    for kind in ("gpt", "lstm", "markov"):
        r = CliRunner().invoke(cli, ["train", *common, "--set", f"model_type={kind}", "--out", str(root / kind)])
        assert r.exit_code == 0, r.output
    return root


def test_lstm_trains_and_samples_through_the_same_cli(runs):
    history = json.loads((runs / "lstm" / "last" / "history.json").read_text())
    assert sum(history["train_loss"][-5:]) < sum(history["train_loss"][:5])
    out = CliRunner().invoke(cli, ["sample", "--ckpt", str(runs / "lstm"), "--prompt", "ROMEO", "--max-tokens", "30",
                                   "--seed", "2"])
    assert out.exit_code == 0 and out.output.startswith("ROMEO") and len(out.output) > 30


def test_markov_samples_reproducibly(runs):
    args = ["sample", "--ckpt", str(runs / "markov"), "--prompt", "ROMEO:", "--max-tokens", "40", "--seed", "3"]
    a, b = CliRunner().invoke(cli, args), CliRunner().invoke(cli, args)
    assert a.exit_code == 0 and a.output == b.output and a.output.startswith("ROMEO:")


def test_only_gpt_exports(runs, tmp_path):
    with pytest.raises(LLMAppError, match="only GPT checkpoints export"):
        from llmapp.train.checkpoint import export_hf

        export_hf(runs / "lstm" / "last", tmp_path / "hf")


def test_bits_per_char_across_markov_lstm_gpt_and_smollm2(runs, tmp_path):
    out = tmp_path / "ppl"
    models = [str(runs / "markov"), str(runs / "lstm" / "last"), str(runs / "gpt" / "last"), "smollm2-135m-instruct"]
    r = CliRunner().invoke(cli, ["eval", "perplexity", *sum((["--model", m] for m in models), []),
                                 "--data", f"perplexity={runs / 'held_out.txt'}", "--set", "perplexity.window=32",
                                 "--set", "perplexity.stride=16", "--out", str(out)])
    assert r.exit_code == 0, r.output
    systems = json.loads((out / "results.json").read_text())["tasks"]["perplexity"]["systems"]
    bpc = {name: s["metrics"]["bits_per_char"] for name, s in systems.items()}
    for m in models:
        assert 0 < bpc[m] < 8
    # A 5-gram fitted on 40k characters beats 40 steps of a tiny network; SmolLM2 beats them all.
    assert bpc["smollm2-135m-instruct"] < bpc[str(runs / "markov")] < bpc[str(runs / "gpt" / "last")]


def test_bits_per_char_is_the_common_scoring_interface(runs):
    from eval.tasks.perplexity import score_checkpoint
    from llmapp.train.checkpoint import bits_per_char

    text = (runs / "held_out.txt").read_text()[:600]
    for kind in ("markov", "gpt"):
        nll, chars = score_checkpoint(str(runs / kind), text, 32, 16)  # the harness, window = block_size 32
        assert bits_per_char(runs / kind, text) == pytest.approx(nll / chars / math.log(2), rel=1e-5)
    lstm = bits_per_char(runs / "lstm", text)
    assert 0 < lstm < math.log2(65)
    with pytest.raises(LLMAppError, match="empty text"):
        bits_per_char(runs / "gpt", "")
