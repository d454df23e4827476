"""The bundled masked LM: BERT masking statistics, and the shipped head against an untrained one."""

from __future__ import annotations

import json

import pytest
import torch

from llmapp import load_masked_lm
from llmapp.models.masked import HEAD_PATH, base_model, load_mlm_model
from llmapp.train.mlm import MLMConfig, accuracy, mask_tokens

HELD_OUT = [  # sentences from neither training text
    "The children walked to the school every morning before the sun came up.",
    "She opened the door and looked out at the garden in the rain.",
    "Neural networks learn patterns from large amounts of data.",
    "The king and the queen sat together at the long table.",
]


def test_masking_follows_bert_80_10_10():
    _, tok = base_model()
    ids = torch.randint(1000, 20000, (64, 128))
    inputs, labels = mask_tokens(ids, tok, 0.15, torch.Generator().manual_seed(0))
    chosen = labels != -100
    assert abs(chosen.float().mean().item() - 0.15) < 0.01
    masked = (inputs == tok.mask_token_id) & chosen
    kept = (inputs == ids) & chosen
    assert abs(masked.sum().item() / chosen.sum().item() - 0.8) < 0.03
    assert abs(kept.sum().item() / chosen.sum().item() - 0.1) < 0.03  # (+ the rare random token equal to itself)
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(inputs[~chosen], ids[~chosen])


def test_shipped_head_is_small_and_documented():
    assert HEAD_PATH.stat().st_size < 1_000_000
    report = json.loads(HEAD_PATH.with_suffix(".json").read_text())
    acc = report["accuracy"]
    assert acc["trained_head"]["top5"] > acc["random_head"]["top5"] + 0.2


def test_shipped_head_beats_the_random_head_on_held_out_sentences():
    trained, tok = load_mlm_model()
    untrained, _ = base_model()
    rows = tok(HELD_OUT * 4, padding="max_length", max_length=24, truncation=True, return_tensors="pt")["input_ids"]
    cfg = MLMConfig(batch_size=len(rows), eval_batches=1, mask_prob=0.3, seed=5)  # 61 masked tokens
    ours, random_head = accuracy(trained, tok, rows, cfg), accuracy(untrained, tok, rows, cfg)
    assert ours["top5"] > random_head["top5"] + 0.1


def test_fill_mask_through_the_registry():
    preds = load_masked_lm("minilm-l6-mlm", device="cpu").fill_mask("The cat sat on the [MASK].", top_k=5)
    assert len(preds) == 5 and all(p["token"] and not p["token"].startswith("[") for p in preds)


def test_missing_head_names_the_rebuild_command(tmp_path):
    from llmapp.core.errors import ModelNotFound

    with pytest.raises(ModelNotFound, match="python -m llmapp.train.mlm"):
        load_mlm_model(tmp_path / "nope.safetensors")


def test_unfreezing_the_top_layer_trains_and_ships_it_with_the_head(tmp_path):
    from safetensors.torch import load_file

    from llmapp.train.mlm import train_head

    out = tmp_path / "head-top1.safetensors"
    cfg = MLMConfig(steps=3, batch_size=4, encode_batches=2, eval_batches=1, unfreeze_layers=1)
    report = train_head(cfg, out, progress=False)
    saved = load_file(str(out))
    assert {k for k in saved if k.startswith("bert.")} and all(k.startswith(("cls.", "bert.encoder.layer.5."))
                                                                for k in saved)
    base, _ = base_model()
    layer5 = "bert.encoder.layer.5.output.dense.weight"
    assert not torch.equal(saved[layer5], base.state_dict()[layer5])  # the layer learned
    model, _ = load_mlm_model(out)
    assert torch.equal(model.state_dict()[layer5], saved[layer5])
    assert report["params"] > 1_000_000 and json.loads(out.with_suffix(".json").read_text())["config"]["unfreeze_layers"] == 1


@pytest.fixture(scope="module")
def small_text(tmp_path_factory):
    from tests.conftest import CORPORA

    path = tmp_path_factory.mktemp("mlm") / "small.txt"
    path.write_text((CORPORA / "tinyshakespeare.txt").read_text()[:30_000])  # ~80 rows of 128 tokens: seconds
    return path


def _small(small_text, out, **changes):
    settings = dict(data=str(small_text), out_dir=str(out), max_iters=6, batch_size=4, encode_batches=2,
                    eval_iters=1, eval_interval=3, positions_per_step=64, threads=1) | changes
    return MLMConfig(**settings)


def test_mlm_objective_evaluates_and_resumes_exactly(small_text, tmp_path):
    from llmapp.train import checkpoint
    from llmapp.train.mlm import train_head

    whole = train_head(_small(small_text, tmp_path / "whole"), tmp_path / "whole.safetensors", progress=False)
    history = checkpoint.load_history(tmp_path / "whole" / "last")
    assert [e["step"] for e in history["evals"]] == [3, 6] and all(e["val"] > 0 for e in history["evals"])
    assert (tmp_path / "whole" / "best").is_dir() and (tmp_path / "whole" / "loss.png").exists()
    assert whole["config"]["max_iters"] == 6

    def interrupt(step, loss):
        if step == 4:
            raise KeyboardInterrupt

    cfg = _small(small_text, tmp_path / "split")
    with pytest.raises(KeyboardInterrupt):
        train_head(cfg, tmp_path / "split.safetensors", progress=False, on_step=interrupt)
    assert checkpoint.load_state(tmp_path / "split" / "last")["step"] == 4
    assert not (tmp_path / "split.safetensors").exists()
    train_head(cfg, tmp_path / "split.safetensors", progress=False, resume=True)
    assert checkpoint.load_history(tmp_path / "split" / "last") == history  # losses and evaluations, bit for bit
    assert (tmp_path / "split.safetensors").read_bytes() == (tmp_path / "whole.safetensors").read_bytes()


def test_mlm_head_trains_from_the_command_line_into_a_loadable_masked_lm(small_text, tmp_path):
    from click.testing import CliRunner

    from llmapp.cli import cli

    out = tmp_path / "mlm"
    args = ["finetune", "--objective", "mlm", "--data", str(small_text), "--out", str(out), "--quiet",
            "--set", "max_iters=4", "--set", "batch_size=4", "--set", "encode_batches=2", "--set", "eval_iters=1",
            "--set", "positions_per_step=64", "--set", "threads=1"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "done: 4 steps" in r.output and "held-out top-5" in r.output
    preds = load_masked_lm(str(out), device="cpu").fill_mask("The king sat on the [MASK].", top_k=3)
    assert len(preds) == 3
    model, _ = load_mlm_model(out / "mlm_head.safetensors")  # the head alone, as it ships
    assert json.loads((out / "mlm_head.json").read_text())["config"]["max_iters"] == 4
    again = CliRunner().invoke(cli, [*args, "--resume"])
    assert again.exit_code != 0 and "already finished at step 4" in str(again.exception)
    lora = CliRunner().invoke(cli, [*args, "--lora"])
    assert lora.exit_code != 0 and "--lora is for --objective causal" in str(lora.exception)
