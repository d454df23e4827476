"""The ``summarization`` task: ROUGE, faithfulness and coverage of summaries, per strategy and length bucket.

Dataset: JSONL with ``document`` and ``summary`` (the reference), and optionally ``key_sentences``
(verbatim sentences a summary should cover), ``bucket`` (paragraph / note / chapter / long) and
``split`` (dev / test): ``eval/data/summarization.jsonl`` by default (52 documents, see its README).
Metrics, each a mean over documents:

- ROUGE-1/2/L F-measure against the reference (Google's ``rouge-score``, Porter stemming);
- faithfulness: the share of summary sentences that some source passage supports
  (``chains.grounding``: cosine to the nearest 1-2-sentence window >= the threshold chosen on the
  dev hand labels, and no name, number or link the source lacks; ``python -m eval.faithfulness``);
- coverage: the share of the key sentences that some 1-2-sentence window of the summary supports,
  by the same criterion read the other way;
- cost: wall seconds, tokens processed (prompts + replies), model calls, and whether every prompt
  fit the window.

Systems: each ``--model`` with each strategy in ``strategies`` (``"auto"`` by default; the strategy
auto chose is recorded per document), then the baselines: lead-3, random-3, the extractive MiniLM
centroid (3 sentences) and the reference summary itself (the ceiling of faithfulness and coverage).
``python -m eval.summary_report runs/sum/results.json`` adds the table per length bucket and its plot.

    llmapp eval summarization -m smollm2-135m-instruct --set summarization.split=dev --out runs/sum-dev
    llmapp eval summarization -m smollm2-135m-instruct --set summarization.strategies=stuff,map_reduce,refine,extract \\
        --set summarization.split=test --out runs/sum-test
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from chains.grounding import SUPPORT_THRESHOLD
from eval.baselines import centroid_summary, lead, random_sentences
from eval.metrics import coverage, faithfulness, mean, rouge
from eval.tasks.base import (
    DATA,
    System,
    Task,
    chat_model,
    limited,
    model_systems,
    read_jsonl,
    sentences,
)
from llmapp.core.config import apply_overrides
from llmapp.core.errors import LLMAppError, PromptTooLong

BUCKETS = ("paragraph", "note", "chapter", "long")
_QUALITY = ("rouge1", "rouge2", "rougeL", "faithfulness", "coverage", "rougeL_unguarded", "faithfulness_unguarded",
            "coverage_unguarded")
_COST = ("seconds", "tokens", "steps", "words")


@dataclass
class SummarizationConfig:
    data: str = ""  # JSONL of {document, summary[, key_sentences, bucket, split]}; "": eval/data/summarization.jsonl
    split: str = ""  # "dev" (tune), "test" (report) or "" for every document
    buckets: str = ""  # comma-separated length buckets to keep ("" = all): quick looks at the short ones
    strategies: str = "auto"  # comma-separated strategies run per model (chains.summarize.STRATEGIES)
    max_tokens: int = 200  # longest reply; long-document references run to ~180 words (~240 tokens)
    chunk_tokens: int = 1024  # text tokens per map / refine step (SummarizeConfig.chunk_tokens)
    guard: str = "drop"  # the hallucination guard of the model systems: drop, flag or off
    repetition_penalty: float = 1.0  # 1 = off: a penalty over the whole context also discourages copying the
    # source's own words, names and numbers
    threshold: float = SUPPORT_THRESHOLD  # support cosine for faithfulness, coverage and the guard
    options: str = ""  # more SummarizeConfig settings for the model systems, "key=value;key=value" (tuning)
    lead_k: int = 3  # sentences in the lead-k, random-k and centroid baselines (lead-3 is the standard)


class SummarizationTask(Task):
    name = "summarization"
    description = "ROUGE, faithfulness and coverage per strategy, with lead-3, random-3, centroid baselines"
    config_class = SummarizationConfig
    metrics: ClassVar[dict[str, str]] = {"rouge1": "higher", "rouge2": "higher", "rougeL": "higher",
                                         "faithfulness": "higher", "coverage": "higher", "seconds": "lower",
                                         "tokens": "lower", "steps": "", "words": "", "window_ok": "higher",
                                         "faithfulness_unguarded": "higher", "rougeL_unguarded": "higher"}
    plot_metrics: ClassVar[list[str]] = ["rougeL", "faithfulness", "coverage", "seconds"]

    def examples(self) -> list[dict[str, Any]]:
        rows = read_jsonl(self.config.data or DATA / "summarization.jsonl", {"document": str, "summary": str})
        if self.config.split:
            if self.config.split not in ("dev", "test"):
                raise LLMAppError(f"summarization: split must be dev, test or empty, not {self.config.split!r}")
            rows = [r for r in rows if r.get("split") == self.config.split]
        if self.config.buckets:
            keep = {b.strip() for b in self.config.buckets.split(",")}
            rows = [r for r in rows if r.get("bucket") in keep]
        if not rows:
            raise LLMAppError("summarization: no document matches the split / buckets given; check --set values")
        return limited(rows, self.ctx)

    def systems(self) -> list[System]:
        from chains.summarize import STRATEGIES

        strategies = [s.strip() for s in self.config.strategies.split(",") if s.strip()]
        for s in strategies:
            if s not in STRATEGIES:
                raise LLMAppError(f"summarization: unknown strategy {s!r}; use one of: {', '.join(STRATEGIES)}")
        models = [System(f"{m.name} · {s}", "model", f"{m.spec}|{s}") for m in model_systems(self.ctx)
                  for s in strategies]
        k = self.config.lead_k
        return models + [System(f"lead-{k}", "baseline", "lead"), System(f"random-{k}", "baseline", "random"),
                         System(f"centroid-{k}", "baseline", "centroid"),
                         System("reference", "baseline", "reference")]

    def setup(self) -> None:
        if not hasattr(self, "embeddings"):
            from llmapp import load_embeddings

            self.embeddings = load_embeddings(self.ctx.embeddings)
            self._groundings: dict[str, Any] = {}
            self._embed_seconds: dict[str, float] = {}  # what preparing each document cost, once

    def grounding(self, example: dict[str, Any]) -> Any:
        """The document prepared once for every system that is scored on it (kept: the harness runs each
        system over every document in turn; vectors of all 52 documents take about 60 MB)."""
        import numpy as np

        from chains.grounding import Grounding, encode
        from llmapp.core.files import write_bytes

        self.setup()
        if example["id"] not in self._groundings:
            t0 = time.perf_counter()
            g = Grounding(example["document"], None, self.config.threshold)
            path = self._vector_file(example["document"])
            vectors = np.load(path, allow_pickle=False) if path.exists() else None
            if vectors is None or len(vectors) != len(g.passages):
                vectors = encode(self.embeddings, g.passages)
                buf = io.BytesIO()
                np.save(buf, vectors, allow_pickle=False)
                write_bytes(path, buf.getvalue())
                self._embed_seconds[example["id"]] = time.perf_counter() - t0
            g = Grounding(example["document"], self.embeddings, self.config.threshold, vectors=vectors)
            self._groundings[example["id"]] = g
            if example["id"] not in self._embed_seconds:
                self._embed_seconds[example["id"]] = self._embed_cost(g)
        return self._groundings[example["id"]]

    def _vector_file(self, document: str) -> Any:
        """Where a document's passage vectors are kept between runs (.npy, no pickle)."""
        from llmapp.core.paths import home

        key = hashlib.sha256(f"{self.ctx.embeddings}\n{document}".encode()).hexdigest()[:24]
        return home() / "eval" / "summarization-vectors" / f"{key}.npy"

    def _embed_cost(self, g: Any) -> float:
        """Seconds to embed a document's passages, measured afresh when its vectors came from disk,
        on its first 64 passages and scaled, so cached and fresh runs charge the same cost."""
        from chains.grounding import encode

        sample = g.passages[:64]
        t0 = time.perf_counter()
        encode(self.embeddings, sample)
        return (time.perf_counter() - t0) * len(g.passages) / max(1, len(sample))

    def run(self, system: System, example: dict[str, Any]) -> dict[str, Any]:
        doc = example["document"]
        cost: dict[str, Any] = {"seconds": 0.0, "tokens": 0, "steps": 0, "window_ok": None, "strategy": system.spec}
        t0 = time.perf_counter()
        if system.spec == "lead":
            summary = lead(sentences(doc), self.config.lead_k)
        elif system.spec == "random":
            summary = random_sentences(sentences(doc), self.config.lead_k, f"{self.ctx.seed}:{example['id']}")
        elif system.spec == "centroid":
            g = self.grounding(example)
            t0 = time.perf_counter()  # the shared embedding of the document is not this baseline's cost
            summary = centroid_summary(g.sentences, g.sentence_vectors(), self.config.lead_k)
        elif system.spec == "reference":
            summary = example["summary"]
        else:
            summary, cost = self.summarize(system, example)
            if "skipped" in cost:
                return {"bucket": example.get("bucket", ""), "summary": "", "strategy": system.spec, **cost}
        if system.kind == "baseline":
            cost["seconds"] = time.perf_counter() - t0
        return {"bucket": example.get("bucket", ""), "summary": summary, "words": len(summary.split()),
                **rouge(summary, example["summary"]), **self.judge(summary, example), **cost}

    def summarize(self, system: System, example: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """One model summary with the strategy in ``system.spec`` (``model|strategy``), and its cost.

        The document is embedded once for all systems (the guard, extraction and the judge share it);
        each model system is charged that embedding time on top of its own run, as a user pays it.
        A strategy that cannot run on the document (``stuff`` on a text over the window) scores n/a.
        """
        from chains.summarize import SummarizeConfig, Summarizer
        self.setup()
        model, _, strategy = system.spec.rpartition("|")
        chat = chat_model(model, max_tokens=self.config.max_tokens, seed=self.ctx.seed,
                          repetition_penalty=self.config.repetition_penalty)
        config = SummarizeConfig(strategy=strategy, chunk_tokens=self.config.chunk_tokens, guard=self.config.guard,
                                 support_threshold=self.config.threshold)
        try:
            config = apply_overrides(config, [p for p in self.config.options.split(";") if p.strip()])
        except ValueError as exc:
            raise LLMAppError(f"summarization.options: {exc}") from None
        grounding = self.grounding(example)
        run = Summarizer(chat, config, embeddings=self.embeddings, grounding=grounding)
        try:
            summary = "".join(run.run(example["document"])).strip()
        except PromptTooLong as exc:
            return "", {"skipped": str(exc)}
        st = run.stats
        unguarded = {}
        if config.guard != "off":  # what the model wrote before the guard: the guard's effect, at no extra cost
            raw = self.judge(st.raw, example)
            unguarded = {"rougeL_unguarded": rouge(st.raw, example["summary"])["rougeL"],
                         "faithfulness_unguarded": raw["faithfulness"], "coverage_unguarded": raw["coverage"]}
        return summary, {**unguarded, "seconds": st.seconds + self._embed_seconds[example["id"]], "tokens": st.prompt_tokens + st.output_tokens, "steps": st.steps,
                         "window_ok": st.max_prompt_tokens <= run.budget.room, "strategy": st.strategy,
                         "dropped": len(st.dropped), "fallback": st.fallback}

    def judge(self, summary: str, example: dict[str, Any]) -> dict[str, Any]:
        """Faithfulness of the summary to the document and its coverage of the key sentences."""
        from chains.grounding import Grounding, split_sentences

        g = self.grounding(example)
        summary_sents = split_sentences(summary, lines=True)
        verdicts = g.check(summary_sents)
        keys = example.get("key_sentences") or []
        covered = None
        if keys and summary_sents:
            view = Grounding(summary, self.embeddings, self.config.threshold)  # the summary as the "source"
            scores = [v.score for v in view.check([" ".join(k.split()) for k in keys])]
            covered = coverage(scores, self.config.threshold)
        elif keys:
            covered = 0.0
        return {"faithfulness": faithfulness([v.supported for v in verdicts]), "coverage": covered,
                "unsupported": [v.sentence for v in verdicts if not v.supported]}

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        row: dict[str, Any] = {m: mean(r.get(m) for r in records) for m in self.metrics if m != "window_ok"}
        row["coverage_unguarded"] = mean(r.get("coverage_unguarded") for r in records)
        row["dropped"] = mean(r.get("dropped") for r in records)
        row["fallback"] = mean(float(r["fallback"]) for r in records if "fallback" in r)
        row["skipped"] = sum("skipped" in r for r in records)
        oks = [r["window_ok"] for r in records if r.get("window_ok") is not None]
        row["window_ok"] = float(all(oks)) if oks else None
        row["by_bucket"] = {b: {m: mean(r.get(m) for r in records if r.get("bucket") == b) for m in _QUALITY + _COST}
                            for b in BUCKETS if any(r.get("bucket") == b for r in records)}
        row["strategies"] = sorted({r.get("strategy", "") for r in records} - {""})
        return row

    def samples(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"bucket": r.get("bucket", ""), "summary": r["summary"]} for r in records[:2]]
