"""The harness: resume after a crash, one-line bad-input errors with line numbers, report and plots."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from eval.harness import CACHE_FILE, evaluate
from eval.tasks.summarization import SummarizationTask
from llmapp.cli import cli, main
from llmapp.core.errors import LLMAppError


def _summaries(path, n=4):
    path.write_text("".join(json.dumps({"document": f"Sentence one about topic {i}. Sentence two is here. "
                                                    f"Sentence three ends it. A fourth adds detail.",
                                        "summary": f"Topic {i} in one sentence."}) + "\n" for i in range(n)))
    return str(path)


def test_resume_after_a_crash_skips_finished_examples(tmp_path, monkeypatch):
    data = {"summarization": _summaries(tmp_path / "s.jsonl")}
    out = tmp_path / "run"
    real_run = SummarizationTask.run
    calls = []

    def crashing(self, system, example):
        calls.append((system.name, example["id"]))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C on the third example
        return real_run(self, system, example)

    monkeypatch.setattr(SummarizationTask, "run", crashing)
    with pytest.raises(KeyboardInterrupt):
        evaluate(["summarization"], out, data=data, progress=False)
    cached = (out / CACHE_FILE).read_text().splitlines()
    assert len(cached) == 2  # the two finished examples are on disk
    with (out / CACHE_FILE).open("a") as f:
        f.write('{"key": "half-written')  # and a line cut short by the crash

    calls.clear()
    monkeypatch.setattr(SummarizationTask, "run", lambda self, s, e: calls.append((s.name, e["id"])) or real_run(self, s, e))
    results = evaluate(["summarization"], out, data=data, progress=False)
    assert len(calls) == 16 - 2  # 4 examples x 4 baselines, minus the 2 done before the crash
    assert results["tasks"]["summarization"]["systems"]["lead-3"]["n"] == 4

    calls.clear()
    again = evaluate(["summarization"], out, data=data, progress=False)
    assert calls == []  # everything cached
    assert again["tasks"]["summarization"]["systems"] == results["tasks"]["summarization"]["systems"]

    calls.clear()
    evaluate(["summarization"], out, data=data, overrides=["summarization.lead_k=2"], progress=False)
    assert len(calls) == 16  # a changed setting is a new experiment


def test_results_report_and_plots_are_written(tmp_path):
    out = tmp_path / "run"
    results = evaluate(["summarization", "generation"], out, data={"summarization": _summaries(tmp_path / "s.jsonl")},
                       limit=2, seed=7, progress=False)
    saved = json.loads((out / "results.json").read_text())
    assert saved["seed"] == 7 and saved["limit"] == 2 and saved["version"] == 1
    assert saved["packages"]["transformers"] and saved["started"] and saved["finished"]
    assert "git_commit" in saved and saved["python"]
    assert saved["tasks"]["summarization"]["config"]["lead_k"] == 3
    assert saved["tasks"] == json.loads(json.dumps(results["tasks"], default=str))
    report = (out / "report.md").read_text()
    assert "| system | kind | rouge1 ↑ | rouge2 ↑ | rougeL ↑ | faithfulness ↑ | coverage ↑ |" in report
    assert "| lead-3 | baseline |" in report and "![summarization](summarization.png)" in report
    assert "word bigram (n-gram)" in report and "<summary>samples</summary>" in report
    for name in ("summarization", "generation"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("content, message", [
    ('{"document": "a", "summary": "b"}\n{"document": "a", "summary": \n', r"s.jsonl:2: malformed JSON"),
    ('{"document": "a", "summary": "b"}\n\n{"document": "a"}\n', r"s.jsonl:3: missing field 'summary'"),
    ('{"document": 5, "summary": "b"}\n', r"s.jsonl:1: field 'document' must be str"),
    ("\n\n", r"s.jsonl:1: empty dataset"),
])
def test_bad_datasets_get_one_line_errors_with_line_numbers(tmp_path, content, message):
    (tmp_path / "s.jsonl").write_text(content)
    with pytest.raises(LLMAppError, match=message) as info:
        evaluate(["summarization"], tmp_path / "out", data={"summarization": str(tmp_path / "s.jsonl")}, progress=False)
    assert "\n" not in str(info.value)


def test_cli_prints_one_line_errors_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "qa.jsonl"
    bad.write_text('{"question": "q", "answers": [], "keywords": [], "sources": [], "answerable": false}\n{oops\n')
    for argv, message in [
        (["eval", "rag-qa", "--data", f"rag-qa={bad}", "--out", str(tmp_path / "o")], "qa.jsonl:2: malformed JSON"),
        (["eval", "perplexity", "--model", "minilm-l6", "--out", str(tmp_path / "o")], "cannot score log-likelihoods"),
        (["eval", "nope", "--out", str(tmp_path / "o")], "unknown task 'nope'; use one of: perplexity, rag-qa"),
        (["eval", "summarization", "--set", "summarization.colour=red", "--out", str(tmp_path / "o")],
         "unknown setting 'colour'"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_runs_tasks_and_prints_a_table(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["eval", "summarization", "--data",
                                      f"summarization={_summaries(tmp_path / 's.jsonl', 2)}", "--out", str(out),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "summarization (2 examples)" in result.output and "lead-3" in result.output
    assert (out / "report.md").exists() and (out / "summarization.png").exists()
    assert "llmapp eval perplexity rag-qa" in CliRunner().invoke(cli, ["eval", "--help"]).output
