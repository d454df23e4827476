"""Benchmark: summarizing the first 100 KB of Tiny Shakespeare, per strategy, window-safe.

For each strategy it reports the wall time (the document's embedding for the guard included), the
model calls, the tokens processed (prompts + replies), the largest prompt beside the room the
window leaves (context window minus ``max_tokens``), and the speed-up over the 17.6 minutes the
same 100 KB took on the transformers backend before (map-reduce, 2,048-token chunks, issue #17).
Every prompt is counted by a LangChain callback with the model's own tokenizer, independently of
the chain's budgeting. The step cache is off, so nothing is reused between strategies.

    llmapp bench summarize            # auto and map_reduce on 100 KB
    python -m eval.bench_summarize --quick     # auto on 20 KB
"""

from __future__ import annotations

import sys
import time
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler

OLD_100KB_S = 17.6 * 60  # the transformers backend's map-reduce over the same 100 KB, before this bench
MAX_TOKENS = 200  # as llmapp summarize's default


class PromptMeter(BaseCallbackHandler):
    """Counts every prompt the chat model receives, with its own tokenizer and chat template."""

    def __init__(self, chat: Any) -> None:
        self.chat, self.sizes = chat, []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.sizes.append(self.chat.get_num_tokens_from_messages(messages[0]))


def run_one(text: str, chat: Any, embeddings: Any, strategy: str) -> dict[str, Any]:
    """One timed summary of ``text`` with ``strategy``; its figures."""
    from chains.summarize import SummarizeConfig, Summarizer

    meter = PromptMeter(chat)
    run = Summarizer(chat, SummarizeConfig(strategy=strategy), embeddings=embeddings,
                     run_config={"callbacks": [meter]})
    t0 = time.perf_counter()
    summary = "".join(run.run(text))
    wall = time.perf_counter() - t0
    room, largest = chat.context_window - MAX_TOKENS, max(meter.sizes, default=0)  # select sends no prompt
    return {"strategy": run.stats.strategy, "wall_s": round(wall, 1), "steps": run.stats.steps,
            "tokens_processed": run.stats.prompt_tokens + run.stats.output_tokens,
            "max_prompt_tokens": largest, "prompt_room": room, "window_safe": largest <= room,
            "summary_words": len(summary.split()), "ratio_speedup_vs_old_100kb": round(OLD_100KB_S / wall, 1)}


def bench_summarize(quick: bool = False) -> dict:
    """Summarize 100 KB (quick: 20 KB) of Tiny Shakespeare with auto and map_reduce (quick: auto).

    Returns:
        ``chars``, ``text_tokens``, ``backend`` and, per strategy, ``wall_s``, ``steps``,
        ``tokens_processed``, ``max_prompt_tokens``, ``prompt_room``, ``window_safe``,
        ``ratio_speedup_vs_old_100kb``.
    """
    from llmapp import load_chat_model, load_embeddings
    from llmapp.corpora import TINY_SHAKESPEARE
    from llmapp.models import DEFAULT_CHAT

    chars = 20_000 if quick else 100_000
    text = TINY_SHAKESPEARE.read_text(encoding="utf-8")[:chars]
    chat = load_chat_model(DEFAULT_CHAT, max_tokens=MAX_TOKENS).warm()
    embeddings = load_embeddings()
    embeddings.embed_query("warm up")  # load the weights outside the timing, like the chat model's
    out: dict[str, Any] = {"chars": chars, "text_tokens": chat.get_num_tokens(text),
                           "backend": chat.backend_info().get("backend")}
    for strategy in ("auto",) if quick else ("auto", "map_reduce"):
        out[strategy] = run_one(text, chat, embeddings, strategy)
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(bench_summarize(quick="--quick" in sys.argv), indent=1))
