"""The training loop: exact resume, the NaN guard, atomic checkpoints and bad input, on tiny real runs."""

from __future__ import annotations

import dataclasses

import pytest

from llmapp.core.errors import LLMAppError
from llmapp.train import checkpoint
from llmapp.train.trainer import lr_at, preset, train


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    from tests.conftest import CORPORA

    path = tmp_path_factory.mktemp("data") / "shakespeare-40k.txt"
    path.write_text((CORPORA / "tinyshakespeare.txt").read_text()[:40_000])
    return path


def tiny(text_file, out, **changes):
    settings = dict(max_iters=30, lr_decay_iters=30, eval_interval=10, dropout=0.1, threads=1) | changes
    return dataclasses.replace(preset("tiny"), data=str(text_file), out_dir=str(out), **settings)


def test_loss_falls_and_checkpoints_are_complete(text_file, tmp_path):
    result = train(tiny(text_file, tmp_path / "run"), progress=False)
    losses = result.history["train_loss"]
    assert len(losses) == 30 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    for tag in ("last", "best"):
        files = {p.name for p in (tmp_path / "run" / tag).iterdir()}
        assert files == {"model.safetensors", "state.pt", "config.json", "history.json"}
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    assert [e["step"] for e in result.history["evals"]] == [10, 20, 30]


def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(text_file, tmp_path):
    whole = train(tiny(text_file, tmp_path / "whole"), progress=False)

    def interrupt(step, loss):
        if step == 17:
            raise KeyboardInterrupt

    cfg = tiny(text_file, tmp_path / "split")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False, on_step=interrupt)
    assert checkpoint.load_state(tmp_path / "split" / "last")["step"] == 17
    resumed = train(cfg, resume=True, progress=False)
    assert resumed.history["train_loss"] == whole.history["train_loss"]  # bit-for-bit, dropout included
    assert resumed.history["evals"] == whole.history["evals"]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(text_file, tmp_path):
    cfg = tiny(text_file, tmp_path / "nan", max_iters=200, lr_decay_iters=200, grad_clip=0.0)
    cfg = dataclasses.replace(cfg, lr=1e6, min_lr=1e6, warmup_iters=0)
    with pytest.raises(LLMAppError, match=r"loss became (nan|inf) at step \d+: stopped; the last good checkpoint"):
        train(cfg, progress=False)
    if (tmp_path / "nan" / "last").exists():  # whatever was saved was saved before the blow-up
        import math

        assert all(math.isfinite(x) for x in checkpoint.load_history(tmp_path / "nan" / "last")["train_loss"])


def test_a_failed_save_leaves_the_previous_checkpoint_intact(text_file, tmp_path, monkeypatch):
    out = tmp_path / "full"
    train(tiny(text_file, out, max_iters=10, lr_decay_iters=10), progress=False)
    before = (out / "last" / "model.safetensors").read_bytes()
    import safetensors.torch

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_model", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train(tiny(text_file, out, max_iters=20, lr_decay_iters=20), resume=True, progress=False)
    assert (out / "last" / "model.safetensors").read_bytes() == before
    assert checkpoint.load_state(out / "last")["step"] == 10
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


def test_resume_refuses_a_different_model_config(text_file, tmp_path):
    train(tiny(text_file, tmp_path / "r", max_iters=10, lr_decay_iters=10), progress=False)
    with pytest.raises(LLMAppError, match=r"different model config .*n_embd.*\(32, 48\)"):
        train(tiny(text_file, tmp_path / "r", n_embd=48), resume=True, progress=False)


def test_resume_without_state_is_a_clear_error(text_file, tmp_path):
    train(tiny(text_file, tmp_path / "r", max_iters=10, lr_decay_iters=10), progress=False)
    (tmp_path / "r" / "last" / "state.pt").unlink()
    with pytest.raises(LLMAppError, match="no training state"):
        train(tiny(text_file, tmp_path / "r"), resume=True, progress=False)
    with pytest.raises(LLMAppError, match="no checkpoint in"):
        train(tiny(text_file, tmp_path / "empty"), resume=True, progress=False)


def test_resuming_a_finished_run_says_how_to_train_on(text_file, tmp_path):
    train(tiny(text_file, tmp_path / "done", max_iters=10, lr_decay_iters=10), progress=False)
    with pytest.raises(LLMAppError, match=r"already finished at step 10; .*--set max_iters=20"):
        train(tiny(text_file, tmp_path / "done", max_iters=10, lr_decay_iters=10), resume=True, progress=False)
    more = train(tiny(text_file, tmp_path / "done", max_iters=15, lr_decay_iters=15), resume=True, progress=False)
    assert more.steps == 15 and len(more.history["train_loss"]) == 15


def test_data_too_short_for_one_block(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("To be or not to be, that is the question.")
    with pytest.raises(LLMAppError, match=r"fewer than one block of 32\+1"):
        train(tiny(short, tmp_path / "s"), progress=False)


def test_empty_and_missing_data(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(LLMAppError, match="is empty"):
        train(tiny(empty, tmp_path / "e"), progress=False)
    with pytest.raises(LLMAppError, match="data file not found"):
        train(tiny(tmp_path / "nope.txt", tmp_path / "e"), progress=False)


def test_lr_schedule_warms_up_then_decays_to_min():
    cfg = preset("shakespeare-char-cpu")
    assert lr_at(cfg, 0) < lr_at(cfg, 50) < lr_at(cfg, 99) <= cfg.lr
    assert lr_at(cfg, 1000) < lr_at(cfg, 500)
    assert lr_at(cfg, 2000) == pytest.approx(cfg.min_lr) and lr_at(cfg, 5000) == cfg.min_lr


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(LLMAppError, match="unknown preset 'big'; use one of: shakespeare-char-cpu"):
        preset("big")


def test_ctrl_c_from_the_command_line_resumes_exactly(text_file, tmp_path):
    """A real SIGINT to `llmapp train` at an arbitrary moment; the resumed curve equals the uninterrupted one."""
    import os
    import signal
    import subprocess
    import sys
    import time

    settings = dict(max_iters=800, lr_decay_iters=800, eval_interval=100, dropout=0.0)
    whole = train(tiny(text_file, tmp_path / "whole", **settings), progress=False)
    run = tmp_path / "cli"
    args = ["--data", str(text_file), "--preset", "tiny", "--out", str(run), "--quiet", "--set", "threads=1",
            *sum((["--set", f"{k}={v}"] for k, v in settings.items()), [])]
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, "-m", "llmapp.cli", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not (run / "last").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere mid-run, between checkpoints
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, output
    stopped_at = checkpoint.load_state(run / "last")["step"]
    assert 100 <= stopped_at < 800 and "stopping after this step" in output, output
    resumed = train(tiny(text_file, run, **settings), resume=True, progress=False)
    assert resumed.history["train_loss"] == whole.history["train_loss"]
