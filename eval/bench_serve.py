"""Benchmark: the OpenAI-compatible server under 50 concurrent streaming requests, on loopback.

One run, one process: a real uvicorn server (``llmapp.server.running``) on an ephemeral 127.0.0.1
port, driven by the official ``openai`` client. First one stream alone (the single-stream tokens/s),
then 50 streams at once: requests/s, p50/p95 latency, p50/p95 time to first token and aggregate
tokens/s, side by side with the single-stream figure (``ratio_aggregate_vs_single``). ``sweep=True``
(``--sweep``) repeats the burst with 1 and 4 workers, which is how the default of 2 was chosen.

``four_streams`` compares backends under 4 concurrent streams of 64 tokens: llama.cpp with 4
workers (its continuous batching decodes them together) against transformers with its 2 workers,
the server as it was before the llama.cpp backend (``ratio_llamacpp_vs_hf``; target ≥ 3).

    llmapp bench serve
    python -m eval.bench_serve --quick --sweep
    python -c "from eval.bench_serve import bench_serve; print(bench_serve(quick=True))"
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

PROMPT = "Write a long, detailed story about a dragon who learns to bake bread."
MODEL = "smollm2-135m-instruct"


def bench_serve(quick: bool = False, requests: int = 50, workers: int | None = None, sweep: bool = False) -> dict:
    """Measure throughput and latency of ``llmapp serve`` under a burst of concurrent streams.

    Args:
        quick: 8 new tokens per request instead of 32.
        requests: concurrent streaming requests in the burst.
        workers: worker-pool size of the headline run; default: ``ServeConfig``'s.
        sweep: also run the burst on servers with 1 and 4 workers.

    Returns:
        A flat dict of figures; ``aggregate_tok_s`` / ``single_stream_tok_s`` is the headline ratio.
    """
    from llmapp.backends import load_chat_model
    from llmapp.server import ServeConfig

    tokens = 8 if quick else 32
    workers = workers or ServeConfig.workers
    result: dict = {"model": MODEL, "requests": requests, "max_tokens": tokens,
                    "backend": load_chat_model(MODEL).backend_info()}
    result.update(_run(workers, requests, tokens, with_single=True))
    four = {name: _run(w, 4, 16 if quick else 64, with_single=False, backend=name)["aggregate_tok_s"]
            for name, w in (("llamacpp", 4), ("hf", 2))}
    result["four_streams"] = {"llamacpp_4_workers_tok_s": four["llamacpp"], "hf_2_workers_tok_s": four["hf"],
                              "ratio_llamacpp_vs_hf": round(four["llamacpp"] / four["hf"], 2)}
    if sweep:
        for other in (1, 4):
            if other != workers:
                run = _run(other, requests, tokens, with_single=False)
                result[f"workers{other}_aggregate_tok_s"] = run["aggregate_tok_s"]
                result[f"workers{other}_p95_latency_s"] = run["p95_latency_s"]
    return result


def _run(workers: int, requests: int, tokens: int, with_single: bool, backend: str | None = None) -> dict:
    """One server with ``workers`` threads: optionally a lone stream, then the burst."""
    import openai
    from tqdm import tqdm

    from llmapp.server import ServeConfig, create_app, running

    app = create_app(ServeConfig(models=[MODEL], workers=workers, queue_size=max(64, requests), backend=backend))
    with running(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
        _stream(client, tokens)  # warm the connection pool and the model's kernels
        out: dict = {"workers": workers}
        if with_single:
            singles = [_stream(client, tokens) for _ in range(2)]
            single_tps = statistics.median(s["tokens"] / s["latency"] for s in singles)
            out.update(single_stream_tok_s=round(single_tps, 2),
                       single_stream_ttft_s=round(statistics.median(s["ttft"] for s in singles), 3))
        t0 = time.perf_counter()
        runs, failed = [], 0
        with ThreadPoolExecutor(requests) as pool:
            futures = [pool.submit(_stream, client, tokens) for _ in range(requests)]
            for future in tqdm(as_completed(futures), total=requests, desc=f"{requests} streams, {workers} workers",
                               leave=False, file=sys.stderr):
                try:
                    runs.append(future.result())
                except Exception:  # noqa: BLE001 - counted: the benchmark reports lost requests
                    failed += 1
        wall = time.perf_counter() - t0
    latency = sorted(r["latency"] for r in runs) or [float("nan")]
    ttft = sorted(r["ttft"] for r in runs) or [float("nan")]
    total = sum(r["tokens"] for r in runs)
    out.update(completed=len(runs), failed=failed, wall_s=round(wall, 2),
               requests_per_s=round(len(runs) / wall, 3), aggregate_tok_s=round(total / wall, 2),
               p50_latency_s=round(_pct(latency, 50), 3), p95_latency_s=round(_pct(latency, 95), 3),
               p50_ttft_s=round(_pct(ttft, 50), 3), p95_ttft_s=round(_pct(ttft, 95), 3))
    if with_single:
        out["ratio_aggregate_vs_single"] = round(out["aggregate_tok_s"] / out["single_stream_tok_s"], 3)
    return out


def _stream(client, tokens: int) -> dict:
    """One streaming chat request: latency, time to first content token, completion tokens."""
    t0 = time.perf_counter()
    first, usage = None, None
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}],
                                            max_tokens=tokens, stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - t0
        usage = chunk.usage or usage
    latency = time.perf_counter() - t0
    return {"latency": latency, "ttft": first if first is not None else latency,
            "tokens": usage.completion_tokens if usage else 0}


def _pct(sorted_values: list[float], q: float) -> float:
    """The q-th percentile by nearest rank."""
    index = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


if __name__ == "__main__":
    print(json.dumps(bench_serve(quick="--quick" in sys.argv, sweep="--sweep" in sys.argv), indent=2))
