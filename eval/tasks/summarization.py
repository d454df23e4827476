"""The ``summarization`` task: ROUGE-1/2/L of model summaries against reference summaries.

Dataset: JSONL with ``document`` and ``summary`` (the reference). Models summarize each document
from one instruction prompt, greedy, so reruns agree; ROUGE comes from Google's ``rouge-score``
(F-measure, Porter stemming). Baselines: lead-3 (the first three sentences, a famously strong
baseline) and three random sentences (the floor).

    llmapp eval summarization --model smollm2-135m-instruct --out runs/sum     # eval/data/genai-summaries.jsonl
    llmapp eval summarization --data summarization=my.jsonl --set summarization.max_tokens=128 --out runs/sum
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from eval.baselines import lead, random_sentences
from eval.metrics import mean, rouge
from eval.tasks.base import DATA, System, Task, chat_model, limited, model_systems, read_jsonl, sentences

PROMPT = "Summarize the following text in two or three sentences.\n\n{document}"


@dataclass
class SummarizationConfig:
    data: str = ""  # JSONL of {document, summary}; "": eval/data/genai-summaries.jsonl (demo-notes paragraphs)
    max_tokens: int = 96  # references are 2-3 sentences (~40-60 tokens); room for that and a little more
    lead_k: int = 3  # sentences in the lead-k and random-k baselines (lead-3 is the standard)


class SummarizationTask(Task):
    name = "summarization"
    description = "ROUGE-1/2/L against reference summaries, with lead-3 and random baselines"
    config_class = SummarizationConfig
    metrics: ClassVar[dict[str, str]] = {"rouge1": "higher", "rouge2": "higher", "rougeL": "higher", "words": ""}
    plot_metrics: ClassVar[list[str]] = ["rouge1", "rouge2", "rougeL"]

    def examples(self) -> list[dict[str, Any]]:
        rows = read_jsonl(self.config.data or DATA / "genai-summaries.jsonl", {"document": str, "summary": str})
        return limited(rows, self.ctx)

    def systems(self) -> list[System]:
        k = self.config.lead_k
        return model_systems(self.ctx) + [System(f"lead-{k}", "baseline", "lead"),
                                          System(f"random-{k}", "baseline", "random")]

    def run(self, system: System, example: dict[str, Any]) -> dict[str, Any]:
        doc = example["document"]
        if system.spec == "lead":
            summary = lead(sentences(doc), self.config.lead_k)
        elif system.spec == "random":
            summary = random_sentences(sentences(doc), self.config.lead_k, f"{self.ctx.seed}:{example['id']}")
        else:
            chat = chat_model(system.spec, max_tokens=self.config.max_tokens, truncate=True, seed=self.ctx.seed)
            summary = chat.invoke(PROMPT.format(document=doc)).content.strip()
        return {"summary": summary, "words": len(summary.split()), **rouge(summary, example["summary"])}

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {m: mean(r[m] for r in records) for m in self.metrics}

    def samples(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"summary": r["summary"]} for r in records[:2]]
