"""``llmapp bench``: run the performance benchmarks, print one table, write JSON + Markdown.

    llmapp bench
    llmapp bench generate startup --quick --out bench.json
"""

from __future__ import annotations

import click


@click.command()
@click.argument("names", nargs=-1)
@click.option("--quick", is_flag=True, help="Each benchmark's small variant (seconds, not minutes).")
@click.option("--out", "-o", type=click.Path(dir_okay=False),
              help="JSON file to write (the Markdown table goes beside it as .md); "
                   "default: $LLMAPP_HOME/bench/bench.json.")
def bench(names: tuple[str, ...], quick: bool, out: str | None) -> None:
    """Run benchmarks NAMES (default: all) and print their figures as one table.

    Benchmarks: generate (streaming vs raw generate tok/s), rag (index/query speed), train
    (trainer throughput), serve (50 concurrent streams vs one), load (model load times) and
    startup (`llmapp --help` wall time). Ratios are measured side by side in one run.

    \b
    Examples:
      llmapp bench                         # all, full size
      llmapp bench generate                # one benchmark
      llmapp bench --quick --out b.json    # all, small; writes b.json and b.md
    """
    from eval.bench import markdown_table, run_benchmarks, write_results
    from llmapp.core.paths import home

    results = run_benchmarks(list(names) or None, quick=quick,
                             on_start=lambda name: click.echo(f"running {name} ...", err=True))
    click.echo(markdown_table(results))
    json_path, md_path = write_results(results, out or home() / "bench" / "bench.json")
    click.echo(f"wrote {json_path} and {md_path}", err=True)
