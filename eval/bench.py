"""The benchmark registry and runner: every performance benchmark -> one JSON and one Markdown table.

Each benchmark is a function ``bench_<name>(quick: bool = False) -> dict`` of measured figures;
ratios (streaming vs raw generate, 50 streams vs one, cached vs cold load ...) are measured side by
side inside one run, so machine load hits both sides alike. A benchmark whose module is missing
or that raises gets a "not available" / "error" row instead of stopping the others.

    llmapp bench                      # everything, full size
    llmapp bench generate startup --quick --out bench.json
    python -m eval.bench --quick
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmapp.core.errors import LLMAppError
from llmapp.core.files import write_text

log = logging.getLogger(__name__)

BENCH_VERSION = 1  # bump when the JSON changes shape

# name -> "module:function"; imported only when that benchmark runs (they pull in torch, servers ...)
BENCHES: dict[str, str | Callable[..., dict]] = {
    "generate": "eval.bench_generate:bench_generate",
    "rag": "eval.bench_rag:bench_rag",
    "train": "eval.bench_train:bench_train",
    "serve": "eval.bench_serve:bench_serve",
    "load": "eval.bench:bench_load",
    "startup": "eval.bench:bench_startup",
    "summarize": "eval.bench_summarize:bench_summarize",
}


class NotAvailable(Exception):
    """The benchmark's module is not there (its issue has not landed, or an extra is not installed)."""


def resolve(name: str) -> Callable[..., dict]:
    """The benchmark function registered as ``name``.

    Raises:
        LLMAppError: an unknown name (listing the valid ones).
        NotAvailable: its module cannot be imported.
    """
    target = BENCHES.get(name)
    if target is None:
        raise LLMAppError(f"unknown benchmark {name!r}; use one of: {', '.join(BENCHES)}")
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):  # the benchmark itself is missing, not one of its imports
            raise NotAvailable(f"{module} is not installed") from None
        raise NotAvailable(f"{module} needs {exc.name}: {exc}") from None
    except AttributeError:
        raise NotAvailable(f"{module} has no {attr}()") from None


