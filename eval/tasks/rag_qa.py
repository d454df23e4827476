"""The ``rag-qa`` task: answer questions from a store with the RAG chain and score answers and citations.

Dataset: JSONL with ``question``, ``answers`` (reference answers), ``keywords``, ``sources``
(file names that hold the answer) and ``answerable``. Per system it reports exact match, token F1
and keyword accuracy (answerable questions), retrieval hit@k (a retrieved chunk comes from an
expected source), citation precision (the cited chunks hold the answer: they contain every
keyword, or come from an expected source when there are no keywords), and abstention rates.

Baselines: an extractive BM25 answer (the sentence of the top-k BM25 chunks that shares most
content words with the question) and a random sentence from the store; both abstain where retrieval finds nothing.

    llmapp eval rag-qa --model smollm2-135m-instruct --out runs/rag          # demo notes + genai-qa.jsonl
    llmapp eval rag-qa --store ./store --data rag-qa=my-qa.jsonl --set rag-qa.retrieval=vector --out runs/rag
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from eval.metrics import exact_match, keyword_accuracy, mean, token_f1
from eval.tasks.base import DATA, System, Task, chat_model, limited, model_systems, read_jsonl, sentences
from llmapp.core.config import RAGConfig

log = logging.getLogger(__name__)

_CITE = re.compile(r"\[(\d+)\]")
# Phrases a small model uses to decline; the chain's own abstention is flagged directly.
_REFUSAL = re.compile(r"(could not find|cannot answer|can't answer|don't know|do not know|no information|"
                      r"not mentioned|not provided|does not (say|mention|contain))", re.I)


@dataclass
class RAGQAConfig:
    data: str = ""  # the question set (JSONL); "": eval/data/genai-qa.jsonl, written for the demo notes
    k: int = 4  # chunks retrieved per question; also the k of hit@k
    retrieval: str = "hybrid"  # "vector", "bm25" or "hybrid", as RAGConfig
    min_score: float = 0.25  # below this cosine similarity the chain abstains (RAGConfig's default)
    max_tokens: int = 64  # reference answers are one sentence; longer replies only dilute EM/F1 and cost time


class RAGQATask(Task):
    name = "rag-qa"
    description = "RAG answers: EM, token F1, keyword accuracy, hit@k, citation precision, abstention"
    config_class = RAGQAConfig
    metrics: ClassVar[dict[str, str]] = {
        "exact_match": "higher", "token_f1": "higher", "keyword_accuracy": "higher", "hit@k": "higher",
        "citation_precision": "higher", "abstain_unanswerable": "higher", "abstain_answerable": "lower",
    }
    plot_metrics: ClassVar[list[str]] = ["token_f1", "keyword_accuracy", "hit@k", "citation_precision",
                                         "abstain_unanswerable"]

    def examples(self) -> list[dict[str, Any]]:
        rows = read_jsonl(self.config.data or DATA / "genai-qa.jsonl",
                          {"question": str, "answers": list, "keywords": list, "sources": list, "answerable": bool})
        return limited(rows, self.ctx)

    def systems(self) -> list[System]:
        return model_systems(self.ctx) + [System("bm25 extractive", "baseline", "bm25-extractive"),
                                          System("random sentence", "baseline", "random-sentence")]

    def rag_config(self, retrieval: str | None = None) -> RAGConfig:
        return RAGConfig(k=self.config.k, retrieval=retrieval or self.config.retrieval, min_score=self.config.min_score)

    def setup(self) -> None:
        from chains.store import Store

        if not hasattr(self, "store"):
            self.store = Store.load(self.ctx.store or demo_store(self.ctx.embeddings))

    def run(self, system: System, example: dict[str, Any]) -> dict[str, Any]:
        self.setup()
        if system.kind == "model":
            from chains.rag import rag_chain
            chat = chat_model(system.spec, max_tokens=self.config.max_tokens, seed=self.ctx.seed)
            out = rag_chain(self.store, chat, self.rag_config(), return_sources=True).invoke(example["question"])
        else:
            out = self._baseline(system.spec, example)
        return score_answer(out, example, self.config.k)

    def _baseline(self, spec: str, example: dict[str, Any]) -> dict[str, Any]:
        from chains.rag import retrieve

        question = example["question"]
        sources = [dataclasses.asdict(s) for s in retrieve(self.store, question, self.rag_config("bm25"))]
        if not sources:
            return {"answer": "", "sources": [], "abstained": True}
        if spec == "random-sentence":
            rng = random.Random(f"{self.ctx.seed}:{example['id']}")
            doc = rng.choice(self.store.docs)
            pool = sentences(doc["text"]) or [doc["text"]]
            src = {"n": 1, "source": doc["source"], "text": doc["text"]}
            return {"answer": rng.choice(pool) + " [1]", "sources": [src], "abstained": False}
        q = _content_words(question)
        pool = [(s["n"], sent) for s in sources for sent in (sentences(s["text"]) or [s["text"]])]
        n, best = max(pool, key=lambda p: len(q & _content_words(p[1])))  # ties: the higher-ranked chunk
        return {"answer": f"{best} [{n}]", "sources": sources, "abstained": False}

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        ans = [r for r in records if r["answerable"]]
        una = [r for r in records if not r["answerable"]]
        return {
            "exact_match": mean(r["exact_match"] for r in ans),
            "token_f1": mean(r["token_f1"] for r in ans),
            "keyword_accuracy": mean(r["keyword_accuracy"] for r in ans),
            "hit@k": mean(r["hit"] for r in ans),
            "citation_precision": mean(r["citation_precision"] for r in ans),
            "abstain_unanswerable": mean(float(r["abstained"]) for r in una),
            "abstain_answerable": mean(float(r["abstained"]) for r in ans),
        }

    def samples(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"question": r["question"], "answer": r["answer"]} for r in records[:3]]


def score_answer(out: dict[str, Any], example: dict[str, Any], k: int) -> dict[str, Any]:
    """One answer's record: the metrics of one question, plus what is needed to show it."""
    answer = re.sub(r"\s*\[\d+\]", "", out["answer"]).strip()  # citations are not part of the answer text
    abstained = bool(out.get("abstained")) or bool(_REFUSAL.search(answer))
    expected = {Path(s).name for s in example["sources"]}
    retrieved = [Path(s["source"]).name for s in out.get("sources", [])][:k]
    by_n = {s["n"]: s for s in out.get("sources", [])}
    cited = [by_n[int(n)] for n in dict.fromkeys(_CITE.findall(out["answer"])) if int(n) in by_n]
    support = [_supports(s, example["keywords"], expected) for s in cited]
    refs, keys = example["answers"], example["keywords"]
    return {
        "question": example["question"], "answer": answer, "answerable": example["answerable"],
        "abstained": abstained,
        "exact_match": exact_match(answer, refs) if refs else None,
        "token_f1": token_f1(answer, refs) if refs else None,
        "keyword_accuracy": keyword_accuracy(answer, keys) if keys else None,
        "hit": float(any(r in expected for r in retrieved)) if expected else None,
        "citation_precision": sum(support) / len(support) if support else None,
        "cited": len(cited),
    }


_STOP = frozenset("a an and are as at be by do does for from how in is it of on or that the to what when where "
                  "which who why with".split())


def _content_words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower())) - _STOP


def _supports(source: dict[str, Any], keywords: list[str], expected: set[str]) -> bool:
    text = source.get("text", "").lower()
    if keywords:
        return all(k.lower() in text for k in keywords)
    return Path(source["source"]).name in expected


def demo_store(embeddings: str = "minilm-l6") -> str:
    """The bundled demo notes indexed once under ``$LLMAPP_HOME/eval/demo-store`` (incremental after)."""
    from chains.index import build_index
    from llmapp import load_embeddings
    from llmapp.core.paths import home
    from llmapp.corpora import GENAI_NOTES as DEMO_DATA

    store = home() / "eval" / f"demo-store-{embeddings.replace('/', '_')}"
    build_index([DEMO_DATA], store, embeddings=load_embeddings(embeddings))
    log.info("demo store: %s", store)
    return str(store)
