"""Each evaluation task on real data: the bundled sets, the bundled models, tiny limits."""

from __future__ import annotations

import math

import pytest

from eval.tasks import TASKS, EvalContext, System, get_task
from eval.tasks.perplexity import PerplexityTask, check_scorable, score_hf
from eval.tasks.rag_qa import RAGQATask, score_answer
from eval.tasks.retrieval import RetrievalTask
from llmapp.core.errors import LLMAppError

SMOL = "smollm2-135m-instruct"


def test_registry_names_and_unknown_task():
    assert set(TASKS) == {"perplexity", "rag-qa", "retrieval", "summarization", "generation", "backend-parity",
                          "structured"}
    with pytest.raises(LLMAppError, match="unknown task 'qa'; use one of: perplexity, rag-qa"):
        get_task("qa")


# ---------------------------------------------------------------------------------------------- perplexity

TEXT = ("The generator tries to create realistic data, while the discriminator evaluates the data, "
        "attempting to distinguish between real and generated samples. This competition drives the "
        "generator to improve its output.")


def test_score_hf_matches_the_models_own_loss():
    """Parity: one window over the whole text equals transformers' built-in mean loss x targets."""
    import torch

    from llmapp.models.hf import load_causal_lm

    lm = load_causal_lm(SMOL)
    nll, scored = score_hf(SMOL, TEXT, window=512, stride=256)
    ids = [lm.tokenizer.convert_tokens_to_ids("<|endoftext|>")] + lm.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    x = torch.tensor([ids])
    with torch.inference_mode():
        loss = lm.model(x, labels=x).loss.item()
    assert scored == len(ids) - 1  # every text token scored once, the boundary token is context only
    assert nll == pytest.approx(loss * scored, rel=1e-4)


def test_sliding_window_scores_every_token_once():
    full, n_full = score_hf(SMOL, TEXT, window=512, stride=256)
    slid, n_slid = score_hf(SMOL, TEXT, window=16, stride=8)
    assert n_slid == n_full
    assert slid > full * 0.95  # less context can only help so much; it mostly hurts
    assert slid / n_slid < 10  # still a sane per-token NLL (nats)


