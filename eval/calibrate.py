"""Calibrate abstention: pick each relevance signal's threshold from the answerable/unanswerable ROC.

For every question of a split of ``eval/data/rag-qa.jsonl``, retrieve from its corpus's store with
the default ``RAGConfig`` (no abstention) and compute every signal of ``chains.relevance``. Per
signal it reports the ROC AUC and the threshold that abstains on the most unanswerable questions
while abstaining on at most ``max_false`` of the answerable ones, then writes the ROC plot and a JSON
summary. Copy the chosen thresholds into ``chains.relevance.CALIBRATION`` under the embedding
model's name. Run it on dev; read the error rates it reports on test (``--split test --check``).

    python -m eval.calibrate --split dev --out runs/calibrate                    # choose thresholds
    python -m eval.calibrate --split test --check --out runs/calibrate-test      # both error rates on test
    python -m eval.calibrate --embeddings ./my-embedder --split dev --out runs/cal-my
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from llmapp.core.config import RAGConfig
from llmapp.core.files import write_text


def signal_table(split: str, embeddings: str = "minilm-l6", config: RAGConfig | None = None) -> list[dict[str, Any]]:
    """Every signal for every question of ``split``: ``[{"id", "answerable", "signals": {...}}]``."""
    from chains.rag import rank
    from chains.relevance import SIGNALS, relevance
    from eval.rag_stores import StoreSet
    from eval.tasks.base import DATA, EvalContext, read_jsonl

    config = dataclasses.replace(config or RAGConfig(), abstain="none")
    stores = StoreSet(EvalContext(embeddings=embeddings))
    rows = read_jsonl(DATA / "rag-qa.jsonl", {"question": str, "answerable": bool})
    out = []
    for row in rows:
        if split != "all" and row.get("split") != split:
            continue
        store = stores.get(row.get("corpus"), config)
        sources = rank(store, row["question"], config)
        out.append({"id": row["id"], "answerable": row["answerable"],
                    "signals": {name: relevance(store, row["question"], sources, name) for name in SIGNALS}})
    return out


def auc(scores: list[tuple[bool, float]]) -> float:
    """Probability that a random answerable question scores above a random unanswerable one."""
    pos = [s for a, s in scores if a]
    neg = [s for a, s in scores if not a]
    if not pos or not neg:
        return float("nan")
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def rates(scores: list[tuple[bool, float]], cut: float) -> tuple[float, float]:
    """(correct abstention, false abstention) when abstaining below ``cut``."""
    pos = [s for a, s in scores if a]
    neg = [s for a, s in scores if not a]
    return (sum(s < cut for s in neg) / max(len(neg), 1), sum(s < cut for s in pos) / max(len(pos), 1))


def choose(scores: list[tuple[bool, float]], max_false: float = 0.0) -> float:
    """The threshold with the most correct abstentions at no more than ``max_false`` false ones.

    Thresholds are placed halfway between neighbouring scores, so a tiny shift in a score does not
    flip a decision; ties go to the lower (fewer false abstentions) threshold.
    """
    values = sorted({s for _, s in scores})
    cuts = [values[0] - 1e-6] + [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)]
    best = cuts[0]
    for cut in cuts:
        correct, false = rates(scores, cut)
        if false <= max_false and correct > rates(scores, best)[0]:
            best = cut
    return round(best, 4)


def plot_roc(table: list[dict[str, Any]], path: Path) -> None:
    """One ROC curve per signal: false abstention (x) against correct abstention (y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name in table[0]["signals"]:
        scores = [(r["answerable"], r["signals"][name]) for r in table]
        cuts = sorted({s for _, s in scores}) + [float("inf")]
        pts = [rates(scores, c) for c in cuts]
        ax.plot([f for _, f in pts], [c for c, _ in pts], label=f"{name} (AUC {auc(scores):.3f})")
    ax.axvline(0.05, color="grey", ls=":", lw=1)
    ax.set_xlabel("false abstention (answerable)")
    ax.set_ylabel("correct abstention (unanswerable)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="dev", choices=["dev", "test", "all"])
    parser.add_argument("--embeddings", default="minilm-l6")
    parser.add_argument("--max-false", type=float, default=0.0, help="false abstention allowed when choosing")
    parser.add_argument("--check", action="store_true", help="report the calibrated thresholds' rates, choose nothing")
    parser.add_argument("--out", default="runs/calibrate")
    args = parser.parse_args(argv)
    from chains.relevance import ANY_MODEL, CALIBRATION

    table = signal_table(args.split, args.embeddings)
    summary: dict[str, Any] = {"split": args.split, "embeddings": args.embeddings, "questions": len(table), "signals": {}}
    for name in table[0]["signals"]:
        scores = [(r["answerable"], r["signals"][name]) for r in table]
        calibrated = {**ANY_MODEL, **CALIBRATION.get(args.embeddings, {})}.get(name)
        cut = calibrated if args.check else choose(scores, args.max_false)
        correct, false = rates(scores, cut) if cut is not None else (None, None)
        summary["signals"][name] = {"auc": round(auc(scores), 4), "threshold": cut,
                                    "correct_abstention": correct, "false_abstention": false}
        print(f"{name:10s} AUC {auc(scores):.3f}  threshold {cut}  correct abstention {correct}  "
              f"false abstention {false}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_roc(table, out / "roc.png")
    write_text(out / "calibration.json", json.dumps({**summary, "table": table}, indent=1))
    return summary


if __name__ == "__main__":
    main()
