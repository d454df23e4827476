"""Benchmark: streaming generation through the LangChain chat model against raw ``model.generate``.

Side by side in one process, on the same loaded model and the same chat prompt, greedy decoding:
tokens/s of ``ChatLocal.stream`` ÷ tokens/s of ``model.generate`` (target ≥ 0.95), time to first
token, the model's load time from the on-disk cache (measured in a fresh process after ``import
torch, transformers``, whose ~1.5 s is reported apart as ``import_s``; target ≤ 3 s) and peak RSS.

    llmapp bench generate
    python -c "from eval.bench_generate import bench_generate; print(bench_generate(quick=True))"
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

PROMPT = "Write a long, detailed story about a dragon who learns to bake bread."
_LOAD_SNIPPET = """
import json, time
t0 = time.perf_counter()
import torch, transformers
from llmapp.models.hf import load_causal_lm
t1 = time.perf_counter()
load_causal_lm("{model}")
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1}}))
"""


def bench_generate(quick: bool = False, model: str = "smollm2-135m-instruct", new_tokens: int = 128) -> dict:
    """Measure streaming vs raw decode speed, first-token latency, cached load time and peak RSS.

    Args:
        quick: one repetition and 32 tokens instead of three repetitions of ``new_tokens``.
        model: registry name or path of a causal LM.
        new_tokens: tokens generated per run (greedy; the model is not allowed to stop early).

    Returns:
        A dict of figures; ``ratio_stream_vs_raw`` is the headline.
    """
    import torch

    from llmapp.backends.hf import ChatLocal

    load = _load_in_fresh_process(model)
    reps, n = (1, 32) if quick else (3, new_tokens)
    chat = ChatLocal(model=model, max_tokens=n)
    lm = chat.lm
    from langchain_core.messages import HumanMessage

    ids = chat.prompt_ids([HumanMessage(PROMPT)])
    prompt = torch.tensor([ids], device=lm.device)
    # The chat model may stop at EOS; forbid EOS on both sides so each run makes exactly n tokens.
    no_eos = {"min_new_tokens": n}

    def raw() -> tuple[float, float]:
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = lm.model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,
                                    do_sample=False, pad_token_id=lm.pad_token_id, **no_eos)
        return (out.shape[1] - prompt.shape[1]) / (time.perf_counter() - t0), float("nan")

    def streamed() -> tuple[float, float]:
        from llmapp.generation import TextStream

        t0 = time.perf_counter()
        first = None
        stream = TextStream(lm, ids, chat.generation_config())
        stream.extra_generate_kwargs = no_eos
        for _ in stream:
            first = first or time.perf_counter() - t0
        return stream.usage["output_tokens"] / (time.perf_counter() - t0), first

    raw(), streamed()  # warm-up: first calls allocate caches and pick kernels
    raw_tps, stream_tps, ttft = [], [], []
    for _ in range(reps):  # interleaved, so drift in machine load hits both sides alike
        raw_tps.append(raw()[0])
        tps, first = streamed()
        stream_tps.append(tps)
        ttft.append(first)
    raw_med, stream_med = statistics.median(raw_tps), statistics.median(stream_tps)
    return {
        "model": model,
        "new_tokens": n,
        "repetitions": reps,
        "threads": torch.get_num_threads(),
        "raw_generate_tok_s": round(raw_med, 2),
        "stream_tok_s": round(stream_med, 2),
        "ratio_stream_vs_raw": round(stream_med / raw_med, 3),
        "time_to_first_token_s": round(statistics.median(ttft), 3),
        "load_from_cache_s": round(load["load_s"], 2),
        "import_s": round(load["import_s"], 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _load_in_fresh_process(model: str) -> dict:
    """Load time from the on-disk cache in a new interpreter (after one load has built the cache)."""
    from llmapp.models import resolve

    resolve(model)  # builds the GGUF cache if this is the very first run
    out = subprocess.run([sys.executable, "-c", _LOAD_SNIPPET.format(model=model)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(bench_generate(quick="--quick" in sys.argv), indent=2))
