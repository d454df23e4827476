"""Perplexity across model families: a GPT checkpoint scores the same through our code and its HF export."""

from __future__ import annotations

import dataclasses
import json
import math

from click.testing import CliRunner

from llmapp.cli import cli
from llmapp.train.checkpoint import export_hf
from llmapp.train.trainer import preset, train


def test_gpt_checkpoint_and_its_hf_export_score_alike(tmp_path):
    from tests.conftest import CORPORA

    corpus = (CORPORA / "tinyshakespeare.txt").read_text()
    (tmp_path / "train.txt").write_text(corpus[:30_000])
    held_out = tmp_path / "held_out.txt"
    held_out.write_text(corpus[30_000:32_000])
    cfg = dataclasses.replace(preset("tiny"), data=str(tmp_path / "train.txt"), out_dir=str(tmp_path / "run"),
                              max_iters=40, lr_decay_iters=40, eval_interval=40, threads=1)
    train(cfg, progress=False)
    export_hf(tmp_path / "run" / "best", tmp_path / "hf")

    out = tmp_path / "eval"
    r = CliRunner().invoke(cli, ["eval", "perplexity", "--model", str(tmp_path / "run" / "best"),
                                 "--model", str(tmp_path / "hf"), "--data", f"perplexity={held_out}",
                                 "--set", "perplexity.window=32", "--set", "perplexity.stride=16",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    results = json.loads((out / "results.json").read_text())
    bpc = {name: sys_["metrics"]["bits_per_char"] for name, sys_ in results["tasks"]["perplexity"]["systems"].items()}
    ours, hf = bpc[str(tmp_path / "run" / "best")], bpc[str(tmp_path / "hf")]
    assert abs(ours - hf) < 1e-3  # two code paths, one model
    vocab = len(set(corpus[:30_000]))
    assert ours < math.log2(vocab)  # 40 steps already beat a uniform guess