def test_perplexity_task_baselines_and_bits_per_char(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("the cat sat on the mat. " * 40)
    (folder / "b.txt").write_text("the cat sat on the mat. the dog sat on the log. " * 20)
    task = PerplexityTask(ctx=EvalContext())
    task.config.data = str(folder)
    examples = task.examples()
    assert [e["id"] for e in examples] == ["a.txt", "b.txt"]
    rows = {}
    for system in task.systems():
        rows[system.name] = task.aggregate([task.run(system, e) for e in examples])
    uniform, ngram = rows["random (uniform chars)"], rows["5-gram chars"]
    assert uniform["bits_per_char"] == pytest.approx(math.log2(len(set("the cat sat on mat. dog log"))))
    # each document is fitted on the other: repetitive text is easy for an n-gram, hard for uniform guessing
    assert ngram["bits_per_char"] < uniform["bits_per_char"] / 2


def test_perplexity_refuses_models_that_cannot_score():
    with pytest.raises(LLMAppError, match="'minilm-l6' .*cannot score log-likelihoods; use a causal LM"):
        check_scorable("minilm-l6")
    with pytest.raises(LLMAppError, match="cannot score"):
        PerplexityTask(ctx=EvalContext(models=["minilm-l6"])).systems()


def test_perplexity_on_missing_or_empty_text(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    task = PerplexityTask(ctx=EvalContext())
    task.config.data = str(empty)
    with pytest.raises(LLMAppError, match=r"empty.txt:1: empty dataset"):
        task.examples()


# ---------------------------------------------------------------------------------------------- rag-qa

EXAMPLE = {"id": "q1", "question": "What are the two networks in a GAN?", "answers": ["A generator and a discriminator."],
           "keywords": ["generator", "discriminator"], "sources": ["000_x.txt"], "answerable": True}


def test_score_answer_by_hand():
    sources = [{"n": 1, "source": "/d/000_x.txt", "text": "The generator and the discriminator compete."},
               {"n": 2, "source": "/d/003_y.txt", "text": "Unrelated text about VAEs."}]
    out = {"answer": "A generator and a discriminator [1][2].", "sources": sources, "abstained": False}
    rec = score_answer(out, EXAMPLE, k=4)
    assert rec["exact_match"] == 1.0 and rec["token_f1"] == 1.0 and rec["keyword_accuracy"] == 1.0
    assert rec["hit"] == 1.0
    assert rec["citation_precision"] == 0.5  # [1] holds both keywords, [2] holds neither
    assert rec["abstained"] is False
    refused = score_answer({"answer": "I don't know.", "sources": [], "abstained": False},
                           {**EXAMPLE, "answerable": False, "answers": [], "keywords": [], "sources": []}, k=4)
    assert refused["abstained"] is True and refused["exact_match"] is None and refused["citation_precision"] is None


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    from chains.index import build_index
    from llmapp.corpora import GENAI_NOTES as DEMO_DATA

    store = tmp_path_factory.mktemp("store") / "demo"
    build_index([DEMO_DATA], store)
    return str(store)


def test_rag_qa_on_the_demo_store_with_the_bundled_model(demo_store, tmp_path):
    from eval.tasks.base import DATA

    genai = str(DATA / "genai-qa.jsonl")  # a custom --data without corpus or split: asked against --store
    task = RAGQATask(ctx=EvalContext(models=[SMOL], store=demo_store, limit=1, out=str(tmp_path)))
    task.config.data, task.config.max_tokens = genai, 16
    examples = task.examples()
    everything = RAGQATask(ctx=EvalContext(store=demo_store))
    everything.config.data = genai
    unanswerable = next(e for e in everything.examples() if not e["answerable"])
    systems = {s.name: s for s in task.systems()}
    assert list(systems) == [SMOL, "plain langchain", "bm25 extractive", "random sentence"]
    model = task.run(systems[SMOL], examples[0])
    assert model["answer"] and 0.0 <= model["token_f1"] <= 1.0 and model["seconds"] > 0
    assert model["hit"] == 1.0  # "two neural networks in a GAN" is found in the notes
    assert set(model["signals"]) == {"cosine", "coverage", "fusion"}  # for the abstention ROC
    bm25 = task.run(systems["bm25 extractive"], examples[0])
    assert bm25["keyword_accuracy"] > 0 and bm25["hit"] == 1.0
    assert task.run(systems["bm25 extractive"], unanswerable)["abstained"] is True
    row = task.aggregate([model, bm25])
    assert set(row) >= {"exact_match", "token_f1", "keyword_accuracy", "hit@k", "citation_precision",
                        "abstain_unanswerable", "abstain_answerable", "seconds_per_answer"}
    assert row["abstain_unanswerable"] is None  # no unanswerable question among these records


def test_rag_qa_default_data_is_the_test_split_of_three_corpora():
    task = RAGQATask()
    rows = task.examples()
    assert len(rows) == 75 and {r["split"] for r in rows} == {"test"}
    assert {r["corpus"] for r in rows} == {"genai-notes", "llmapp-docs", "harbor-library"}
    task.config.split, task.config.every = "dev", 2
    assert len(task.examples()) == 38 and {r["split"] for r in task.examples()} == {"dev"}
    task.config.split = "train"
    with pytest.raises(LLMAppError, match="split='train': use one of: dev, test, all"):
        task.examples()


def test_abstention_calibration_picks_the_best_threshold_under_the_false_rate():
    from eval.calibrate import auc, choose, rates

    scores = [(True, 0.9), (True, 0.8), (True, 0.7), (True, 0.2), (False, 0.1), (False, 0.3), (False, 0.75)]
    assert auc(scores) == pytest.approx(9 / 12)
    assert choose(scores, max_false=0.0) == 0.15  # abstain below 0.15: one of three unanswerable, no answerable
    assert rates(scores, 0.15) == (1 / 3, 0.0)
    assert choose(scores, max_false=0.25) == 0.5  # one answerable lost buys two unanswerable
    assert rates(scores, 0.5) == (2 / 3, 0.25)


# ---------------------------------------------------------------------------------------------- retrieval

def test_retrieval_on_the_bundled_beir_set():
    task = RetrievalTask(ctx=EvalContext(limit=4))
    examples = task.examples()
    assert len(examples) == 4 and all(e["relevance"] for e in examples)
    rows = {s.name: task.aggregate([task.run(s, e) for e in examples]) for s in task.systems()}
    assert set(rows) == {"vector (minilm-l6)", "hybrid (minilm-l6 + bm25)", "bm25", "random"}
    for row in rows.values():
        assert all(0.0 <= v <= 1.0 for v in row.values())
    assert rows["hybrid (minilm-l6 + bm25)"]["ndcg@10"] > rows["random"]["ndcg@10"]
    assert rows["vector (minilm-l6)"]["recall@10"] >= rows["vector (minilm-l6)"]["recall@1"]


def test_retrieval_bad_qrels_line(tmp_path):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text('{"_id": "d1", "text": "a"}\n')
    (beir / "queries.jsonl").write_text('{"_id": "q1", "text": "a"}\n')
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    task = RetrievalTask(ctx=EvalContext())
    task.config.data = str(beir)
    with pytest.raises(LLMAppError, match=r"test.tsv:2: expected 3 tab-separated fields"):
        task.examples()


# ---------------------------------------------------------------------------------------------- summarization, generation

def test_summarization_model_and_baselines():
    task = get_task("summarization")(ctx=EvalContext(models=[SMOL], limit=1))
    task.config.max_tokens = 24
    (example,) = task.examples()
    recs = {s.spec: task.run(s, example) for s in task.systems()}
    assert recs["lead"]["rouge1"] > 0.3  # lead-3 shares much of a paragraph's reference summary
    assert recs[f"{SMOL}|auto"]["summary"] and 0 < recs[f"{SMOL}|auto"]["rouge1"] <= 1
    assert recs["random"]["summary"] != "" and recs["centroid"]["faithfulness"] == 1.0


def test_generation_model_and_ngram_baseline():
    task = get_task("generation")(ctx=EvalContext(models=[SMOL], limit=2))
    task.config.max_tokens = 12
    examples = task.examples()
    for system in task.systems():
        records = [task.run(system, e) for e in examples]
        row = task.aggregate(records)
        assert 0 < row["distinct_1"] <= 1 and 0 <= row["repetition_rate"] <= 1
        assert row["min_words"] <= row["mean_words"] <= row["max_words"]
        assert row["max_sentence_copies"] >= 0 and row["looped"] in (0.0, 0.5, 1.0)
        assert len(task.samples(records)) == 2
    markov = [task.run(System("m", "baseline", "markov"), e)["text"] for e in examples]
    assert markov[0] != markov[1]  # seeded per prompt, not one text for all


def test_generation_decoding_rows_and_splits():
    task = get_task("generation")(ctx=EvalContext(models=[SMOL]))
    assert len(task.examples()) == 64
    task.config.split, task.config.decoding = "dev", "raw,default,rp1.2"
    assert len(task.examples()) == 32 and all(e["split"] == "dev" for e in task.examples())
    assert [s.name for s in task.systems()][:3] == [f"{SMOL} · raw", f"{SMOL} · default", f"{SMOL} · rp1.2"]
    task.config.decoding = "greedy"
    with pytest.raises(LLMAppError, match="unknown decoding row 'greedy'"):
        task.systems()


# ---------------------------------------------------------------------------------------------- backend parity

def test_backend_parity_against_the_hf_reference(tmp_path):
    from eval.harness import evaluate

    results = evaluate(["backend-parity"], tmp_path, ["smollm2-135m-instruct"], limit=2, progress=False,
                       overrides=["backend-parity.reply_tokens=12"])
    rows = results["tasks"]["backend-parity"]["systems"]
    reference = rows["smollm2-135m-instruct@hf (reference)"]["metrics"]
    llama = rows["smollm2-135m-instruct"]["metrics"]
    assert reference["top1_agreement"] == 1.0 and reference["positions"] == 24
    assert 0.5 < llama["top1_agreement"] <= 1.0 and 0 < llama["top5_overlap"] <= 1.0
    assert results["backends"]["smollm2-135m-instruct"]["backend"] == "llamacpp"
