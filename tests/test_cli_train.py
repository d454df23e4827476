"""``llmapp train / sample / export`` driven in-process, as a user would type them."""

from __future__ import annotations

from click.testing import CliRunner

from llmapp.cli import cli


def test_train_sample_export_round_trip(tmp_path):
    from tests.conftest import CORPORA

    data = tmp_path / "t.txt"
    data.write_text((CORPORA / "tinyshakespeare.txt").read_text()[:20_000])
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", "--data", str(data), "--preset", "tiny", "--out", str(run), "--quiet",
                                 "--set", "max_iters=10", "--set", "lr_decay_iters=10", "--set", "threads=1"])
    assert r.exit_code == 0, r.output
    assert "done: 10 steps" in r.output and (run / "best" / "model.safetensors").exists()

    s1 = CliRunner().invoke(cli, ["sample", "--ckpt", str(run), "--prompt", "ROMEO:", "--max-tokens", "20", "--seed", "1"])
    s2 = CliRunner().invoke(cli, ["sample", "--ckpt", str(run), "--prompt", "ROMEO:", "--max-tokens", "20", "--seed", "1"])
    assert s1.exit_code == 0 and s1.output == s2.output and s1.output.startswith("ROMEO:")
    assert len(s1.output.rstrip("\n")) >= 20

    e = CliRunner().invoke(cli, ["export", "--ckpt", str(run / "best"), "--out", str(tmp_path / "hf")])
    assert e.exit_code == 0 and (tmp_path / "hf" / "config.json").exists()


def test_bad_setting_is_one_line(tmp_path):
    r = CliRunner().invoke(cli, ["train", "--data", "x.txt", "--set", "lrr=1"], standalone_mode=True)
    assert r.exit_code != 0
    assert "unknown setting 'lrr'" in str(r.exception) or "unknown setting 'lrr'" in r.output
