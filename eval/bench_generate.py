"""Benchmark: decoding speed of the llama.cpp and transformers backends, side by side in one run.

On the same chat prompt, greedy, exactly ``new_tokens`` tokens (end-of-turn suppressed), at the same
thread count for both backends (1 and 2):

- ``llamacpp_vs_hf_ratio``: our llama.cpp stream tok/s ÷ raw ``model.generate`` tok/s (target ≥ 4);
- ``llamacpp_stream_vs_raw_ratio``: our stream ÷ raw ``xllamacpp`` calls (our overhead; target ≥ 0.95);
- ``hf_stream_vs_raw_ratio``: the same for the transformers path (target ≥ 0.95);
- llama.cpp tok/s at 1 and 2 threads with another process busy on one core (``*_loaded``): the
  measurement behind ``threads="auto"``;
- time to first token for a one-line prompt (target ≤ 0.1 s) and the peak RSS of a whole
  ``llmapp generate`` process (target ≤ 350 MB), both on the default backend;
- load times from the caches, each in a fresh process;
- ``schema``: tok/s decoding under a JSON-schema grammar ÷ tok/s free, per backend (target ≥ 0.95;
  :func:`bench_schema`).

    llmapp bench generate
    python -c "from eval.bench_generate import bench_generate; print(bench_generate(quick=True))"
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import subprocess
import sys
import time
from typing import Any

PROMPT = "Write a long, detailed story about a dragon who learns to bake bread."
_LOAD_HF = """
import json, time
t0 = time.perf_counter()
import torch, transformers
from llmapp.models.hf import load_causal_lm
t1 = time.perf_counter()
load_causal_lm("{model}")
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1}}))
"""
_LOAD_LLAMACPP = """
import json, time
t0 = time.perf_counter()
from llmapp.backends import load_chat_model
t1 = time.perf_counter()
load_chat_model("{model}").warm()
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1}}))
"""
_RSS = """
import resource, subprocess, sys
subprocess.run([sys.executable, "-m", "llmapp.cli", "generate", "Write a haiku about autumn.", "--max-tokens", "64"],
               check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""


def bench_generate(quick: bool = False, model: str = "smollm2-135m-instruct", new_tokens: int = 128) -> dict:
    """Measure both backends' decode speed, our overheads, first-token latency, load time and RSS.

    Args:
        quick: one repetition of 32 tokens instead of three of ``new_tokens``.
        model: a registry name or ``.gguf`` with an HF-loadable twin (the bundled SmolLM2).
        new_tokens: tokens generated per run.

    Returns:
        A dict of figures, per thread count under ``threads_1`` and ``threads_2``.
    """
    reps, n = (1, 32) if quick else (3, new_tokens)
    out: dict[str, Any] = {"model": model, "new_tokens": n, "repetitions": reps}
    for threads in (1, 2):
        out[f"threads_{threads}"] = _side_by_side(model, n, reps, threads)
    out["llamacpp_tok_s_loaded"] = {f"threads_{t}": _llamacpp_loaded(model, n, t) for t in (1, 2)}
    out["time_to_first_token_s"] = _ttft(model, reps=3 if quick else 10)
    out["generate_peak_rss_mb"] = round(float(_fresh(_RSS)), 1)
    out["load_llamacpp"] = json.loads(_fresh(_LOAD_LLAMACPP.format(model=model)))
    out["load_hf_from_cache"] = json.loads(_fresh(_LOAD_HF.format(model=model)))
    out["schema"] = bench_schema(quick, model, new_tokens)
    from llmapp.backends import load_chat_model

    out["backend_default"] = load_chat_model(model).backend_info()
    return out


def _side_by_side(model: str, n: int, reps: int, threads: int) -> dict[str, Any]:
    """HF raw and streamed, llama.cpp raw and streamed, interleaved so load drift hits all alike."""
    import torch

    torch.set_num_threads(threads)
    runs = {"hf_raw": _hf_raw(model, n), "hf_stream": _stream(model, n, "hf", threads),
            "llamacpp_raw": _llamacpp_raw(model, n, threads), "llamacpp_stream": _stream(model, n, "llamacpp", threads)}
    for run in runs.values():
        run()  # warm-up: caches, kernels, pages
    tps: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(reps):
        for name, run in runs.items():
            tps[name].append(run())
    med = {k: statistics.median(v) for k, v in tps.items()}
    return {**{f"{k}_tok_s": round(v, 1) for k, v in med.items()},
            "llamacpp_vs_hf_ratio": round(med["llamacpp_stream"] / med["hf_raw"], 2),
            "llamacpp_stream_vs_raw_ratio": round(med["llamacpp_stream"] / med["llamacpp_raw"], 3),
            "hf_stream_vs_raw_ratio": round(med["hf_stream"] / med["hf_raw"], 3)}


def _chat(model: str, backend: str, n: int, threads: int) -> Any:
    from llmapp.backends import load_chat_model

    extra = {"threads": threads, "batch_threads": threads} if backend == "llamacpp" else {}
    # Exactly n tokens every run: the loop guard would end a repetitive reply early and skew tok/s.
    return load_chat_model(model, backend=backend, max_tokens=n, stop_loops=False, **extra)


def _ids(chat: Any) -> list[int]:
    from langchain_core.messages import HumanMessage

    return chat.prompt_ids([HumanMessage(PROMPT)])


def _hf_raw(model: str, n: int) -> Any:
    import torch

    lm = _chat(model, "hf", n, 1).lm
    prompt = torch.tensor([_ids(_chat(model, "hf", n, 1))], device=lm.device)

    def run() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = lm.model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                                    do_sample=False, pad_token_id=lm.pad_token_id)
        return (out.shape[1] - prompt.shape[1]) / (time.perf_counter() - t0)

    return run


