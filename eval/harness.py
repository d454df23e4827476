"""The evaluation harness: run tasks over models and baselines -> results.json, report.md and plots.

Every finished example is appended (and flushed) to ``cache.jsonl`` in the output folder, keyed by
the task, its config, the system and the seed, so a crash loses nothing and a rerun with the same
settings skips what is done; changing a setting re-runs only what it affects. ``results.json``
records the models, configs, package versions, seed, timestamps and git commit, so any number can
be reproduced.

    from eval.harness import evaluate
    results = evaluate(["perplexity", "rag-qa"], models=["smollm2-135m-instruct"], out="runs/demo")

    llmapp eval perplexity rag-qa --model smollm2-135m-instruct --out runs/demo
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from eval.tasks import EvalContext, Task, get_task
from llmapp.core.config import apply_overrides
from llmapp.core.errors import LLMAppError
from llmapp.core.files import write_text

log = logging.getLogger(__name__)

RESULTS_VERSION = 1  # bump when results.json changes shape
CACHE_FILE, RESULTS_FILE, REPORT_FILE = "cache.jsonl", "results.json", "report.md"
PACKAGES = ("llmapp", "torch", "transformers", "sentence-transformers", "langchain-core", "faiss-cpu", "bm25s",
            "rouge-score")


class ExampleCache:
    """Finished examples, one JSON line each, appended and flushed as they finish.

    A line cut short by a crash is skipped (with a warning) on the next load.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[tuple[str, str], dict[str, Any]] = {}
        if path.exists():
            for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                try:
                    row = json.loads(line)
                    self.done[(row["key"], row["id"])] = row["record"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    log.warning("%s:%d: skipping a damaged cache line (an interrupted write)", path, lineno)

    def get(self, key: str, example_id: str) -> dict[str, Any] | None:
        return self.done.get((key, example_id))

    def add(self, key: str, example_id: str, record: dict[str, Any], **info: Any) -> None:
        line = json.dumps({"key": key, "id": example_id, **info, "record": record}, default=str)
        with self.path.open("a+", encoding="utf-8") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:  # a crash may have left a partial last line: start a fresh one
                f.seek(f.tell() - 1)
                if f.read(1) != "\n":
                    f.write("\n")
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done[(key, example_id)] = record


def build_task(name: str, ctx: EvalContext, data: str | None = None, overrides: list[str] | None = None) -> Task:
    """Instantiate task ``name`` with its config: defaults, then ``data``, then ``key=value`` overrides."""
    cls = get_task(name)
    config = cls.config_class()
    try:
        if data:
            config = apply_overrides(config, {"data": data})
        config = apply_overrides(config, overrides or [])
    except ValueError as exc:
        raise LLMAppError(f"{name}: {exc}") from None
    return cls(config, ctx)


def evaluate(tasks: list[str], out: str | Path, models: list[str] | None = None, *, store: str | None = None,
             data: dict[str, str] | None = None, overrides: list[str] | None = None, seed: int = 0,
             limit: int | None = None, embeddings: str = "minilm-l6", progress: bool = True) -> dict[str, Any]:
    """Run ``tasks`` over ``models`` (and each task's baselines); write results, report and plots to ``out``.

    Args:
        tasks: task names (``eval.tasks.TASKS``).
        out: the output folder; reusing it resumes from its cache.
        models: chat / causal LMs under test (registry names, HF directories, .gguf files).
        store: a store folder for rag-qa; default: the demo notes, indexed once.
        data: task name -> dataset path, replacing the task's bundled data.
        overrides: ``task.key=value`` settings (e.g. ``rag-qa.retrieval=bm25``).
        seed: seeds sampling and the random baselines.
        limit: evaluate only the first N examples of each task.
        embeddings: the embeddings model for retrieval and the demo store.
        progress: show a progress bar per task and system on stderr.

    Returns:
        The results dict, as written to ``results.json``.
    """
    if not tasks:
        raise LLMAppError("no task given; use one or more of: " + ", ".join(_task_names()))
    for name in list(data or {}) + [o.split(".", 1)[0] for o in overrides or []]:
        get_task(name)  # an unknown task in --data / --set is an error, not silence
    ctx = EvalContext(models=list(models or []), store=store, embeddings=embeddings, seed=seed, limit=limit)
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    cache = ExampleCache(out / CACHE_FILE)
    results: dict[str, Any] = {
        "version": RESULTS_VERSION, "models": ctx.models, "seed": seed, "limit": limit, "store": store,
        "embeddings": embeddings, "started": _now(), "git_commit": _git_commit(), "packages": _versions(),
        "python": platform.python_version(), "platform": platform.platform(), "backends": _backends(ctx.models),
        "tasks": {},
    }
    by_task = {}
    for o in overrides or []:
        name, _, setting = o.partition(".")
        if not setting or "=" not in setting:
            raise LLMAppError(f"bad --set {o!r}; write TASK.KEY=VALUE, e.g. rag-qa.retrieval=bm25")
        by_task.setdefault(name, []).append(setting)
    for name in dict.fromkeys(tasks):
        task = build_task(name, ctx, (data or {}).get(name), by_task.get(name))
        results["tasks"][name] = _run_task(task, cache, progress)
    results["finished"] = _now()
    write_outputs(results, out)
    return results


def _backends(models: list[str]) -> dict[str, Any]:
    """What runs each model under test (backend, version, threads), so any number can be reproduced."""
    from eval.tasks.base import chat_model

    out: dict[str, Any] = {}
    for spec in models:
        try:
            out[spec] = chat_model(spec).backend_info()
        except Exception as exc:  # noqa: BLE001 - a checkpoint the chat backends cannot run (perplexity-only)
            out[spec] = {"backend": None, "note": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    return out


def _run_task(task: Task, cache: ExampleCache, progress: bool) -> dict[str, Any]:
    from tqdm import tqdm

    t0 = time.perf_counter()
    examples = task.examples()
    systems = task.systems()
    config = dataclasses.asdict(task.config)
    entry: dict[str, Any] = {"description": task.description, "config": config, "examples": len(examples),
                             "metrics": task.metrics, "plot_metrics": task.plot_metrics, "systems": {}}
    for system in systems:
        key = _fingerprint(task.name, config, dataclasses.asdict(system), task.ctx.seed)
        records, fresh = [], 0
        bar = tqdm(examples, desc=f"{task.name} · {system.name}", unit="ex", disable=not progress,
                   file=sys.stderr, leave=False)
        for example in bar:
            record = cache.get(key, example["id"])
            if record is None:
                record = task.run(system, example)
                cache.add(key, example["id"], record, task=task.name, system=system.name)
                fresh += 1
            records.append(record)
        log.info("%s / %s: %d examples (%d from cache)", task.name, system.name, len(records), len(records) - fresh)
        entry["systems"][system.name] = {"kind": system.kind, "spec": system.spec, "n": len(records),
                                         "metrics": task.aggregate(records), "samples": task.samples(records)}
    entry["seconds"] = round(time.perf_counter() - t0, 2)
    return entry


def write_outputs(results: dict[str, Any], out: Path) -> None:
    """Write results.json, report.md and one PNG per task into ``out`` (each atomically)."""
    from eval.report import plot_task, render_markdown

    for name, entry in results["tasks"].items():
        png = out / f"{name}.png"
        if entry["plot_metrics"]:
            plot_task(name, entry, png)
            entry["plot"] = png.name
    write_text(out / RESULTS_FILE, json.dumps(results, indent=2, default=str))
    write_text(out / REPORT_FILE, render_markdown(results))


def _fingerprint(task: str, config: dict, system: dict, seed: int) -> str:
    blob = json.dumps({"task": task, "config": config, "system": system, "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _task_names() -> list[str]:
    from eval.tasks import TASKS

    return list(TASKS)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _git_commit() -> str | None:
    """The commit of the checkout llmapp runs from, if it is one (with '+dirty' for local changes)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("+dirty" if dirty else "")) or None
