"""``llmapp generate``, ``summarize``, ``index`` and ``ask``: the chains from the shell.

    llmapp generate "Write a haiku about autumn"
    llmapp generate --template code_assistant "reverse a string" --var language=Rust
    llmapp summarize notes.txt --strategy map_reduce
    llmapp index docs/ --store store
    llmapp ask "What is a VAE?" --store store --retrieval hybrid -k 4
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from llmapp.cli.options import generation_options, model_options
from llmapp.models import DEFAULT_EMBEDDINGS


def _chat(model: str, backend: str | None, settings: dict):
    from llmapp import load_chat_model

    return load_chat_model(model, backend=backend, **settings)


def _echo_stream(pieces) -> str:
    text = ""
    try:
        for piece in pieces:
            text += piece
            click.echo(piece, nl=False)
    finally:
        pieces.close()  # Ctrl-C: stop the model within one token
    click.echo()
    return text


def _parse_vars(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} is not k=v", param_hint="--var")
        key, value = pair.split("=", 1)
        out[key.strip()] = value
    return out


@click.command()
@click.argument("prompt", required=False)
@click.option("--template", "-t", default="generate", show_default=True, help="Template name or .yaml/.jinja file.")
@click.option("--var", "variables", multiple=True, metavar="K=V", help="A template variable (repeatable).")
@click.option("--templates", "templates_dir", type=click.Path(file_okay=False), envvar="LLMAPP_TEMPLATES",
              help="Folder of your own templates (also $LLMAPP_TEMPLATES).")
@click.option("--list", "list_templates", is_flag=True, help="List the templates and exit.")
@model_options()
@generation_options()
def generate(prompt, template, variables, templates_dir, list_templates, model, backend, settings):
    """Generate text from a prompt template, streamed.

    PROMPT fills the template's main variable (``prompt`` for the default template); --var sets the
    others.

    \b
    Examples:
      llmapp generate "Write a haiku about autumn"
      llmapp generate -t code_assistant "reverse a string" --var language=Rust
      llmapp generate "Tell me a story" --temperature 0.7 --seed 1 --max-tokens 400
      llmapp generate "Hello" --backend hf          # transformers instead of llama.cpp
      llmapp generate --list
    """
    from prompts import available, load_prompt

    if list_templates:
        for name, path in sorted(available(templates_dir).items()):
            click.echo(f"{name:20s} {path}")
        return
    values = _parse_vars(variables)
    if prompt is not None:
        needed = [v for v in load_prompt(template, templates_dir).input_variables if v not in values]
        if not needed:
            raise click.UsageError(f"template {template!r} has no variable left for PROMPT; drop PROMPT or a --var")
        main = next((v for v in ("prompt", "task", "text", "question") if v in needed), needed[0])
        values[main] = prompt
    from chains.generate import generate_chain

    chain = generate_chain(_chat(model, backend, settings), template, templates_dir)
    _echo_stream(chain.stream(values))


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--strategy", type=click.Choice(["auto", "stuff", "map_reduce", "refine"]), default="auto",
              show_default=True, help="auto: stuff if the text fits the window, else map_reduce.")
@click.option("--chunk-tokens", type=int, default=2048, show_default=True,
              help="Text tokens per map/refine step (0: as many as fit the window). Smaller steps keep a small "
                   "model on track and cost less prefill.")
@model_options()
@generation_options(max_tokens=160, repetition_penalty=1.2)
def summarize(file, strategy, chunk_tokens, model, backend, settings):
    """Summarize a file of any length (.txt/.md/.html/.pdf).

    Long texts are cut by the model's own tokenizer so that no prompt exceeds its context window.

    \b
    Examples:
      llmapp summarize notes.md
      llmapp summarize book.txt --strategy refine --max-tokens 200
    """
    from chains.documents import read_document
    from chains.summarize import SummarizeConfig, summarize_stream
    from llmapp.core.errors import LLMAppError

    try:
        text = read_document(Path(file))
    except LLMAppError as exc:
        raise LLMAppError(f"cannot summarize {file}: {exc}") from None
    from llmapp import load_chat_model

    config = SummarizeConfig(chunk_tokens=chunk_tokens or None)
    chat = load_chat_model(model, backend=backend, **settings)
    _echo_stream(summarize_stream(text, chat, strategy, progress=True, config=config))


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--store", "-s", required=True, type=click.Path(file_okay=False), help="Store folder to create or update.")
@click.option("--index", "index_type", default=None,
              help="FAISS factory string: Flat (exact, default), HNSW32, IVF256,Flat. Default: keep the store's.")
@click.option("--embeddings", "-e", default=DEFAULT_EMBEDDINGS, show_default=True, help="Embedding model (new stores).")
@click.option("--chunk-tokens", type=int, default=None, help="Chunk size in embedding tokens (default 200).")
@click.option("--rebuild", is_flag=True, help="Ignore the existing store (even a corrupt one) and index everything.")
def index(paths, store, index_type, embeddings, chunk_tokens, rebuild):
    """Index files and folders into a FAISS store for retrieval.

    Reads .txt, .md, .html and .pdf, recursing folders. Re-running only re-embeds changed files and
    drops deleted ones.

    \b
    Examples:
      llmapp index docs/ --store store
      llmapp index a.pdf notes/ --store store --index HNSW32
    """
    import dataclasses

    from chains.index import build_index
    from chains.store import MANIFEST
    from llmapp import load_embeddings
    from llmapp.core.config import RAGConfig

    config = RAGConfig() if chunk_tokens is None else dataclasses.replace(RAGConfig(), chunk_tokens=chunk_tokens)
    existing = (Path(store) / MANIFEST).exists() and not rebuild
    emb = None if existing else load_embeddings(embeddings)  # an existing store keeps its own model
    report = build_index(list(paths), store, emb, index_type, config, rebuild=rebuild, progress=True)
    click.echo(f"{report.store}: {report.chunks} chunks | files: {report.files_indexed} indexed, "
               f"{report.files_unchanged} unchanged, {report.files_removed} removed, {report.files_skipped} skipped "
               f"| {report.seconds:.1f} s")
    for line in report.skipped:
        click.echo(f"  skipped {line}", err=True)


@click.command()
@click.argument("question")
@click.option("--store", "-s", required=True, type=click.Path(), help="A store built by `llmapp index`.")
@click.option("--retrieval", type=click.Choice(["vector", "bm25", "hybrid"]), default="hybrid", show_default=True,
              help="Vector search, BM25, or both fused by reciprocal rank.")
@click.option("--mmr", is_flag=True, help="Maximal marginal relevance: fewer near-duplicate chunks.")
@click.option("-k", "k", default=4, show_default=True, help="Chunks handed to the model.")
@click.option("--min-score", type=float, default=None, help="Cosine below which a chunk is irrelevant (default 0.25).")
@click.option("--json", "as_json", is_flag=True, help="Print {question, answer, sources, abstained} as JSON.")
@model_options()
@generation_options(max_tokens=128)
def ask(question, store, retrieval, mmr, k, min_score, as_json, model, backend, settings):
    """Answer a question from a store, with [n] citations and a Sources list.

    When nothing in the store is relevant, it says so instead of answering.

    \b
    Examples:
      llmapp ask "What is a VAE?" --store store
      llmapp ask "How are GANs trained?" --store store --retrieval vector --mmr -k 3
    """
    import dataclasses

    from chains.rag import rag_chain
    from chains.store import Store
    from llmapp.core.config import RAGConfig

    config = dataclasses.replace(RAGConfig(), retrieval=retrieval, mmr=mmr, k=k,
                                 **({"min_score": min_score} if min_score is not None else {}))
    loaded = Store.load(store)
    chain = rag_chain(loaded, _chat(model, backend, settings), config, return_sources=as_json)
    if as_json:
        json.dump(chain.invoke(question), sys.stdout, indent=1, ensure_ascii=False)
        click.echo()
        return
    _echo_stream(chain.stream(question))
