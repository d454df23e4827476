"""The ``backend-parity`` task: does a model on llama.cpp predict what it predicts on transformers?

The quality gate for running the bundled GGUF on llama.cpp. llama.cpp quantizes activations inside
the Q4 dot products, so greedy text may differ at near-ties; the check is therefore at the level of
the distribution, teacher-forced: for each prompt (the generation prompts, chat-formatted), the
``hf`` backend writes a greedy reply, and at every position of that reply both backends predict
the next token from the very same prefix. Reported per system:

- ``top1_agreement``: share of positions whose top-1 token is the same (the gate: ≥ 0.90);
- ``top5_overlap``: mean share of the reference's top 5 that the system also ranks in its top 5;
- ``first_divergence``: mean position of the first top-1 disagreement (how long greedy text stays the same).

The reference (``NAME@hf``) is a row of its own, at 1.0, so the table reads against it.

    llmapp eval backend-parity --model smollm2-135m-instruct --out runs/parity
    llmapp eval backend-parity --model smollm2-135m-instruct --set backend-parity.reply_tokens=96 --out runs/parity
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, ClassVar

from eval.metrics import mean
from eval.tasks.base import DATA, System, Task, chat_model, limited, read_jsonl, split_spec


@dataclass
class ParityConfig:
    data: str = ""  # JSONL of {prompt}; "": eval/data/generation-prompts.jsonl
    reply_tokens: int = 48  # positions compared per prompt; 48 x 64 prompts is ~3k predictions
    top_k: int = 5  # size of the top sets compared


class ParityTask(Task):
    name = "backend-parity"
    description = "teacher-forced next-token agreement of each backend with the hf reference"
    config_class = ParityConfig
    metrics: ClassVar[dict[str, str]] = {"top1_agreement": "higher", "top5_overlap": "higher",
                                         "first_divergence": "higher", "positions": ""}
    plot_metrics: ClassVar[list[str]] = ["top1_agreement", "top5_overlap"]

    def examples(self) -> list[dict[str, Any]]:
        return limited(read_jsonl(self.config.data or DATA / "generation-prompts.jsonl", {"prompt": str}), self.ctx)

    def systems(self) -> list[System]:
        out = []
        for spec in self.ctx.models:
            name, _ = split_spec(spec)
            out += [System(f"{name}@hf (reference)", "reference", f"{name}@hf"), System(spec, "model", spec)]
        return list(dict.fromkeys(out))

    def run(self, system: System, example: dict[str, Any]) -> dict[str, Any]:
        from langchain_core.messages import HumanMessage

        reference = chat_model(split_spec(system.spec)[0] + "@hf", max_tokens=self.config.reply_tokens)
        prompt = reference.prompt_ids([HumanMessage(example["prompt"])])
        reply = self._reference_reply(reference, prompt, example["id"])
        want = _hf_top(reference, prompt, reply, self.config.top_k)
        if system.kind == "reference":
            got = want
        else:
            chat = chat_model(system.spec)
            got = _engine_top(chat.engine, prompt, reply, self.config.top_k)
        same = [g[0] == w[0] for g, w in zip(got, want, strict=True)]
        return {"prompt": example["prompt"], "positions": len(same), "top1": sum(same),
                "top5": mean(len(set(g) & set(w)) / len(w) for g, w in zip(got, want, strict=True)),
                "first_divergence": same.index(False) if False in same else len(same)}

    def _reference_reply(self, reference: Any, prompt: list[int], key: str) -> list[int]:
        """The hf backend's greedy reply to ``prompt``, as token ids (computed once per example)."""
        cache = self.__dict__.setdefault("_replies", {})
        if key not in cache:
            import torch

            lm = reference.lm
            ids = torch.tensor([prompt], device=lm.device)
            with torch.inference_mode():
                out = lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.config.reply_tokens,
                                        min_new_tokens=self.config.reply_tokens, do_sample=False,
                                        pad_token_id=lm.pad_token_id)
            cache[key] = out[0, len(prompt):].tolist()
        return cache[key]

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        positions = sum(r["positions"] for r in records)
        return {"top1_agreement": sum(r["top1"] for r in records) / positions if positions else None,
                "top5_overlap": mean(r["top5"] for r in records),
                "first_divergence": mean(r["first_divergence"] for r in records), "positions": positions}


def _hf_top(chat: Any, prompt: list[int], reply: list[int], k: int) -> list[list[int]]:
    """The top-``k`` token ids at each reply position, from one forward pass over prompt + reply."""
    import torch

    lm = chat.lm
    ids = torch.tensor([prompt + reply], device=lm.device)
    with torch.inference_mode():
        logits = lm.model(ids).logits[0, len(prompt) - 1:-1]  # (len(reply), vocab): predictions for the reply
    return logits.topk(k, dim=-1).indices.tolist()


def _engine_top(engine: Any, prompt: list[int], reply: list[int], k: int) -> list[list[int]]:
    """The top-``k`` token ids at each reply position, one 1-token request per prefix (the cache makes
    each request cost one token of prefill)."""
    from llmapp.core.config import GenerationConfig

    out = []
    for i in range(len(reply)):
        generation = engine.generate(prompt + reply[:i], GenerationConfig(max_tokens=1), threading.Event(), logprobs=k)
        for _ in generation:
            pass
        top = generation.chunks[0]["content"][0]["top_logprobs"] if generation.chunks else []
        out.append([t["id"] for t in top][:k])
    return out
