"""The ``rag-qa`` task: answer questions from stores with the RAG chain; score answers, citations, abstention.

Dataset: JSONL with ``question``, ``answers`` (reference answers), ``keywords``, ``sources`` (file
names that hold the answer) and ``answerable``, and optionally ``corpus`` (the store to ask: one is
built per corpus, see ``eval/rag_stores.py``) and ``split`` (``dev``/``test``; the ``split`` setting
picks one, ``all`` takes both). The default is ``eval/data/rag-qa.jsonl``, test split.

Per system: token F1, exact match and keyword accuracy (answerable questions), retrieval hit@k,
citation precision (the cited chunks hold every keyword), correct abstention (on unanswerable
questions) and false abstention (on answerable ones), seconds per answer, and how often the
grounding check replaced an answer with a quote.

Systems: each model once per row of the ``grid`` (``eval/rag_grid.py``; no grid: today's
defaults), then the baselines: the plain LangChain pipeline on the same model (``eval/plain_rag.py``),
an extractive BM25 answer (the sentence of the top BM25 chunks sharing most content words with the
question) and a random sentence. Model outputs are cached per prompt and decoding settings in
``OUT/generations.jsonl``, so grid rows that send the same prompt share one generation.

    llmapp eval rag-qa -m smollm2-135m-instruct --out runs/rag                              # test split
    llmapp eval rag-qa -m smollm2-135m-instruct --set rag-qa.split=dev --set rag-qa.grid=ablation --out runs/dev
    llmapp eval rag-qa --store ./store --data rag-qa=eval/data/genai-qa.jsonl --out runs/genai
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from chains.grounding import terms
from eval.metrics import exact_match, keyword_accuracy, mean, token_f1
from eval.tasks.base import DATA, System, Task, chat_model, limited, read_jsonl, sentences
from llmapp.core.config import RAGConfig
from llmapp.core.errors import LLMAppError

log = logging.getLogger(__name__)

_CITE = re.compile(r"\[(\d+)\]")
# Phrases a small model uses to decline; the chain's own abstention is flagged directly.
_REFUSAL = re.compile(r"(could not find|cannot answer|can't answer|don't know|do not know|no information|"
                      r"not mentioned|not provided|does not (say|mention|contain))", re.I)
SPLITS = ("dev", "test", "all")
BASELINE_RAG = RAGConfig(retrieval="bm25", abstain="cosine", min_score=0.25)  # fixed, so tuning never moves it


@dataclass
class RAGQAConfig:
    data: str = ""  # the question set (JSONL); "": eval/data/rag-qa.jsonl (three corpora, dev/test split)
    split: str = "test"  # "dev" for tuning, "test" for the report (never tune on it), "all"
    grid: str = ""  # an ablation grid (eval/grids/NAME.yaml or a file): one row per setting; "": the defaults
    every: int = 1  # every Nth question of the split (in file order, so every corpus stays in): cheap first looks
    k: int | None = None  # these four, when set, apply to every row (RAGConfig's defaults otherwise)
    retrieval: str | None = None  # "vector", "bm25" or "hybrid"
    min_score: float | None = None  # abstention threshold on the chosen signal (None: calibrated)
    max_tokens: int | None = None  # answer budget in tokens (None: RAGConfig.max_tokens)


class RAGQATask(Task):
    name = "rag-qa"
    description = ("RAG answers: keyword accuracy, token F1, hit@k, citation precision, correct/false abstention, "
                   "seconds per answer")
    config_class = RAGQAConfig
    metrics: ClassVar[dict[str, str]] = {
        "keyword_accuracy": "higher", "token_f1": "higher", "exact_match": "higher", "hit@k": "higher",
        "citation_precision": "higher", "abstain_unanswerable": "higher", "abstain_answerable": "lower",
        "seconds_per_answer": "lower", "grounding_fired": "",
    }
    plot_metrics: ClassVar[list[str]] = ["keyword_accuracy", "token_f1", "hit@k", "citation_precision",
                                         "abstain_unanswerable", "abstain_answerable", "seconds_per_answer"]

    def cache_config(self) -> dict[str, Any]:
        """The grid is not part of a row's cache key: each row's own settings are (in its system spec)."""
        return {k: v for k, v in dataclasses.asdict(self.config).items() if k != "grid"}

    def examples(self) -> list[dict[str, Any]]:
        if self.config.split not in SPLITS:
            raise LLMAppError(f"split={self.config.split!r}: use one of: {', '.join(SPLITS)}")
        rows = read_jsonl(self.config.data or DATA / "rag-qa.jsonl",
                          {"question": str, "answers": list, "keywords": list, "sources": list, "answerable": bool})
        if self.config.split != "all" and any("split" in r for r in rows):
            rows = [r for r in rows if r.get("split") == self.config.split]
        return limited(rows[::max(1, self.config.every)], self.ctx)

    def rows(self) -> dict[str, dict[str, Any]]:
        """The grid's rows (name -> settings), with the task's fixed settings under each."""
        from eval.rag_grid import load_grid, resolved

        fixed = {k: v for k in ("k", "retrieval", "min_score", "max_tokens")
                 if (v := getattr(self.config, k)) is not None}
        grid = load_grid(self.config.grid) if self.config.grid else {"defaults": {}}
        return {name: resolved({**fixed, **settings}) for name, settings in grid.items()}

    def systems(self) -> list[System]:
        out = []
        rows = self.rows()
        for model in self.ctx.models:
            for row, settings in rows.items():
                name = model if not self.config.grid else f"{model} · {row}"
                out.append(System(name, "model", json.dumps({"model": model, "settings": settings}, sort_keys=True)))
        for model in self.ctx.models:
            name = "plain langchain" + (f" · {model}" if len(self.ctx.models) > 1 else "")
            out.append(System(name, "baseline", json.dumps({"plain": model})))
        return out + [System("bm25 extractive", "baseline", "bm25-extractive"),
                      System("random sentence", "baseline", "random-sentence")]

    def setup(self) -> None:
        from eval.gen_cache import GenerationCache
        from eval.rag_stores import StoreSet

        if not hasattr(self, "stores"):
            self.stores = StoreSet(self.ctx)
            out = getattr(self.ctx, "out", None)
            self.generations = GenerationCache(Path(out) / "generations.jsonl" if out else None)
            self.chats: dict[str, Any] = {}

    def chat(self, model: str, decoding: dict[str, Any]) -> Any:
        """A cached-output chat model for ``model`` with ``decoding`` (the engine itself is shared)."""
        from eval.gen_cache import CachedChat

        key = json.dumps([model, decoding], sort_keys=True)
        if key not in self.chats:  # NAME@BACKEND runs NAME on another backend (eval.tasks.base.chat_model)
            self.chats[key] = CachedChat(chat_model(model, seed=self.ctx.seed, **decoding), self.generations, model)
        return self.chats[key]

    def run(self, system: System, example: dict[str, Any]) -> dict[str, Any]:
        self.setup()
        t0 = time.perf_counter()
        if system.kind == "model":
            out, chat, rag = self._model(json.loads(system.spec), example)
        elif system.spec.startswith("{"):
            chat = self.chat(json.loads(system.spec)["plain"], _plain_decoding())
            out = self.stores.plain_rag(example.get("corpus")).answer(example["question"], chat)
            rag = None
        else:
            out, chat, rag = self._baseline(system.spec, example), None, BASELINE_RAG
        seconds = time.perf_counter() - t0 + ((chat.seconds - chat.generated) if chat is not None else 0.0)
        record = score_answer(out, example, rag.k if rag else 3)
        record.update(seconds=round(seconds, 4), grounding_fired=out.get("grounding_fired"))
        if rag is not None and system.kind == "model":
            record["signals"] = self._signals(example, rag)
        return record

    def _model(self, spec: dict[str, Any], example: dict[str, Any]) -> tuple[dict[str, Any], Any, RAGConfig]:
        from chains.rag import RAGChain
        from eval.rag_grid import resolve
        from prompts import load_prompt

        rag, template, decoding = resolve(spec["settings"])
        store = self.stores.get(example.get("corpus"), rag)
        chat = self.chat(spec["model"], decoding)
        chain = RAGChain(store, chat, rag, True, load_prompt(template))
        out = chain.invoke(example["question"])
        out["grounding_fired"] = bool(chain.checks.get("grounding_fired"))
        return out, chat, rag

    def _signals(self, example: dict[str, Any], rag: RAGConfig) -> dict[str, float]:
        """Every abstention signal on this row's retrieval, abstention or not: the ROC needs them all."""
        from chains.rag import rank
        from chains.relevance import SIGNALS, relevance

        store = self.stores.get(example.get("corpus"), rag)
        sources = rank(store, example["question"], rag)
        return {name: round(relevance(store, example["question"], sources, name), 4) for name in SIGNALS}

    def _baseline(self, spec: str, example: dict[str, Any]) -> dict[str, Any]:
        from chains.rag import retrieve

        question = example["question"]
        store = self.stores.get(example.get("corpus"), RAGConfig())
        sources = [dataclasses.asdict(s) for s in retrieve(store, question, BASELINE_RAG)]
        if not sources:
            return {"answer": "", "sources": [], "abstained": True}
        if spec == "random-sentence":
            from chains.stores import all_docs

            rng = random.Random(f"{self.ctx.seed}:{example['id']}")
            doc = rng.choice(all_docs(store))
            pool = sentences(doc["text"]) or [doc["text"]]
            src = {"n": 1, "source": doc["source"], "text": doc["text"]}
            return {"answer": rng.choice(pool) + " [1]", "sources": [src], "abstained": False}
        q = terms(question)
        pool = [(s["n"], sent) for s in sources for sent in (sentences(s["text"]) or [s["text"]])]
        n, best = max(pool, key=lambda p: len(q & terms(p[1])))  # ties: the higher-ranked chunk
        return {"answer": f"{best} [{n}]", "sources": sources, "abstained": False}

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        ans = [r for r in records if r["answerable"]]
        una = [r for r in records if not r["answerable"]]
        answered = [r for r in records if not r["abstained"]]
        return {
            "keyword_accuracy": mean(r["keyword_accuracy"] for r in ans),
            "token_f1": mean(r["token_f1"] for r in ans),
            "exact_match": mean(r["exact_match"] for r in ans),
            "hit@k": mean(r["hit"] for r in ans),
            "citation_precision": mean(r["citation_precision"] for r in ans),
            "abstain_unanswerable": mean(float(r["abstained"]) for r in una),
            "abstain_answerable": mean(float(r["abstained"]) for r in ans),
            "seconds_per_answer": mean(r.get("seconds") for r in records),
            "grounding_fired": mean(float(bool(r.get("grounding_fired"))) for r in answered),
        }

    def samples(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"question": r["question"], "answer": r["answer"]} for r in records[:3]]


def _plain_decoding() -> dict[str, Any]:
    from eval.plain_rag import PLAIN_DECODING
    from llmapp.core.config import GENERATION_FIELDS

    raw = {**PLAIN_DECODING, "stop_loops": False}  # the raw model: no loop guard either
    return {k: v for k, v in raw.items() if k in GENERATION_FIELDS}


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
