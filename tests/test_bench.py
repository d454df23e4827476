"""The benchmark runner with tiny fake benchmarks registered here; timings are never asserted."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from eval import bench as B
from llmapp.cli import cli
from llmapp.core.errors import LLMAppError


@pytest.fixture
def fakes(monkeypatch):
    seen = []

    def fake(quick: bool = False) -> dict:
        seen.append(quick)
        return {"a_tok_s": 10.0, "b_tok_s": 5.0, "ratio_a_vs_b": 2.0, "nested": {"p50_s": 0.25}}

    def broken(quick: bool = False) -> dict:
        raise RuntimeError("the server would not start\nsecond line")

    monkeypatch.setitem(B.BENCHES, "fake", fake)
    monkeypatch.setitem(B.BENCHES, "broken", broken)
    monkeypatch.setitem(B.BENCHES, "missing", "eval.bench_does_not_exist:bench_missing")
    return seen


def test_runner_isolates_failures_and_missing_modules(fakes):
    res = B.run_benchmarks(["fake", "broken", "missing"], quick=True)
    assert fakes == [True]
    rows = res["benchmarks"]
    assert rows["fake"]["status"] == "ok" and rows["fake"]["figures"]["ratio_a_vs_b"] == 2.0
    assert rows["broken"] == {"status": "error", "error": "RuntimeError: the server would not start",
                              "seconds": rows["broken"]["seconds"]}
    assert rows["missing"]["status"] == "not available"
    assert res["quick"] is True and res["machine"]["cores"] >= 1


def test_markdown_table_and_files(fakes, tmp_path):
    res = B.run_benchmarks(["fake", "missing"])
    table = B.markdown_table(res)
    assert "| benchmark | figure | value |" in table
    assert "| fake | ratio_a_vs_b ⇄ | 2.000 |" in table
    assert "| fake | nested.p50_s | 0.250 |" in table
    assert "| missing | not available |" in table
    json_path, md_path = B.write_results(res, tmp_path / "b" / "bench.json")
    assert json.loads(json_path.read_text())["benchmarks"]["fake"]["figures"]["a_tok_s"] == 10.0
    assert md_path.name == "bench.md" and md_path.read_text() == table


def test_unknown_benchmark_lists_valid_names():
    with pytest.raises(LLMAppError, match="unknown benchmark 'speed'; use one of: generate, rag, train, serve, load, startup"):
        B.run_benchmarks(["speed"])


def test_every_registered_benchmark_is_lazy():
    assert {"generate", "rag", "train", "serve", "load", "startup"} <= set(B.BENCHES)
    assert all(isinstance(t, str) and ":" in t for t in B.BENCHES.values())


def test_cli_prints_the_table_and_writes_json(fakes, tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(cli, ["bench", "fake", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| fake | ratio_a_vs_b ⇄ | 2.000 |" in result.output
    assert json.loads(out.read_text())["quick"] is True and out.with_suffix(".md").exists()
    assert "llmapp bench generate" in CliRunner().invoke(cli, ["bench", "--help"]).output


def test_startup_benchmark_runs_for_real():
    figures = B.bench_startup(quick=True)
    assert figures["repetitions"] == 3
    assert figures["help_min_s"] <= figures["help_median_s"] <= figures["help_max_s"]
    assert figures["ratio_help_vs_bare_python"] > 0


@pytest.mark.parametrize("strategy", ["select", "stuff"])
def test_summarize_bench_figures_with_and_without_model_calls(strategy, embeddings):
    """The 100 KB bench's per-strategy figures, on a short text: a strategy that sends no prompt
    (select) reports no steps and a largest prompt of 0, one that does reports its prompt."""
    from eval.bench_summarize import run_one
    from llmapp.backends import load_chat_model

    chat = load_chat_model("fake", backend="fake", replies=["Item 1 is a plain sentence about topic 1."])
    text = " ".join(f"Item {i} is a plain sentence about topic {i}." for i in range(20))
    figures = run_one(text, chat, embeddings, strategy)
    assert figures["strategy"] == strategy and figures["window_safe"] and figures["summary_words"] > 0
    calls = figures["steps"], figures["max_prompt_tokens"] > 0
    assert calls == ((0, False) if strategy == "select" else (1, True)), figures
