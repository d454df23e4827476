"""The ``retrieval`` task: recall@k, MRR and nDCG@10 of vector, BM25 and hybrid retrieval on a BEIR set.

Data is a BEIR-format folder: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/test.tsv`` (``query-id  corpus-id  score``, with a header). The
corpus is embedded into an in-memory store and ranked by the same retrievers ``llmapp ask`` uses
(``chains.rag.RETRIEVERS``), so the numbers are those of the product. BM25 is the classic
baseline; a seeded random ranking is the floor.

    llmapp eval retrieval --out runs/retrieval                          # eval/data/genai-beir
    llmapp eval retrieval --data retrieval=~/beir/scifact --embeddings minilm-l6 --out runs/scifact
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from eval.metrics import mean, mrr, ndcg_at_k, recall_at_k
from eval.tasks.base import DATA, System, Task, limited, read_jsonl
from llmapp.core.errors import LLMAppError


@dataclass
class RetrievalConfig:
    data: str = ""  # a BEIR folder; "": eval/data/genai-beir (the demo notes' paragraphs, genai-qa questions)
    ks: list[int] | None = None  # recall cut-offs; None: 1, 5, 10
    split: str = "test"  # which qrels/<split>.tsv to read, as BEIR names them


class RetrievalTask(Task):
    name = "retrieval"
    description = "BEIR retrieval: recall@k, MRR@10, nDCG@10 for vector, BM25, hybrid"
    config_class = RetrievalConfig
    plot_metrics: ClassVar[list[str]] = ["recall@5", "mrr@10", "ndcg@10"]

    @property
    def ks(self) -> list[int]:
        return self.config.ks or [1, 5, 10]

    @property
    def metrics(self) -> dict[str, str]:  # type: ignore[override]  # depends on the configured ks
        return {**{f"recall@{k}": "higher" for k in self.ks}, "mrr@10": "higher", "ndcg@10": "higher"}

    def examples(self) -> list[dict[str, Any]]:
        folder = Path(self.config.data or DATA / "genai-beir").expanduser()
        if not folder.is_dir():
            raise LLMAppError(f"BEIR folder not found: {folder}; it needs corpus.jsonl, queries.jsonl and qrels/")
        self.corpus = read_jsonl(folder / "corpus.jsonl", {"_id": (str, int), "text": str})
        queries = read_jsonl(folder / "queries.jsonl", {"_id": (str, int), "text": str})
        qrels = _read_qrels(folder / "qrels" / f"{self.config.split}.tsv")
        examples = [{"id": q["id"], "query": q["text"], "relevance": qrels[q["id"]]} for q in queries if q["id"] in qrels]
        if not examples:
            raise LLMAppError(f"{folder / 'qrels'}: no query in queries.jsonl has judgements; check the ids match")
        return limited(examples, self.ctx)

    def systems(self) -> list[System]:
        emb = self.ctx.embeddings
        return [System(f"vector ({emb})", "model", f"vector:{emb}"), System(f"hybrid ({emb} + bm25)", "model", f"hybrid:{emb}"),
                System("bm25", "baseline", "bm25"), System("random", "baseline", "random")]

    def setup(self) -> None:
        if not hasattr(self, "store"):
            self.store = _memory_store(self.corpus, self.ctx.embeddings)

    def run(self, system: System, example: dict[str, Any]) -> dict[str, Any]:
        depth = max(max(self.ks), 10)
        if system.spec == "random":
            ids = [d["id"] for d in self.corpus]
            random.Random(f"{self.ctx.seed}:{example['id']}").shuffle(ids)
            ranked = ids[:depth]
        else:
            from chains.rag import RETRIEVERS

            self.setup()
            method = system.spec.split(":")[0]
            rows = RETRIEVERS[method](self.store, example["query"], self.store.embed_query(example["query"]), depth * 2)
            ranked = list(dict.fromkeys(self.store.docs[r]["source"] for r in rows))[:depth]
        rel = example["relevance"]
        relevant = [d for d, g in rel.items() if g > 0]
        out: dict[str, Any] = {f"recall@{k}": recall_at_k(ranked, relevant, k) for k in self.ks}
        out.update({"mrr@10": mrr(ranked, relevant, 10), "ndcg@10": ndcg_at_k(ranked, rel, 10), "ranked": ranked[:5]})
        return out

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {m: mean(r[m] for r in records) for m in self.metrics}


def _read_qrels(path: Path) -> dict[str, dict[str, float]]:
    """query id -> {corpus id: relevance} from a BEIR qrels TSV (header line optional)."""
    if not path.is_file():
        raise LLMAppError(f"qrels not found: {path}; a BEIR folder has qrels/test.tsv")
    qrels: dict[str, dict[str, float]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.strip().split("\t")
        if not line.strip() or (lineno == 1 and parts[0] == "query-id"):
            continue
        if len(parts) != 3:
            raise LLMAppError(f"{path}:{lineno}: expected 3 tab-separated fields (query-id, corpus-id, score), "
                              f"got {len(parts)}")
        try:
            qrels.setdefault(parts[0], {})[parts[1]] = float(parts[2])
        except ValueError:
            raise LLMAppError(f"{path}:{lineno}: score {parts[2]!r} is not a number") from None
    if not qrels:
        raise LLMAppError(f"{path}:1: empty dataset (no judgements); add query-id/corpus-id/score lines")
    return qrels


def _memory_store(corpus: list[dict[str, Any]], embeddings: str) -> Any:
    """An in-memory ``chains.store.Store`` over the corpus (one passage per row, source = its id)."""
    import numpy as np

    from chains.index import embed_chunks
    from chains.store import Store, make_index
    from llmapp import load_embeddings

    emb = load_embeddings(embeddings)
    docs = [{"text": f"{d.get('title', '')}\n{d['text']}".strip(), "source": d["id"], "start": 0,
             "end": len(d["text"])} for d in corpus]
    vectors = np.asarray(embed_chunks(emb, [d["text"] for d in docs]), dtype="float32")
    manifest = {"index_type": "Flat", "root": "", "dimension": int(vectors.shape[1])}
    return Store(Path("<memory>"), manifest, make_index(vectors, "Flat"), docs, vectors, emb)
