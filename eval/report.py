"""Turn a results dict into report.md and one bar-chart PNG per task, readable at a glance.

Models are coloured, baselines grey; each panel is one metric with an arrow saying which way is
better, and, when several models are compared, the best model value in each column is bold.

    python -m eval.report runs/demo/results.json      # re-render report.md and the plots
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from llmapp.core.files import write_text

ARROW = {"higher": " ↑", "lower": " ↓", "": ""}
RESULTS_FILE, REPORT_FILE = "results.json", "report.md"


def write_outputs(results: dict[str, Any], out: Path) -> None:
    """Write results.json, report.md and one PNG per task into ``out`` (each atomically)."""
    for name, entry in results["tasks"].items():
        png = out / f"{name}.png"
        if entry["plot_metrics"]:
            plot_task(name, entry, png)
            entry["plot"] = png.name
    write_text(out / RESULTS_FILE, json.dumps(results, indent=2, default=str))
    write_text(out / REPORT_FILE, render_markdown(results))


def fmt(value: Any) -> str:
    """A table cell: 3 significant decimals for fractions, fewer for big numbers, n/a for None."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def _best(entry: dict[str, Any], metric: str) -> str | None:
    """The model (not baseline) with the best value of ``metric``, when two or more models are compared."""
    way = entry["metrics"].get(metric, "")
    vals = [(s["metrics"].get(metric), n) for n, s in entry["systems"].items()
            if s["kind"] == "model" and s["metrics"].get(metric) is not None]
    if not way or len(vals) < 2:  # bold means "best of the models compared": needs two of them
        return None
    return (max if way == "higher" else min)(vals)[1]


def render_markdown(results: dict[str, Any]) -> str:
    """The whole report: run facts, then per task a table, its plot and a few samples."""
    lines = ["# llmapp eval report", "",
             f"- models: {', '.join(results['models']) or '(baselines only)'}",
             f"- seed: {results['seed']} · limit: {results['limit'] or 'none'} · embeddings: {results['embeddings']}",
             f"- started {results['started']} · finished {results.get('finished', '')}",
             f"- git commit: {results.get('git_commit') or 'n/a'}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in results["packages"].items() if v), ""]
    for name, entry in results["tasks"].items():
        metrics = list(entry["metrics"])
        config = ", ".join(f"{k}={v!r}" for k, v in entry["config"].items())
        lines += [f"## {name}", "", f"{entry['description']}. {entry['examples']} examples, "
                  f"{entry.get('seconds', 0):.0f} s. Config: {config}.", "",
                  "| system | kind | " + " | ".join(m + ARROW[entry["metrics"][m]] for m in metrics) + " |",
                  "|---|---|" + "---:|" * len(metrics)]
        best = {m: _best(entry, m) for m in metrics}
        for sys_name, s in entry["systems"].items():
            cells = [f"**{fmt(s['metrics'].get(m))}**" if best[m] == sys_name
                     else fmt(s["metrics"].get(m)) for m in metrics]
            lines.append(f"| {sys_name} | {s['kind']} | " + " | ".join(cells) + " |")
        if entry.get("plot"):
            lines += ["", f"![{name}]({entry['plot']})"]
        samples = [(n, x) for n, s in entry["systems"].items() for x in s.get("samples", [])]
        if samples:
            lines += ["", "<details><summary>samples</summary>", ""]
            for sys_name, sample in samples:
                body = " · ".join(f"*{k}*: {' '.join(str(v).split())[:400]}" for k, v in sample.items())
                lines.append(f"- **{sys_name}**: {body}")
            lines += ["", "</details>"]
        lines.append("")
    return "\n".join(lines)


def plot_task(name: str, entry: dict[str, Any], path: Path) -> None:
    """One row of horizontal bar panels (one per headline metric), systems on the y axis."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    metrics = [m for m in entry["plot_metrics"]]
    systems = list(entry["systems"])
    palette = plt.get_cmap("tab10")
    colours = []
    for i, s in enumerate(systems):
        colours.append("#b0b0b0" if entry["systems"][s]["kind"] == "baseline" else palette(i % 10))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics) + 1.6, 0.45 * len(systems) + 1.4),
                             sharey=True, squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        values = [entry["systems"][s]["metrics"].get(metric) for s in systems]
        bars = ax.barh(range(len(systems)), [v or 0 for v in values], color=colours)
        for bar, v in zip(bars, values, strict=True):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + fmt(v), va="center", fontsize=8)
        ax.set_title(metric + ARROW[entry["metrics"].get(metric, "")], fontsize=10)
        ax.margins(x=0.25)
        ax.tick_params(axis="x", labelsize=8)
    axes[0][0].set_yticks(range(len(systems)), systems, fontsize=9)
    axes[0][0].invert_yaxis()  # first system on top, as in the table
    fig.suptitle(f"{name}  (grey: baselines)", fontsize=11)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


if __name__ == "__main__":
    results_path = Path(sys.argv[1])
    data = json.loads(results_path.read_text(encoding="utf-8"))
    write_outputs(data, results_path.parent)
    print(results_path.parent / "report.md")
