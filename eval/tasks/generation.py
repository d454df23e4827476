"""The ``generation`` task: do replies to open prompts stay varied, or loop?

Each model answers every prompt of the chosen split (greedy by default, or sampled with
``temperature`` and the run's seed) under the decoding settings of each row of ``decoding``.
Reported: distinct-1 and distinct-2 over all of a system's replies, the mean repetition rate (share
of repeated word trigrams in a reply), the most copies of one sentence in any reply, the share of
replies with one sentence 3 or more times ("looped"), and lengths; a few samples go into the report.
Baseline: a word bigram Markov chain fitted on the demo notes.

Rows (``decoding``): ``default`` is :class:`~llmapp.core.config.GenerationConfig` as shipped; ``raw``
is the bare model (no loop guard, repetition penalty 1.0); ``rpX`` is a repetition penalty of X
without the loop guard. Several rows: ``--set generation.decoding=raw,default,rp1.2``.

    llmapp eval generation -m smollm2-135m-instruct --out runs/gen                  # all 64 prompts, defaults
    llmapp eval generation -m smollm2-135m-instruct --set generation.split=dev --set generation.decoding=raw,default,rp1.2 --out runs/gen-dev
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, ClassVar

from eval.baselines import WordMarkov
from eval.metrics import distinct_n, mean, repetition_rate, words
from eval.tasks.base import DATA, System, Task, chat_model, limited, read_jsonl
from llmapp.core.errors import LLMAppError


@dataclass
class GenerationTaskConfig:
    data: str = ""  # JSONL of {prompt}; "": eval/data/generation-prompts.jsonl (64 prompts, four categories)
    split: str = "all"  # "dev" to choose decoding, "test" to report it, "all" for the 64-prompt loop check
    max_tokens: int = 256  # the chat default: loops need room to show (they start after a few sentences)
    temperature: float = 0.0  # 0: greedy, reproducible; > 0 samples with the run's seed
    decoding: str = "default"  # comma-separated rows: default, raw, rp<penalty> (e.g. rp1.2)
    baseline_words: int = 150  # words the Markov baseline emits (about what 256 tokens make)


def decoding_settings(row: str) -> dict[str, Any]:
    """The chat-model settings of one ``decoding`` row.

    Raises:
        LLMAppError: a row that is none of default, raw, rp<number>.
    """
    if row == "default":
        return {}
    if row == "raw":
        return {"stop_loops": False, "repetition_penalty": 1.0}
    if row.startswith("rp"):
        try:
            return {"stop_loops": False, "repetition_penalty": float(row[2:])}
        except ValueError:
            pass
    raise LLMAppError(f"unknown decoding row {row!r}; use default, raw or rp<penalty> such as rp1.2")


class GenerationTask(Task):
    name = "generation"
    description = "open-ended generation: distinct-1/2, repetition rate, most copies of a sentence, length"
    config_class = GenerationTaskConfig
    metrics: ClassVar[dict[str, str]] = {"distinct_1": "higher", "distinct_2": "higher", "repetition_rate": "lower",
                                         "max_sentence_copies": "lower", "looped": "lower", "mean_words": "",
                                         "min_words": "", "max_words": "", "mean_chars": ""}
    plot_metrics: ClassVar[list[str]] = ["distinct_2", "repetition_rate", "max_sentence_copies", "looped", "mean_words"]

    def examples(self) -> list[dict[str, Any]]:
        rows = read_jsonl(self.config.data or DATA / "generation-prompts.jsonl", {"prompt": str})
        if self.config.split not in ("dev", "test", "all"):
            raise LLMAppError(f"split={self.config.split!r}: use one of: dev, test, all")
        if self.config.split != "all":
            rows = [r for r in rows if r.get("split", self.config.split) == self.config.split]
        return limited(rows, self.ctx)

    def systems(self) -> list[System]:
        rows = [r.strip() for r in self.config.decoding.split(",") if r.strip()]
        for row in rows:
            decoding_settings(row)  # an unknown row fails before any work
        out = [System(m if rows == ["default"] else f"{m} · {row}", "model", f"{m}|{row}")
               for m in self.ctx.models for row in rows]
        return out + [System("word bigram (n-gram)", "baseline", "markov")]

    def run(self, system: System, example: dict[str, Any]) -> dict[str, Any]:
        from llmapp.backends.loops import max_copies

        if system.spec == "markov":
            if not hasattr(self, "_markov"):
                from llmapp.corpora import GENAI_NOTES as DEMO_DATA

                notes = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted(DEMO_DATA.glob("*.txt")))
                self._markov = WordMarkov().fit(notes)
            text = self._markov.generate(example["prompt"], self.config.baseline_words,
                                          seed=f"{self.ctx.seed}:{example['id']}")
        else:
            model, _, row = system.spec.rpartition("|")
            chat = chat_model(model, max_tokens=self.config.max_tokens, temperature=self.config.temperature,
                              seed=self.ctx.seed, **decoding_settings(row))
            text = chat.invoke(example["prompt"]).content.strip()
        return {"prompt": example["prompt"], "category": example.get("category"), "text": text,
                "words": len(words(text)), "chars": len(text), "repetition_rate": repetition_rate(text, 3),
                "max_copies": max_copies(text)}

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        texts, lengths = [r["text"] for r in records], [r["words"] for r in records]
        return {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
                "repetition_rate": mean(r["repetition_rate"] for r in records),
                "max_sentence_copies": max(r["max_copies"] for r in records),
                "looped": mean(float(r["max_copies"] >= 3) for r in records),
                "mean_words": statistics.mean(lengths), "min_words": min(lengths), "max_words": max(lengths),
                "mean_chars": mean(r["chars"] for r in records)}

    def samples(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        worst = max(records, key=lambda r: r["max_copies"])  # the loopiest reply, next to a typical one
        return [{"prompt": r["prompt"], "text": r["text"]} for r in (records[0], worst)]
