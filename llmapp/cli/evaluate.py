"""``llmapp eval``: run evaluation tasks and write results.json, report.md and plots.

    llmapp eval perplexity rag-qa --model smollm2-135m-instruct --out runs/demo
    llmapp eval retrieval summarization --out runs/baselines
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("eval")
@click.argument("tasks", nargs=-1, required=True)
@click.option("--model", "-m", "models", multiple=True, metavar="NAME|DIR",
              help="A chat / causal LM to evaluate (registry name, HF directory, .gguf); repeat to compare.")
@click.option("--store", type=click.Path(file_okay=False), help="Store folder or postgresql:// URL for rag-qa (default: the demo notes, indexed once).")
@click.option("--data", "data", multiple=True, metavar="TASK=PATH", help="Use PATH as TASK's dataset; repeatable.")
@click.option("--set", "overrides", multiple=True, metavar="TASK.KEY=VALUE",
              help="Override a task setting, e.g. rag-qa.retrieval=bm25; repeatable.")
@click.option("--embeddings", default="minilm-l6", show_default=True, help="Embeddings for retrieval and the demo store.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N examples of each task (a quick look).")
@click.option("--seed", default=0, show_default=True, help="Seeds sampling and the random baselines.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Output folder; rerunning into it resumes from its cache.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
def evaluate(tasks: tuple[str, ...], models: tuple[str, ...], store: str | None, data: tuple[str, ...],
             overrides: tuple[str, ...], embeddings: str, limit: int | None, seed: int, out: str,
             no_progress: bool) -> None:
    """Evaluate models on TASKS and write results.json, report.md and one PNG per task to --out.

    TASKS: perplexity, rag-qa, retrieval, summarization, generation, structured. Every table has baselines
    (random, BM25, lead-3, n-gram). Finished examples are cached in OUT/cache.jsonl, so an
    interrupted run resumes where it stopped.

    \b
    Examples:
      llmapp eval perplexity rag-qa --model smollm2-135m-instruct --out runs/demo
      llmapp eval rag-qa -m smollm2-135m-instruct --set rag-qa.retrieval=bm25 --out runs/bm25
      llmapp eval retrieval --data retrieval=~/beir/scifact --out runs/scifact
      llmapp eval perplexity --data perplexity=notes.txt -m ./my-gpt-hf --out runs/ppl
    """
    from eval.harness import REPORT_FILE, RESULTS_FILE
    from eval.harness import evaluate as run
    from eval.report import fmt
    from llmapp.core.errors import LLMAppError

    paths = {}
    for item in data:
        task, sep, path = item.partition("=")
        if not sep or not path:
            raise LLMAppError(f"bad --data {item!r}; write TASK=PATH, e.g. rag-qa=questions.jsonl")
        paths[task] = path
    results = run(list(tasks), out, list(models), store=store, data=paths, overrides=list(overrides), seed=seed,
                  limit=limit, embeddings=embeddings, progress=not no_progress)
    for name, entry in results["tasks"].items():
        shown = entry["plot_metrics"]
        click.echo(f"\n{name} ({entry['examples']} examples)")
        width = max(len(s) for s in entry["systems"]) + 2
        click.echo(" " * width + "".join(f"{m:>22}" for m in shown))
        for sys_name, s in entry["systems"].items():
            click.echo(f"{sys_name:<{width}}" + "".join(f"{fmt(s['metrics'].get(m)):>22}" for m in shown))
    folder = Path(out)
    click.echo(f"\nwrote {folder / RESULTS_FILE}, {folder / REPORT_FILE} and plots")
