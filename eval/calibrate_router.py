"""Calibrate the tool router's threshold (``llmapp.backends.router.THRESHOLD``) on labelled requests.

``eval/data/tool-routing.jsonl`` holds 60 requests, each with the tools bound (names from
``tool-routing-tools.json``) and the tool it should call, or null for a text reply; dev and test
alternate within the call / no-call groups. The threshold is the one that maximises routing
accuracy on dev (a request is routed right when the router calls exactly the expected tool, or
none when none is expected); its accuracy on test is the number to quote.

    python -m eval.calibrate_router            # prints the scan, the chosen threshold and test accuracy
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"


def load() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    rows = [json.loads(line) for line in (DATA / "tool-routing.jsonl").read_text(encoding="utf-8").splitlines()]
    tools = {t["name"]: t for t in json.loads((DATA / "tool-routing-tools.json").read_text(encoding="utf-8"))}
    return rows, tools


def best_scores(rows: list[dict[str, Any]], tools: dict[str, dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Each request's clauses and their similarities with its tools (computed once, thresholded many times)."""
    from llmapp.backends.router import similarities

    return [(*similarities(row["request"], [tools[n] for n in row["tools"]]), row["tools"]) for row in rows]


def accuracy(rows: list[dict[str, Any]], scored: list[tuple[Any, ...]], threshold: float) -> float:
    """Share of requests routed right: the expected tool called, or none when none is expected."""
    from llmapp.backends.router import choose

    right = [getattr(choose(parts, sims, names, threshold), "tool", None) == row["expect"]
             for row, (parts, sims, names) in zip(rows, scored, strict=True)]
    return sum(right) / len(right)


def calibrate() -> dict[str, Any]:
    """Scan thresholds on dev; return the best one with its dev and test accuracy."""
    rows, tools = load()
    dev = [r for r in rows if r["split"] == "dev"]
    test = [r for r in rows if r["split"] == "test"]
    dev_scores, test_scores = best_scores(dev, tools), best_scores(test, tools)
    grid = [round(0.15 + 0.01 * i, 2) for i in range(46)]
    scan = {t: accuracy(dev, dev_scores, t) for t in grid}
    top = max(scan.values())
    plateau = [t for t, acc in scan.items() if acc == top]
    chosen = plateau[len(plateau) // 2]  # the middle of the best plateau: least sensitive to drift
    from llmapp.backends.router import THRESHOLD

    return {"threshold": chosen, "dev_accuracy": top, "test_accuracy": accuracy(test, test_scores, chosen),
            "shipped_threshold": THRESHOLD, "shipped_test_accuracy": accuracy(test, test_scores, THRESHOLD),
            "plateau": [plateau[0], plateau[-1]], "dev": len(dev), "test": len(test)}


if __name__ == "__main__":
    print(json.dumps(calibrate(), indent=2))
