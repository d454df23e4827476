"""What every evaluation task shares: the Task interface, the systems it compares, and data loading.

A task names its examples (each with a stable ``id``), the systems it compares (the models under
test plus baselines), scores one system on one example (``run``, a JSON-able record) and
aggregates records into a row of the results table. The harness (``eval/harness.py``) does the
rest: caching finished examples, resuming, progress bars, the report and the plots.

    from eval.tasks import get_task
    task = get_task("summarization")(config=None, ctx=EvalContext(models=[]))
    print(len(task.examples()), [s.name for s in task.systems()])
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from llmapp.core.errors import LLMAppError

DATA = Path(__file__).resolve().parent.parent / "data"  # the small datasets shipped with the harness


@dataclass
class EvalContext:
    """What the command line chose, shared by every task in a run."""

    models: list[str] = field(default_factory=list)  # chat / causal LMs under test (registry names or paths)
    store: str | None = None  # a store folder for rag-qa; None: the demo corpus, indexed once
    embeddings: str = "minilm-l6"  # embeddings for retrieval and for indexing the demo store
    seed: int = 0  # seeds sampling and the random baselines, so a rerun gives the same numbers
    limit: int | None = None  # first N examples only: quick looks and tests


@dataclass(frozen=True)
class System:
    """One row of a results table: a model under test, or a baseline that gives its numbers context."""

    name: str
    kind: str  # "model" or "baseline"
    spec: str = ""  # what it is, for the cache key and the report (model path, baseline recipe)


class Task:
    """An evaluation task. Subclasses set ``name``, ``config_class`` and ``metrics`` and implement
    ``examples``, ``systems``, ``run`` and ``aggregate``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    metrics: ClassVar[dict[str, str]] = {}  # aggregate metric -> "higher" / "lower" is better
    plot_metrics: ClassVar[list[str]] = []  # the ones a person looks at first; one panel each

    def __init__(self, config: Any = None, ctx: EvalContext | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        self.ctx = ctx or EvalContext()

    def examples(self) -> list[dict[str, Any]]:
        """The dataset, validated; each example has a unique string ``id``."""
        raise NotImplementedError

    def systems(self) -> list[System]:
        """The models under test followed by the baselines."""
        raise NotImplementedError

    def run(self, system: System, example: dict[str, Any]) -> dict[str, Any]:
        """Score ``system`` on one example; the record must be JSON-able (it is cached as a JSON line)."""
        raise NotImplementedError

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """One system's records -> its row of aggregate metrics (None where a metric does not apply)."""
        raise NotImplementedError

    def samples(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A few outputs worth showing in the report; none by default."""
        return []

    def setup(self) -> None:
        """Expensive shared preparation (an index, a model), run once before the first uncached example."""


# ---------------------------------------------------------------------------------------------- data

def read_jsonl(path: str | Path, required: dict[str, type | tuple[type, ...]]) -> list[dict[str, Any]]:
    """Read a JSONL dataset, checking each line's fields.

    Args:
        path: the file; blank lines are skipped.
        required: field -> accepted type(s).

    Returns:
        The examples, each with ``line`` (its 1-based line number) and ``id`` (its own, or ``line<N>``).

    Raises:
        LLMAppError: a missing file, malformed JSON, a missing or mistyped field, or no examples,
            naming the file and line.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise LLMAppError(f"dataset not found: {path}; check the path given with --data")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LLMAppError(f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno}); "
                                  "each line must be one JSON object") from None
            if not isinstance(row, dict):
                raise LLMAppError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            for key, kind in required.items():
                if key not in row:
                    raise LLMAppError(f"{path}:{lineno}: missing field {key!r}; each line needs: {', '.join(required)}")
                if not isinstance(row[key], kind):
                    want = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
                    raise LLMAppError(f"{path}:{lineno}: field {key!r} must be {want}, got {type(row[key]).__name__}")
            row["id"] = str(row.get("id", row.get("_id", f"line{lineno}")))
            if row["id"] in seen:
                raise LLMAppError(f"{path}:{lineno}: duplicate id {row['id']!r}; ids must be unique")
            seen.add(row["id"])
            row["line"] = lineno
            out.append(row)
    if not out:
        raise LLMAppError(f"{path}:1: empty dataset (no examples); add one JSON object per line")
    return out


def limited(examples: list[dict[str, Any]], ctx: EvalContext) -> list[dict[str, Any]]:
    """The first ``ctx.limit`` examples (all when no limit)."""
    return examples[:ctx.limit] if ctx.limit else examples


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def sentences(text: str) -> list[str]:
    """Split prose into sentences at ., ! or ? followed by a capital: good enough for lead-3 and baselines."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        out += [s.strip() for s in _SENTENCE.split(" ".join(para.split())) if s.strip()]
    return out


def model_systems(ctx: EvalContext) -> list[System]:
    """The models under test as systems."""
    return [System(name=m, kind="model", spec=str(m)) for m in ctx.models]


def split_spec(spec: str) -> tuple[str, str | None]:
    """``NAME@BACKEND`` -> ``(NAME, BACKEND)``; a plain name runs on its default backend (``None``)."""
    from llmapp.backends import BACKENDS

    name, sep, backend = str(spec).rpartition("@")
    return (name, backend) if sep and backend in BACKENDS else (str(spec), None)


def chat_model(spec: str, **settings: Any) -> Any:
    """The chat model a system names: ``smollm2-135m-instruct`` on its default backend, or
    ``smollm2-135m-instruct@hf`` on another, so one run can compare backends row by row."""
    from llmapp.backends import load_chat_model

    name, backend = split_spec(spec)
    return load_chat_model(name, backend=backend, **settings)
