"""``llmapp db``: run the embedded Postgres (with pgvector) that ``--store postgresql://...`` can use.

    llmapp db start [--data DIR]     # prints the store URL: postgresql://postgres@/llmapp?host=DIR
    llmapp db status [--data DIR]
    llmapp db stop [--data DIR]
"""

from __future__ import annotations

from pathlib import Path

import click

DATA_HELP = "Data folder of the server (default: $LLMAPP_HOME/postgres)."


@click.group()
def db() -> None:
    """Run a local Postgres with pgvector for Postgres stores (no TCP port: a Unix socket in its data folder).

    \b
    Examples:
      llmapp db start                                   # prints the URL
      llmapp index docs/ --store "$(llmapp db start)"
      llmapp ask "What is a VAE?" --store "postgresql://postgres@/llmapp?host=$HOME/.cache/llmapp/postgres"
      llmapp db stop
    """


@db.command()
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None, help=DATA_HELP)
def start(data: Path | None) -> None:
    """Start the server (initializing DATA on first use) and print its URL; a running one is reused."""
    from llmapp.core.postgres import ROOT_USER
    from llmapp.core.postgres import start as start_server

    server = start_server(data)
    if server.opened:
        click.echo(f"note: running as root, so PostgreSQL runs as system user {ROOT_USER!r}; these folders were "
                   f"made traversable for it: {', '.join(server.opened)}", err=True)
    click.echo(f"Postgres with pgvector is running in {server.data}; use it with --store URL:", err=True)
    click.echo(server.url)


@db.command()
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None, help=DATA_HELP)
def stop(data: Path | None) -> None:
    """Stop the server."""
    from llmapp.core.postgres import default_data
    from llmapp.core.postgres import stop as stop_server

    stopped = stop_server(data)
    click.echo(f"{'stopped' if stopped else 'not running:'} {data or default_data()}")


@db.command()
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None, help=DATA_HELP)
def status(data: Path | None) -> None:
    """Print the server's URL if it is running (exit status 1 if not)."""
    from llmapp.core.postgres import default_data, running_url

    url = running_url(data)
    if url is None:
        click.echo(f"not running: {data or default_data()}", err=True)
        raise SystemExit(1)
    click.echo(url)
