"""The ``generation`` task: diversity and length of open-ended generations on a fixed prompt set.

Each model answers every prompt (greedy by default, or sampled with ``temperature`` and the run's
seed). Reported: distinct-1 and distinct-2 over all of a system's outputs, the mean repetition rate
(share of repeated word trigrams in a text: loops show up here) and length statistics; a few
samples go into the report. Baseline: a word bigram Markov chain fitted on the demo notes.

    llmapp eval generation --model smollm2-135m-instruct --out runs/gen       # eval/data/generation-prompts.jsonl
    llmapp eval generation --set generation.temperature=0.8 --set generation.max_tokens=96 --out runs/gen
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, ClassVar

from eval.baselines import WordMarkov
from eval.metrics import distinct_n, mean, repetition_rate, words
from eval.tasks.base import DATA, System, Task, chat_model, limited, model_systems, read_jsonl


@dataclass
class GenerationTaskConfig:
    data: str = ""  # JSONL of {prompt}; "": eval/data/generation-prompts.jsonl (eight everyday prompts)
    max_tokens: int = 64  # long enough for loops and repetition to show, short enough for CPU runs
    temperature: float = 0.0  # 0: greedy, reproducible; > 0 samples with the run's seed
    baseline_words: int = 40  # words the Markov baseline emits (about what 64 tokens make)


class GenerationTask(Task):
    name = "generation"
    description = "open-ended generation: distinct-1/2, repetition rate, length; samples in the report"
    config_class = GenerationTaskConfig
    metrics: ClassVar[dict[str, str]] = {"distinct_1": "higher", "distinct_2": "higher", "repetition_rate": "lower",
                                         "mean_words": "", "min_words": "", "max_words": "", "mean_chars": ""}
    plot_metrics: ClassVar[list[str]] = ["distinct_1", "distinct_2", "repetition_rate", "mean_words"]

    def examples(self) -> list[dict[str, Any]]:
        return limited(read_jsonl(self.config.data or DATA / "generation-prompts.jsonl", {"prompt": str}), self.ctx)

    def systems(self) -> list[System]:
        return model_systems(self.ctx) + [System("word bigram (n-gram)", "baseline", "markov")]

    def run(self, system: System, example: dict[str, Any]) -> dict[str, Any]:
        if system.spec == "markov":
            if not hasattr(self, "_markov"):
                from llmapp.corpora import GENAI_NOTES as DEMO_DATA

                notes = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted(DEMO_DATA.glob("*.txt")))
                self._markov = WordMarkov().fit(notes)
            text = self._markov.generate(example["prompt"], self.config.baseline_words,
                                          seed=f"{self.ctx.seed}:{example['id']}")
        else:
            chat = chat_model(system.spec, max_tokens=self.config.max_tokens,
                                   temperature=self.config.temperature, seed=self.ctx.seed)
            text = chat.invoke(example["prompt"]).content.strip()
        return {"prompt": example["prompt"], "text": text, "words": len(words(text)), "chars": len(text),
                "repetition_rate": repetition_rate(text, 3)}

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        texts, lengths = [r["text"] for r in records], [r["words"] for r in records]
        return {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
                "repetition_rate": mean(r["repetition_rate"] for r in records),
                "mean_words": statistics.mean(lengths), "min_words": min(lengths), "max_words": max(lengths),
                "mean_chars": mean(r["chars"] for r in records)}

    def samples(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"prompt": r["prompt"], "text": r["text"]} for r in records[:3]]