def _stream(model: str, n: int, backend: str, threads: int) -> Any:
    from llmapp.backends.engine import TextStream

    chat = _chat(model, backend, n, threads)
    ids, engine, config = _ids(chat), chat.engine, chat.generation_config()
    options = {"min_new_tokens": n} if backend == "hf" else {"ignore_eos": True}

    def run() -> float:
        t0 = time.perf_counter()
        stream = TextStream(engine, ids, config, **options)
        for _ in stream:
            pass
        return stream.usage["output_tokens"] / (time.perf_counter() - t0)

    return run


def bench_schema(quick: bool = False, model: str = "smollm2-135m-instruct", new_tokens: int = 128) -> dict[str, Any]:
    """Decoding speed under a JSON-schema grammar against free decoding, on both local backends.

    Same prompt, greedy, ``new_tokens`` tokens both ways (free: end-of-turn suppressed; constrained:
    a string field whose ``minLength`` outlasts the budget), timed from the call to the last token,
    so the grammar's setup (compiling it, the first mask) is counted. Runs are interleaved.

    The grammar's own cost is also timed apart from the model (``mask_ms_per_token``: llguidance's
    mask and step, replayed over a constrained reply), which a busy machine disturbs far less than
    tok/s; per backend, ``ratio_from_mask_cost`` is what it implies at the measured free speed.

    Returns:
        ``mask_ms_per_token``, and per backend free and constrained tok/s (medians),
        ``schema_vs_free_ratio`` (target ≥ 0.95) and ``ratio_from_mask_cost``.
    """
    from llmapp.backends.engine import TextStream
    from llmapp.backends.grammar import json_grammar

    reps, n = (2, 32) if quick else (5, new_tokens)
    lark = json_grammar({"type": "object", "properties": {"story": {"type": "string", "minLength": 8 * n,
                                                                    "maxLength": 16 * n}},
                         "required": ["story"]}).lark
    mask_ms = _mask_ms(model, lark, n)
    out: dict[str, Any] = {"new_tokens": n, "repetitions": reps, "mask_ms_per_token": round(mask_ms, 3)}
    for backend in ("llamacpp", "hf"):
        chat = _chat(model, backend, n, 1)
        ids, engine, config = _ids(chat), chat.engine, chat.generation_config()
        free = {"min_new_tokens": n} if backend == "hf" else {"ignore_eos": True}

        def run(options: dict[str, Any], engine: Any = engine, ids: list[int] = ids, config: Any = config) -> float:
            t0 = time.perf_counter()
            stream = TextStream(engine, ids, config, **options)
            for _ in stream:
                pass
            assert stream.usage["output_tokens"] == n, stream.usage  # both ways decode the whole budget
            return n / (time.perf_counter() - t0)

        run(free), run({"grammar": lark})  # warm-up: caches, and llguidance's tokenizer for this model
        tps: dict[str, list[float]] = {"free": [], "schema": []}
        for _ in range(reps):
            tps["free"].append(run(free))
            tps["schema"].append(run({"grammar": lark}))
        med = {k: statistics.median(v) for k, v in tps.items()}
        out[backend] = {"free_tok_s": round(med["free"], 1), "schema_tok_s": round(med["schema"], 1),
                        "schema_vs_free_ratio": round(med["schema"] / med["free"], 3),
                        "ratio_from_mask_cost": round(1 / (1 + mask_ms / 1000 * med["free"]), 3)}
    return out


