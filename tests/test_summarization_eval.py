"""The summarization eval end to end on two short documents: strategies, baselines, metrics, bucket report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.harness import evaluate
from eval.summary_report import choose, merge, report
from eval.tasks import EvalContext, System, get_task
from llmapp.core.errors import LLMAppError

SMOL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sum")
    results = evaluate(["summarization"], out, models=[SMOL], limit=2, progress=False,
                       overrides=["summarization.split=test", "summarization.buckets=paragraph",
                                  "summarization.strategies=stuff,extract", "summarization.max_tokens=96"])
    return out, results["tasks"]["summarization"]


def test_every_system_gets_quality_and_cost(run):
    _, entry = run
    systems = entry["systems"]
    assert list(systems) == [f"{SMOL} · stuff", f"{SMOL} · extract", "lead-3", "random-3", "centroid-3", "reference"]
    for name, s in systems.items():
        m = s["metrics"]
        assert s["n"] == 2 and 0 < m["rougeL"] <= 1, name
        assert 0 <= m["faithfulness"] <= 1 and 0 <= m["coverage"] <= 1, name
        assert set(m["by_bucket"]) == {"paragraph"}
    for name in (f"{SMOL} · stuff", f"{SMOL} · extract"):
        m = systems[name]["metrics"]
        assert m["window_ok"] == 1.0 and m["tokens"] > 100 and m["seconds"] > 0 and m["steps"] == 1
    assert systems["reference"]["metrics"]["rougeL"] == pytest.approx(1.0)
    # the centroid baseline copies source sentences: the judge must find them supported
    assert systems["centroid-3"]["metrics"]["faithfulness"] == 1.0


def test_bucket_report_table_plot_and_auto_choice(run):
    out, entry = run
    picks = report(out / "results.json")
    assert set(picks) == {"paragraph"} and picks["paragraph"].startswith(SMOL)
    assert picks == choose(entry)
    table = (out / "summarization-buckets.md").read_text()
    assert "### paragraph" in table and "(best)" in table and "| centroid-3 |" in table
    assert (out / "summarization-buckets.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "results.json").read_text())
    assert saved["tasks"]["summarization"]["config"]["split"] == "test"


def test_runs_of_different_buckets_merge_into_one_report(tmp_path):
    def results(folder: str, systems: dict[str, dict[str, float]]) -> Path:
        entry = {"config": {"split": "dev"}, "systems": {
            name: {"kind": "model" if name.startswith("m") else "baseline",
                   "metrics": {"by_bucket": {b: {"rougeL": r} for b, r in buckets.items()}}}
            for name, buckets in systems.items()}}
        path = tmp_path / folder / "results.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"tasks": {"summarization": entry}}))
        return path

    first = results("a", {"m|stuff": {"paragraph": 0.3}, "lead-3": {"paragraph": 0.2}})
    second = results("b", {"m|extract": {"note": 0.25}, "lead-3": {"paragraph": 0.9, "note": 0.1}})
    merged = merge([first, second])
    assert merged["systems"]["lead-3"]["metrics"]["by_bucket"] == {"paragraph": {"rougeL": 0.2},
                                                                   "note": {"rougeL": 0.1}}
    assert choose(merged) == {"paragraph": "m|stuff", "note": "m|extract"}


def test_stuff_on_a_text_over_the_window_is_skipped_not_fatal():
    task = get_task("summarization")(ctx=EvalContext(models=[SMOL]))
    task.config.buckets = "long"
    long_doc = task.examples()[0]
    record = task.run(System("x", "model", f"{SMOL}|stuff"), long_doc)
    assert record["summary"] == "" and "does not fit" in record["skipped"]


def test_bad_settings_are_named():
    task = get_task("summarization")(ctx=EvalContext(models=[SMOL]))
    task.config.strategies = "stuff,magic"
    with pytest.raises(LLMAppError, match="unknown strategy 'magic'"):
        task.systems()
    task.config.split = "train"
    with pytest.raises(LLMAppError, match="split must be dev, test or empty"):
        task.examples()


def test_select_is_scored_as_a_model_system_with_no_model_call():
    task = get_task("summarization")(ctx=EvalContext(models=[SMOL]))
    task.config.split, task.config.buckets = "test", "paragraph"
    doc = task.examples()[0]
    record = task.run(System("x", "model", f"{SMOL}|select"), doc)
    assert record["strategy"] == "select" and record["steps"] == 0 and record["tokens"] == 0
    assert record["summary"] and record["faithfulness"] == 1.0  # verbatim source sentences
    assert record["rougeL_unguarded"] == record["rougeL"]  # nothing for the guard to change