def run_benchmarks(names: list[str] | None = None, quick: bool = False,
                   on_start: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run benchmarks one after another, each isolated from the others' failures.

    Args:
        names: which ones (default: all, in registry order).
        quick: each benchmark's small, fast variant.
        on_start: called with each name as it starts (the CLI prints progress with it).

    Returns:
        ``{"version", "quick", "started", "finished", "machine", "benchmarks": {name: {"status",
        "seconds", "figures" | "error"}}}``; status is ``ok``, ``not available`` or ``error``.
    """
    names = list(names or BENCHES)
    for name in names:
        if name not in BENCHES:
            raise LLMAppError(f"unknown benchmark {name!r}; use one of: {', '.join(BENCHES)}")
    out: dict[str, Any] = {"version": BENCH_VERSION, "quick": quick, "started": _now(), "machine": _machine(),
                           "benchmarks": {}}
    for name in names:
        if on_start:
            on_start(name)
        t0 = time.perf_counter()
        try:
            figures = resolve(name)(quick=quick)
            row: dict[str, Any] = {"status": "ok", "figures": figures}
        except NotAvailable as exc:
            row = {"status": "not available", "error": str(exc)}
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others' numbers
            log.warning("benchmark %s failed: %s", name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            row = {"status": "error", "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        row["seconds"] = round(time.perf_counter() - t0, 2)
        out["benchmarks"][name] = row
    out["finished"] = _now()
    return out


def markdown_table(results: dict[str, Any]) -> str:
    """One Markdown table: a row per figure, grouped by benchmark; ratios marked with ⇄."""
    lines = [f"# llmapp bench{' (quick)' if results.get('quick') else ''}", "",
             f"{results['machine'].get('cpu', '')} · {results['machine'].get('cores')} cores · "
             f"torch {results['machine'].get('torch')} · {results['started']}", "",
             "| benchmark | figure | value |", "|---|---|---:|"]
    for name, row in results["benchmarks"].items():
        if row["status"] != "ok":
            lines.append(f"| {name} | {row['status']} | {row.get('error', '')} |")
            continue
        for key, value in _flatten(row["figures"]).items():
            mark = " ⇄" if "ratio" in key else ""
            lines.append(f"| {name} | {key}{mark} | {_cell(value)} |")
        lines.append(f"| {name} | (bench wall time, s) | {row['seconds']} |")
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], path: str | Path) -> tuple[Path, Path]:
    """Write the JSON to ``path`` and the Markdown table beside it (same stem, ``.md``), atomically."""
    path = Path(path).expanduser()
    md = path.with_suffix(".md")
    write_text(path, json.dumps(results, indent=2, default=str))
    write_text(md, markdown_table(results))
    return path, md


# ---------------------------------------------------------------------------------------------- built-ins

_LOAD_SNIPPET = """
import json, time, sys
t0 = time.perf_counter()
import torch, transformers, sentence_transformers
t1 = time.perf_counter()
from llmapp.models import {loader}
{loader}({arg!r})
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1}}))
"""


def bench_load(quick: bool = False) -> dict:
    """Model load times, each in a fresh interpreter: SmolLM2 from the on-disk cache, MiniLM, and
    (full run only) the cold GGUF -> safetensors conversion into a throwaway cache, side by side.

    Returns:
        ``smollm2_cached_load_s``, ``minilm_load_s``, ``import_s`` and, in a full run,
        ``smollm2_cold_gguf_s`` and ``ratio_cold_vs_cached``.
    """
    from llmapp.models import resolve as resolve_model

    resolve_model("smollm2-135m-instruct")  # the cache exists before timing a cached load
    reps = 1 if quick else 3
    smol = [_fresh(_LOAD_SNIPPET.format(loader="load_causal_lm", arg="smollm2-135m-instruct")) for _ in range(reps)]
    mini = [_fresh(_LOAD_SNIPPET.format(loader="load_sentence_transformer", arg="minilm-l6")) for _ in range(reps)]
    out = {"repetitions": reps,
           "smollm2_cached_load_s": round(statistics.median(r["load_s"] for r in smol), 2),
           "minilm_load_s": round(statistics.median(r["load_s"] for r in mini), 2),
           "import_s": round(statistics.median(r["import_s"] for r in smol + mini), 2)}
    if not quick:
        with tempfile.TemporaryDirectory() as tmp:
            snippet = ("import json, time\nfrom pathlib import Path\nfrom llmapp.models import bundled\n"
                       "t = time.perf_counter()\n"
                       f"bundled.gguf_to_hf_dir(bundled.smollm2_gguf(), cache_root=Path({tmp!r}))\n"
                       "print(json.dumps({'load_s': time.perf_counter() - t}))\n")
            cold = _fresh(snippet)["load_s"]
        out["smollm2_cold_gguf_s"] = round(cold, 2)
        out["ratio_cold_vs_cached"] = round(cold / max(out["smollm2_cached_load_s"], 1e-6), 1)
    return out


def bench_startup(quick: bool = False) -> dict:
    """Wall time of ``llmapp --help`` as a subprocess, beside a bare ``python -c pass`` (the floor).

    Returns:
        median / min / max seconds for ``llmapp --help`` and the interpreter alone, and their ratio.
    """
    reps = 3 if quick else 10
    script = Path(sys.executable).parent / "llmapp"  # the console script a user runs
    llmapp = ([str(script), "--help"] if script.exists() else
              [sys.executable, "-c", "import sys; from llmapp.cli import main; sys.argv=['llmapp','--help']; main()"])
    bare = [sys.executable, "-c", "pass"]
    times: dict[str, list[float]] = {"help": [], "python": []}
    for _ in range(reps):  # interleaved, so a busy moment slows both alike
        for key, cmd in (("help", llmapp), ("python", bare)):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"repetitions": reps, "help_median_s": round(med["help"], 3), "help_min_s": round(min(times["help"]), 3),
            "help_max_s": round(max(times["help"]), 3), "python_bare_median_s": round(med["python"], 3),
            "ratio_help_vs_bare_python": round(med["help"] / med["python"], 2)}


def _fresh(snippet: str) -> dict:
    """Run ``snippet`` in a new interpreter and parse the JSON on its last output line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["subprocess failed"])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _flatten(figures: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in figures.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def _machine() -> dict[str, Any]:
    import platform

    info: dict[str, Any] = {"python": platform.python_version(), "cores": os.cpu_count(), "cpu": platform.processor()}
    try:  # platform.processor() is empty on most Linux systems; /proc/cpuinfo names the CPU
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        info["cpu"] = names[0] if names else info["cpu"]
    except OSError:
        pass
    try:
        from importlib.metadata import version

        info["torch"] = version("torch")
    except Exception:  # noqa: BLE001 - the table is still useful without it
        info["torch"] = None
    return info


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


if __name__ == "__main__":
    res = run_benchmarks([a for a in sys.argv[1:] if not a.startswith("-")] or None, quick="--quick" in sys.argv)
    print(markdown_table(res))
