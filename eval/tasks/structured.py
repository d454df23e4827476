"""The ``structured`` task: JSON-schema replies, constrained decoding against the same model left free.

Each model answers every schema × prompt pair of ``eval/data/structured.jsonl`` twice, with the same
prompt (the request, after a system message naming the fields, their types and descriptions):

- ``constrained``: ``with_structured_output(schema)``, decoded under the schema's grammar;
- ``unconstrained`` (the baseline): plain chat; the first ``{...}`` of the reply is parsed, if any.

Reported per system: validity (the reply parses and satisfies the schema; constrained decoding must
reach 100%), parse rate, field accuracy against the gold object where one exists (share of gold
leaf values matched: strings compared case- and space-insensitively, numbers by value, arrays
position by position; an invalid reply scores 0), per-category validity of the worst category, and
mean reply tokens. The 25 schemas of ``structured-bad-schemas.jsonl`` are examples too: the
constrained system must refuse each, naming its keyword (``bad_schemas_refused``).

    llmapp eval structured --model smollm2-135m-instruct --out runs/structured          # test split
    llmapp eval structured -m smollm2-135m-instruct@hf --set structured.split=dev --out runs/structured-hf
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from eval.metrics import mean
from eval.tasks.base import DATA, System, Task, chat_model, limited, read_jsonl

_OBJECT = re.compile(r"\{.*\}", re.S)


@dataclass
class StructuredTaskConfig:
    data: str = ""  # JSONL of {id, category, prompt, schema, gold, split}; "": eval/data/structured.jsonl
    bad_data: str = ""  # JSONL of {id, schema, keyword}; "": eval/data/structured-bad-schemas.jsonl
    split: str = "test"  # "dev" (tune here), "test" (report this) or "all"
    max_tokens: int = 160  # room for the suite's largest objects (8 items of short strings) with spare


class StructuredTask(Task):
    name = "structured"
    description = "JSON-schema replies: validity, field accuracy; constrained decoding vs the same model unconstrained"
    config_class = StructuredTaskConfig
    metrics: ClassVar[dict[str, str]] = {"validity": "higher", "parse_rate": "higher", "field_accuracy": "higher",
                                         "worst_category_validity": "higher", "bad_schemas_refused": "higher",
                                         "mean_tokens": ""}
    plot_metrics: ClassVar[list[str]] = ["validity", "field_accuracy", "worst_category_validity"]

    def examples(self) -> list[dict[str, Any]]:
        if self.config.split not in ("dev", "test", "all"):
            from llmapp.core.errors import LLMAppError

            raise LLMAppError(f"structured.split must be dev, test or all, not {self.config.split!r}")
        items = read_jsonl(self.config.data or DATA / "structured.jsonl",
                           {"prompt": str, "schema": dict, "category": str, "split": str})
        items = [dict(i, kind="item") for i in items if self.config.split in ("all", i["split"])]
        bad = read_jsonl(self.config.bad_data or DATA / "structured-bad-schemas.jsonl",
                         {"schema": dict, "keyword": str})
        return limited(items, self.ctx) + [dict(b, kind="bad") for b in bad]

    def systems(self) -> list[System]:
        from llmapp.models.registry import DEFAULT_CHAT

        models = self.ctx.models or [DEFAULT_CHAT]
        return ([System(f"{m} constrained", "model", f"constrained:{m}") for m in models]
                + [System(f"{m} unconstrained", "baseline", f"free:{m}") for m in models])

    def run(self, system: System, example: dict[str, Any]) -> dict[str, Any]:
        mode, model = system.spec.split(":", 1)
        if example["kind"] == "bad":
            return _refusal(example) if mode == "constrained" else {"kind": "bad", "refused": None}
        from langchain_core.messages import HumanMessage, SystemMessage

        from llmapp.backends.tools import schema_hint

        chat = chat_model(model, max_tokens=self.config.max_tokens)  # NAME or NAME@BACKEND
        if mode == "constrained":
            out = chat.with_structured_output(example["schema"], include_raw=True).invoke(example["prompt"])
            raw = out["raw"]
        else:
            raw = chat.invoke([SystemMessage(schema_hint(example["schema"])), HumanMessage(example["prompt"])])
        text = raw.content if isinstance(raw.content, str) else ""
        value, parsed = _parse(text)
        valid = parsed and _valid(value, example["schema"])
        gold = example.get("gold")
        return {"kind": "item", "category": example["category"], "text": text, "parsed": parsed, "valid": valid,
                "field_accuracy": None if gold is None else (field_accuracy(value, gold) if valid else 0.0),
                "tokens": (raw.usage_metadata or {}).get("output_tokens", 0)}

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        items = [r for r in records if r["kind"] == "item"]
        refusals = [r["refused"] for r in records if r["kind"] == "bad" and r["refused"] is not None]
        categories = sorted({r["category"] for r in items})
        by_category = [mean(float(r["valid"]) for r in items if r["category"] == c) for c in categories]
        scored = [r["field_accuracy"] for r in items if r["field_accuracy"] is not None]
        return {"validity": mean(float(r["valid"]) for r in items) if items else None,
                "parse_rate": mean(float(r["parsed"]) for r in items) if items else None,
                "field_accuracy": mean(scored) if scored else None,
                "worst_category_validity": min(by_category) if by_category else None,
                "bad_schemas_refused": mean(float(r) for r in refusals) if refusals else None,
                "mean_tokens": mean(r["tokens"] for r in items) if items else None}

    def samples(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items = [r for r in records if r["kind"] == "item"]
        invalid = [r for r in items if not r["valid"]]
        return [{"category": r["category"], "valid": r["valid"], "text": r["text"][:300]}
                for r in (invalid[:2] + items[:2])[:3]]


def _refusal(example: dict[str, Any]) -> dict[str, Any]:
    """Whether the grammar builder refuses a bad schema in one line naming its keyword."""
    from llmapp.backends.grammar import SchemaError, json_grammar, tool_grammar

    try:
        if example.get("context") == "tool":
            tool_grammar([{"name": "tool", "parameters": example["schema"]}])
        else:
            json_grammar(example["schema"])
    except SchemaError as exc:
        return {"kind": "bad", "refused": exc.keyword == example["keyword"] and "\n" not in str(exc),
                "message": str(exc)}
    return {"kind": "bad", "refused": False, "message": "accepted"}


def _parse(text: str) -> tuple[Any, bool]:
    """The reply's JSON object: the whole text, else its outermost ``{...}`` (lenient, for the baseline)."""
    for candidate in (text.strip(), *(m.group(0) for m in [_OBJECT.search(text)] if m)):
        try:
            return json.loads(candidate), True
        except ValueError:
            continue
    return None, False


def _valid(value: Any, schema: dict[str, Any]) -> bool:
    from llmapp.backends.grammar import validate
    from llmapp.core.errors import LLMAppError

    try:
        validate(value, schema)
    except LLMAppError:
        return False
    return True


def _leaves(value: Any, path: str = "$") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        return {k: v for key, sub in value.items() for k, v in _leaves(sub, f"{path}.{key}").items()}
    if isinstance(value, list) and value:
        return {k: v for i, sub in enumerate(value) for k, v in _leaves(sub, f"{path}[{i}]").items()}
    return {path: value}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) | isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def field_accuracy(value: Any, gold: Any) -> float:
    """Share of the gold object's leaf values that ``value`` matches at the same path."""
    want, got = _leaves(gold), _leaves(value)
    return sum(path in got and _same(got[path], v) for path, v in want.items()) / len(want)
