"""Calibrate the faithfulness judge on hand labels: the threshold is chosen on dev, agreement reported on test.

``eval/data/summarization-faithfulness.jsonl`` holds summary sentences labelled supported or not by
a person reading the source document. Each sentence is scored as the summarization metric and the
guard score it (``chains.grounding``): its cosine similarity to the nearest 1-2-sentence window of
the document, and the names, numbers and links it adds. Three criteria are compared:

- ``embedding``: supported when the cosine reaches the threshold;
- ``foreign``: supported when the sentence adds no name, number or link;
- ``embedding + foreign`` (what the metric and the guard use): both.

For each, the threshold with the best agreement on the dev labels is chosen, and the agreement
(accuracy), the precision and recall of "unsupported", on dev and on test, are reported.

    python -m eval.faithfulness                         # prints the table
    python -m eval.faithfulness --out runs/faith.json   # and writes every score
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from eval.metrics import agreement, best_threshold
from eval.tasks.base import DATA, read_jsonl

CRITERIA = ("embedding", "foreign", "embedding + foreign")


def score_labelled(labels: list[dict[str, Any]], documents: dict[str, str], embeddings: Any) -> list[dict[str, Any]]:
    """Each labelled sentence with its support score and foreign tokens against its document."""
    from chains.grounding import Grounding

    prepared: dict[str, Grounding] = {}
    out = []
    for row in labels:
        doc_id = row["doc_id"]
        if doc_id not in documents:
            raise ValueError(f"{row['id']}: unknown document {doc_id!r}")
        if doc_id not in prepared:
            prepared[doc_id] = Grounding(documents[doc_id], embeddings)
        verdict = prepared[doc_id].check([row["sentence"]])[0]
        out.append({"id": row["id"], "split": row.get("split", ""), "supported": bool(row["supported"]),
                    "score": verdict.score, "foreign": verdict.foreign, "sentence": row["sentence"]})
    return out


def criterion_scores(scored: list[dict[str, Any]], criterion: str) -> list[float]:
    """One number per sentence that a threshold turns into a judgement, for ``criterion``."""
    if criterion == "embedding":
        return [r["score"] for r in scored]
    if criterion == "foreign":
        return [0.0 if r["foreign"] else 1.0 for r in scored]
    return [-1.0 if r["foreign"] else r["score"] for r in scored]  # a foreign token vetoes any score


def _rates(scores: list[float], labels: list[bool], threshold: float) -> dict[str, float]:
    flagged = [s < threshold for s in scores]  # judged unsupported
    tp = sum(f and not y for f, y in zip(flagged, labels, strict=True))
    return {"agreement": agreement(scores, labels, threshold),
            "unsupported_precision": tp / max(1, sum(flagged)),
            "unsupported_recall": tp / max(1, sum(not y for y in labels))}


def calibrate(scored: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per criterion: the dev-chosen threshold and agreement / precision / recall on dev and test."""
    out = {}
    for criterion in CRITERIA:
        split = {name: [r for r in scored if r["split"] == name] for name in ("dev", "test")}
        dev_scores = criterion_scores(split["dev"], criterion)
        threshold, _ = best_threshold(dev_scores, [r["supported"] for r in split["dev"]])
        if criterion == "foreign":
            threshold = 0.5
        row: dict[str, Any] = {"threshold": round(threshold, 3)}
        for name, rows in split.items():
            if rows:
                rates = _rates(criterion_scores(rows, criterion), [r["supported"] for r in rows], threshold)
                row.update({f"{name}_{k}": round(v, 3) for k, v in rates.items()})
                row[f"{name}_n"] = len(rows)
        out[criterion] = row
    return out


def markdown(table: dict[str, dict[str, Any]]) -> str:
    """The calibration as a Markdown table."""
    cols = ["threshold", "dev_agreement", "test_agreement", "test_unsupported_precision", "test_unsupported_recall"]
    lines = ["| criterion | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    lines += [f"| {name} | " + " | ".join(str(row.get(c, "n/a")) for c in cols) + " |" for name, row in table.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", default=str(DATA / "summarization-faithfulness.jsonl"))
    parser.add_argument("--documents", default=str(DATA / "summarization.jsonl"))
    parser.add_argument("--embeddings", default="minilm-l6")
    parser.add_argument("--out", default=None, help="write the scores and the table as JSON here")
    args = parser.parse_args(argv)
    from llmapp import load_embeddings
    from llmapp.core.files import write_text

    labels = read_jsonl(args.labels, {"doc_id": str, "sentence": str, "supported": bool})
    documents = {r["id"]: r["document"] for r in read_jsonl(args.documents, {"document": str})}
    scored = score_labelled(labels, documents, load_embeddings(args.embeddings))
    table = calibrate(scored)
    print(markdown(table))
    if args.out:
        write_text(Path(args.out), json.dumps({"calibration": table, "scores": scored}, indent=1))
    return table


if __name__ == "__main__":
    main()
