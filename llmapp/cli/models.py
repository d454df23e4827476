"""``llmapp models``: the registry as a table.

    llmapp models            # name, kind, backend, installed, parameters, context window, weights path
    llmapp models --json     # the same, machine-readable
    llmapp models | grep smollm2-135m-instruct     # piped: one plain tab-separated row per model
"""

from __future__ import annotations

import json
import sys

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models(as_json: bool) -> None:
    """List registered models: backend, installed or not, parameter count, context window, weights path.

    \b
    Examples:
      llmapp models
      llmapp models --json | jq '.[].name'
    """
    from llmapp.core.errors import ModelNotFound
    from llmapp.models import REGISTRY

    rows = []
    for spec in REGISTRY.values():
        path, fix = None, None
        try:
            path = spec.source()
        except ModelNotFound as exc:
            fix = str(exc)
        backend = spec.backend if spec.kind == "chat" else {"embeddings": "sentence-transformers"}.get(spec.kind, "hf")
        rows.append({"name": spec.name, "kind": spec.kind, "backend": backend, "installed": path is not None,
                     "parameters": spec.params, "context_window": spec.context_window,
                     "path": str(path) if path else None, "install": fix, "description": spec.description})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not sys.stdout.isatty():  # a pipe: no wrapping, one greppable row per model
        click.echo("name\tkind\tbackend\tinstalled\tparams\tcontext\tweights")
        for r in rows:
            click.echo("\t".join([r["name"], r["kind"], r["backend"], "yes" if r["installed"] else "no",
                                  f"{r['parameters'] / 1e6:.1f}M", str(r["context_window"]), r["path"] or r["install"]]))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="llmapp models")
    for col in ("name", "kind", "backend", "installed", "params", "context", "weights"):
        table.add_column(col, overflow="fold", no_wrap=col == "name")
    for r in rows:
        table.add_row(r["name"], r["kind"], r["backend"], "yes" if r["installed"] else "[red]no[/red]",
                      f"{r['parameters'] / 1e6:.1f}M", str(r["context_window"]),
                      r["path"] or f"[yellow]{r['install']}[/yellow]")
    Console().print(table)
