"""The ``llmapp`` command group.

Every subcommand lives in a small module beside this one and is imported only when it runs, so
``llmapp --help`` starts instantly. Commands are thin: parse, build configs, call library code.

    llmapp --help
    llmapp models
    llmapp ask "What is a GAN?" --store .llmapp/demo-store
"""

from __future__ import annotations

import importlib
import sys

import click

# name -> "module:attribute"; one line each, grouped by what they are for.
COMMANDS: dict[str, str] = {
    "models": "llmapp.cli.models:models",
    "generate": "llmapp.cli.chains:generate",
    "summarize": "llmapp.cli.chains:summarize",
    "index": "llmapp.cli.chains:index",
    "ask": "llmapp.cli.chains:ask",
    "demo": "llmapp.cli.demo:demo",
    "chat": "llmapp.cli.chat:chat",
    "train": "llmapp.cli.train:train",
    "sample": "llmapp.cli.train:sample",
    "export": "llmapp.cli.train:export",
    "finetune": "llmapp.cli.finetune:finetune",
    "eval": "llmapp.cli.evaluate:evaluate",
    "bench": "llmapp.cli.bench:bench",
    "serve": "llmapp.cli.serve:serve",
    "db": "llmapp.cli.db:db",
}

# One-line help shown by `llmapp --help` without importing the command modules.
SUMMARIES: dict[str, str] = {
    "models": "List registered models: backend, installed or not, size, context window, weights path.",
    "generate": "Generate text from a prompt template, streamed.",
    "summarize": "Summarize a file of any length (stuff / map-reduce / refine / extract), guarded by the text.",
    "index": "Index files and folders into a FAISS store for retrieval.",
    "ask": "Answer a question from a store, with [n] citations.",
    "demo": "Index the bundled demo notes and answer a question about them.",
    "chat": "Chat in the terminal: streaming, history, slash commands, RAG.",
    "train": "Train the minimal GPT (or a baseline) on a text file.",
    "sample": "Sample text from a training checkpoint.",
    "export": "Export a GPT checkpoint as a Hugging Face model directory.",
    "finetune": "Fine-tune a causal LM (full or LoRA) on text or chat JSONL, or train the MLM head.",
    "eval": "Run evaluation tasks and write results.json, report.md and plots.",
    "bench": "Run performance benchmarks and print a table (and JSON).",
    "serve": "Serve models and RAG stores over an OpenAI-compatible HTTP API.",
    "db": "Start or stop the embedded Postgres (pgvector) for --store postgresql://... stores.",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise click.ClickException(f"command {name!r} is not available: {exc}") from exc

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, SUMMARIES.get(name, "")) for name in COMMANDS])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmapp")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """llmapp: offline-first text generation on open models.

    \b
    Examples:
      llmapp models                                  # what is installed
      llmapp generate "Write a haiku about autumn"   # streamed generation
      llmapp index ./docs --store ./store            # build a FAISS store
      llmapp ask "What is a VAE?" --store ./store    # cited answer
      llmapp chat                                    # terminal chat
    """
    import logging

    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the group, turning user errors into one-line messages and exit code 2."""
    from llmapp.core.errors import LLMAppError

    try:
        cli.main(args=argv, prog_name="llmapp", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("\naborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LLMAppError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("\ninterrupted", err=True)
        sys.exit(130)
