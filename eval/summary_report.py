"""The summarization results per length bucket: a Markdown table, the plot, and the strategy auto should use.

Reads the ``results.json`` of one or more ``llmapp eval summarization`` runs (strategies may be run
separately and merged here) and writes ``summarization-buckets.md`` and ``summarization-buckets.png`` beside it: for each length
bucket, every system's ROUGE-L, faithfulness, coverage, tokens processed and wall seconds. The
choice rule for ``--strategy auto``: per bucket, the model strategy with the highest ROUGE-L; one
within ``TIE`` of it that is faster wins instead (quality first, then cost).

    python -m eval.summary_report runs/sum-dev/results.json
    python -m eval.summary_report runs/dev-*/results.json --out runs/dev     # strategies run one by one
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from llmapp.core.files import write_text

TIE = 0.01  # ROUGE-L points within which two strategies count as equal, so the faster is chosen
COLUMNS = ("rougeL", "faithfulness", "coverage", "tokens", "seconds")


def buckets_of(entry: dict[str, Any]) -> list[str]:
    """The buckets present, in length order."""
    from eval.tasks.summarization import BUCKETS

    seen = {b for s in entry["systems"].values() for b in s["metrics"].get("by_bucket", {})}
    return [b for b in BUCKETS if b in seen]


def choose(entry: dict[str, Any]) -> dict[str, str]:
    """bucket -> the model system (``model · strategy``) that auto should pick, by the rule above."""
    picks = {}
    for bucket in buckets_of(entry):
        rows = [(n, s["metrics"]["by_bucket"][bucket]) for n, s in entry["systems"].items()
                if s["kind"] == "model" and not n.endswith("· auto") and bucket in s["metrics"].get("by_bucket", {})]
        rows = [(n, m) for n, m in rows if m.get("rougeL") is not None]
        if not rows:
            continue
        top = max(m["rougeL"] for _, m in rows)
        near = [(n, m) for n, m in rows if m["rougeL"] >= top - TIE]
        picks[bucket] = min(near, key=lambda r: r[1].get("seconds") or 0.0)[0]
    return picks


def table(entry: dict[str, Any]) -> str:
    """One Markdown table per bucket: a row per system, a column per metric."""
    from eval.report import fmt

    picks = choose(entry)
    out = []
    for bucket in buckets_of(entry):
        out += [f"### {bucket}", "", "| system | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
        for name, s in entry["systems"].items():
            m = s["metrics"].get("by_bucket", {}).get(bucket)
            if m is None:
                continue
            mark = " (best)" if picks.get(bucket) == name else ""
            out.append(f"| {name}{mark} | " + " | ".join(fmt(m.get(c)) for c in COLUMNS) + " |")
        out.append("")
    return "\n".join(out)


def plot(entry: dict[str, Any], path: Path) -> None:
    """ROUGE-L and wall seconds per bucket for every system: grouped bars, baselines grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buckets = buckets_of(entry)
    systems = [n for n in entry["systems"] if n != "reference"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    width = 0.8 / max(1, len(systems))
    palette = plt.get_cmap("tab10")
    for panel, metric in zip(axes, ("rougeL", "faithfulness", "seconds"), strict=True):
        for i, name in enumerate(systems):
            s = entry["systems"][name]
            values = [s["metrics"].get("by_bucket", {}).get(b, {}).get(metric) for b in buckets]
            colour = palette(i % 10) if s["kind"] == "model" else str(0.35 + 0.15 * (i % 4))
            panel.bar([x + i * width for x in range(len(buckets))], [v or 0 for v in values], width,
                      label=name, color=colour)
        panel.set_xticks([x + width * (len(systems) - 1) / 2 for x in range(len(buckets))], buckets)
        panel.set_title(metric + (" (log)" if metric == "seconds" else ""))
        if metric == "seconds":
            panel.set_yscale("log")
    axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle("summarization by length bucket (grey: baselines)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def merge(paths: list[str | Path]) -> dict[str, Any]:
    """The summarization entries of several runs as one (strategies or buckets run separately); a system
    in several runs (the baselines every run repeats) keeps the first run's figures for a bucket, and
    gains the buckets only a later run measured."""
    entry: dict[str, Any] = {}
    for path in paths:
        other = json.loads(Path(path).read_text(encoding="utf-8"))["tasks"]["summarization"]
        if not entry:
            entry = {**other, "systems": {}}
        for name, system in other["systems"].items():
            kept = entry["systems"].setdefault(name, system)
            if kept is not system:
                buckets = kept["metrics"].setdefault("by_bucket", {})
                for bucket, figures in system["metrics"].get("by_bucket", {}).items():
                    buckets.setdefault(bucket, figures)
    models = {n: s for n, s in entry["systems"].items() if s["kind"] == "model"}
    entry["systems"] = {**models, **{n: s for n, s in entry["systems"].items() if s["kind"] != "model"}}
    return entry


def report(*results_paths: str | Path, out: str | Path | None = None) -> dict[str, str]:
    """Write the bucket table and plot beside the first ``results.json`` (or into ``out``); returns
    the auto choice per bucket."""
    entry = merge(list(results_paths))
    folder = Path(out) if out else Path(results_paths[0]).parent
    picks = choose(entry)
    body = table(entry) + "\nauto choice per bucket (dev rule): " + \
        ", ".join(f"{b}: {n}" for b, n in picks.items()) + "\n"
    write_text(folder / "summarization-buckets.md", body)
    plot(entry, folder / "summarization-buckets.png")
    return picks


if __name__ == "__main__":
    args = sys.argv[1:]
    target = args[args.index("--out") + 1] if "--out" in args else None
    paths = [a for i, a in enumerate(args) if a != "--out" and (i == 0 or args[i - 1] != "--out")]
    print(json.dumps(report(*paths, out=target), indent=1))
