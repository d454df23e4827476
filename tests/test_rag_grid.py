"""The rag-qa ablation harness: grid rows as systems, the plain LangChain baseline, per-corpus stores,
the split option, and the generation cache that makes a rerun (or a new row) cheap."""

from __future__ import annotations

import json

import pytest

from eval.rag_grid import PRESETS, load_grid, resolve
from llmapp.core.errors import LLMAppError

QUESTIONS = [
    {"id": "q1", "corpus": "genai-notes", "question": "What does the Markov property state?",
     "answers": ["The future state depends only on the current state."], "keywords": ["current state"],
     "sources": ["002_689f4fe1e3be862a.txt"], "answerable": True, "split": "dev"},
    {"id": "q2", "corpus": "genai-notes", "question": "What two networks make up a GAN?",
     "answers": ["A generator and a discriminator."], "keywords": ["discriminator"],
     "sources": ["000_77fbf0f70615d5a1.txt", "001_8e46668569a60732.txt", "002_689f4fe1e3be862a.txt",
                 "004_0eb4fed0b3c9e220.txt"], "answerable": True, "split": "dev"},
    {"id": "q3", "corpus": "genai-notes", "question": "How does the forget gate of an LSTM decide what to discard?",
     "answers": [], "keywords": [], "sources": [], "answerable": False, "split": "dev"},
    {"id": "q4", "corpus": "genai-notes", "question": "What is a VAE?", "answers": ["An autoencoder."],
     "keywords": ["latent"], "sources": ["000_77fbf0f70615d5a1.txt"], "answerable": True, "split": "test"},
]


def test_grids_expand_presets_and_name_bad_settings(tmp_path):
    rows = load_grid("ablation")
    assert list(rows)[:2] == ["defaults", "previous defaults"] and rows["k=3"] == {"k": 3}
    rag, template, decoding = resolve({"preset": "previous"})
    assert (rag.context, template, rag.max_tokens, decoding) == ("numbered", "rag_cite_oneshot", 128,
                                                                 {"repetition_penalty": 1.0, "stop_loops": False})
    assert set(PRESETS) >= {"defaults", "previous"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("rows:\n  oops: {kk: 3}\n")
    with pytest.raises(LLMAppError, match="row 'oops': unknown setting 'kk'"):
        load_grid(str(bad))
    with pytest.raises(LLMAppError, match="no grid 'nope'"):
        load_grid("nope")


@pytest.fixture
def fake_models(monkeypatch):
    """``load_chat_model`` replaced by the fake backend; counts the real generations."""
    import llmapp.backends
    from llmapp.backends import load_chat_model

    calls = []

    def fake(name, backend=None, **settings):
        calls.append(settings)
        return load_chat_model(name, backend="fake", replies=["The future state depends only on the current "
                                                              "state. A generator and a discriminator compete."],
                               **settings)

    monkeypatch.setattr(llmapp.backends, "load_chat_model", fake)
    return calls


def test_grid_run_writes_one_table_and_a_plot_and_reruns_from_cache(tmp_path, llmapp_home, fake_models):
    from eval.harness import evaluate

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    run = dict(tasks=["rag-qa"], out=tmp_path / "out", models=["fake"], data={"rag-qa": str(data)},
               overrides=["rag-qa.split=dev", "rag-qa.grid=smoke"], progress=False)
    results = evaluate(**run)
    entry = results["tasks"]["rag-qa"]
    assert entry["examples"] == 3  # the test-split question is left out
    assert list(entry["systems"]) == ["fake · previous defaults", "fake · defaults", "plain langchain",
                                      "bm25 extractive", "random sentence"]
    row = entry["systems"]["fake · defaults"]["metrics"]
    assert row["abstain_unanswerable"] == 1.0 and row["abstain_answerable"] == 0.0
    assert row["keyword_accuracy"] == 1.0 and row["hit@k"] == 1.0 and row["seconds_per_answer"] > 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| fake · defaults | model |" in report and "seconds_per_answer" in report
    assert (tmp_path / "out" / "rag-qa.png").stat().st_size > 1000
    generations = (tmp_path / "out" / "generations.jsonl").read_text().splitlines()
    assert len(generations) >= 4  # two rows x two answered questions (+ the plain pipeline's)

    free = tmp_path / "free.yaml"  # rows that change only what happens after generation
    free.write_text("rows:\n  same as defaults: {}\n  quote always: {quote: always}\n  no grounding: {ground: false}\n")
    again = evaluate(**{**run, "overrides": ["rag-qa.split=dev", f"rag-qa.grid={free}"]})
    assert list(again["tasks"]["rag-qa"]["systems"])[:3] == ["fake · same as defaults", "fake · quote always",
                                                            "fake · no grounding"]
    assert again["tasks"]["rag-qa"]["systems"]["fake · same as defaults"]["metrics"]["keyword_accuracy"] == 1.0
    after = (tmp_path / "out" / "generations.jsonl").read_text().splitlines()
    keys = {json.loads(line)["key"] for line in after}
    assert keys == {json.loads(line)["key"] for line in generations}  # no new prompt: replayed (or finished)


def test_eval_stores_of_two_folders_of_one_name_stay_apart(tmp_path, llmapp_home):
    """Two checkouts of a corpus: each folder gets its own store, holding its own files only."""
    from eval.rag_stores import StoreSet
    from eval.tasks import EvalContext
    from llmapp.core.config import RAGConfig

    folders = [tmp_path / side / "notes" for side in ("a", "b")]
    for i, folder in enumerate(folders):
        folder.mkdir(parents=True)
        (folder / "gan.txt").write_text(f"Copy {i}. A GAN pits a generator against a discriminator.\n")
    stores = StoreSet(EvalContext(embeddings="minilm-l6"))
    built = [stores.build(str(folder), RAGConfig()) for folder in folders]
    assert built[0] != built[1] and all(b.parent == llmapp_home / "eval" / "stores" for b in built)
    for folder, store in zip(folders, built, strict=True):
        files = json.loads((store / "manifest.json").read_text())["files"]
        assert [str(folder.resolve() / "gan.txt")] == list(files), files
    assert stores.build(str(folders[0]), RAGConfig()) == built[0]  # the same folder: the same store again