def _mask_ms(model: str, lark: str, n: int) -> float:
    """Milliseconds per token of llguidance's mask and step, replayed over a reply decoded under ``lark``
    (the same for both backends: one vocabulary, one grammar)."""
    import numpy as np
    from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

    from llmapp.backends.constrained import llg_tokenizer, matcher
    from llmapp.backends.engine import TextStream

    chat = _chat(model, "llamacpp", n, 1)
    engine = chat.engine
    text = TextStream(engine, _ids(chat), chat.generation_config(), grammar=lark).text()
    tok = engine.tokenizer.tokenizer  # the tokenizers.Tokenizer behind the llama.cpp engine's ChatTokenizer
    llg = llg_tokenizer(tok.to_str(), (tok.token_to_id("<|im_end|>"),))
    ids = engine.encode(text)
    times = []
    for _ in range(5):
        m, mask = matcher(lark, llg), allocate_token_bitmask(1, llg.vocab_size)
        t0 = time.perf_counter()
        for token in ids:
            fill_next_token_bitmask(m, mask)
            np.unpackbits(mask.view(np.uint8), bitorder="little")  # what the hf processor does with it
            m.consume_token(token)
        times.append((time.perf_counter() - t0) * 1000 / len(ids))
    return statistics.median(times)


def _llamacpp_raw(model: str, n: int, threads: int) -> Any:
    """xllamacpp called directly with the same request, counting chunks: the floor our stream is held to."""
    from llmapp.backends.llamacpp import request_body

    chat = _chat(model, "llamacpp", n, threads)
    engine = chat.engine
    body = request_body(_ids(chat), chat.generation_config(), repeat_last_n=engine.context_window, ignore_eos=True)

    def run() -> float:
        count = [0]

        def on_chunk(chunk: Any) -> bool:
            count[0] += 1
            return False

        t0 = time.perf_counter()
        engine.server.handle_completions(body, on_chunk)
        return (count[0] - 1) / (time.perf_counter() - t0)  # the last chunk only carries usage

    return run


def _busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def _llamacpp_loaded(model: str, n: int, threads: int) -> float:
    """llama.cpp tok/s while another process spins on one core (a busy machine)."""
    run = _stream(model, n, "llamacpp", threads)
    hog = multiprocessing.get_context("spawn").Process(target=_busy, args=(30.0,), daemon=True)
    hog.start()
    try:
        time.sleep(0.3)
        return round(statistics.median(run() for _ in range(3)), 1)
    finally:
        hog.terminate()
        hog.join()


def _ttft(model: str, reps: int) -> float:
    """Seconds from calling ``stream`` on a one-line prompt to its first text, on the default backend."""
    from llmapp.backends import load_chat_model

    chat = load_chat_model(model, max_tokens=8).warm()
    times = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        for chunk in chat.stream("Hello! How are you?"):
            if chunk.content:
                times.append(time.perf_counter() - t0)
                break
    return round(statistics.median(times[1:]), 3)


def _fresh(snippet: str) -> str:
    """Run ``snippet`` in a new interpreter and return the last line it printed."""
    out = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


if __name__ == "__main__":
    print(json.dumps(bench_generate(quick="--quick" in sys.argv), indent=2))
