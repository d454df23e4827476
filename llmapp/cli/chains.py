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
from llmapp.core.config import RAGConfig
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
@click.option("--strategy", type=click.Choice(["auto", "stuff", "map_reduce", "refine", "extract", "select"]),
              default="auto", show_default=True,
              help="auto: chosen by the text's length (measured; see docs/chains.md). extract: pick the key "
                   "sentences, then let the model rewrite them. select: those sentences verbatim, no model call.")
@click.option("--chunk-tokens", type=int, default=1024, show_default=True,
              help="Text tokens per map/refine step (0: as many as fit the window). Smaller steps keep a small "
                   "model on track and cost less prefill.")
@click.option("--sentences", type=int, default=None, help="Summary length in sentences (default: by the text's length).")
@click.option("--guard", type=click.Choice(["drop", "flag", "off"]), default="drop", show_default=True,
              help="Sentences the text does not support (or with names, numbers, links it lacks): drop or flag them.")
@click.option("--embeddings", "-e", default=DEFAULT_EMBEDDINGS, show_default=True,
              help="Embeddings for the guard, extract and select.")
@click.option("--no-cache", is_flag=True, help="Do not keep finished steps on disk (by default an interrupted "
                                                 "long summary resumes where it stopped).")
@model_options()
@generation_options(max_tokens=200, repetition_penalty=1.0)
def summarize(file, strategy, chunk_tokens, sentences, guard, embeddings, no_cache, model, backend, settings):
    """Summarize a file of any length (.txt/.md/.html/.pdf).

    Long texts are cut by the model's own tokenizer so that no prompt exceeds its context window; a
    progress bar names the step (chunk i of n). Finished steps are kept under $LLMAPP_HOME/summaries
    until the summary is done, so running the same command again after an interruption resumes.

    \b
    Examples:
      llmapp summarize notes.md
      llmapp summarize book.txt --strategy map_reduce --max-tokens 240
      llmapp summarize notes.md --guard flag       # mark unsupported sentences instead of dropping them
    """
    from chains.documents import read_document
    from chains.summarize import SummarizeConfig, summarize_stream
    from llmapp import load_chat_model, load_embeddings
    from llmapp.core.errors import LLMAppError

    try:
        text = read_document(Path(file))
    except LLMAppError as exc:
        raise LLMAppError(f"cannot summarize {file}: {exc}") from None

    config = SummarizeConfig(chunk_tokens=chunk_tokens or None, sentences=sentences, guard=guard, cache=not no_cache)
    chat = load_chat_model(model, backend=backend, **settings)
    needs_embeddings = guard != "off" or strategy in ("auto", "extract", "select")
    emb = load_embeddings(embeddings) if needs_embeddings else None
    _echo_stream(summarize_stream(text, chat, strategy, progress=True, config=config, embeddings=emb))


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--store", "-s", required=True, type=click.Path(file_okay=False),
              help="Store folder, or postgresql:// URL (password in $PGPASSWORD), to create or update.")
@click.option("--index", "index_type", default=None,
              help="FAISS factory string: Flat (exact, default), HNSW32, IVF256,Flat; Postgres: hnsw (default) or "
                   "flat. Default: keep the store's.")
@click.option("--embeddings", "-e", default=DEFAULT_EMBEDDINGS, show_default=True, help="Embedding model (new stores).")
@click.option("--chunk-tokens", type=int, default=None, help="Chunk size in embedding tokens (default 200).")
@click.option("--chunker", type=click.Choice(["markdown", "recursive", "tokens"]), default=None,
              help="How files are cut: markdown (headings, paragraphs, sentences; default), recursive, tokens.")
@click.option("--rebuild", is_flag=True, help="Ignore the existing store (even a corrupt one) and index everything.")
@click.option("--max-file-mb", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Skip files larger than this (with a warning); raise it for one big document.")
def index(paths, store, index_type, embeddings, chunk_tokens, chunker, rebuild, max_file_mb):
    """Index files and folders into a FAISS store for retrieval.

    Reads .txt, .md, .html and .pdf, recursing folders. Re-running only re-embeds changed files and
    drops deleted ones.

    \b
    Examples:
      llmapp index docs/ --store store
      llmapp index a.pdf notes/ --store store --index HNSW32
      llmapp index docs/ --store "postgresql://app@db.example/docs?store=notes"
    """
    import dataclasses

    from chains.index import build_index
    from chains.stores import store_exists
    from llmapp import load_embeddings
    from llmapp.core.config import RAGConfig

    # None: the store's own chunking (a Postgres store checks it); a FAISS store takes the default
    chosen = {key: value for key, value in {"chunk_tokens": chunk_tokens, "chunker": chunker}.items() if value is not None}
    config = dataclasses.replace(RAGConfig(), **chosen) if chosen else None
    existing = store_exists(store) and not rebuild
    emb = None if existing else load_embeddings(embeddings)  # an existing store keeps its own model
    report = build_index(list(paths), store, emb, index_type, config, rebuild=rebuild, progress=True,
                         max_file_bytes=int(max_file_mb * 1e6))
    click.echo(f"{report.store}: {report.chunks} chunks | files: {report.files_indexed} indexed, "
               f"{report.files_unchanged} unchanged, {report.files_removed} removed, {report.files_skipped} skipped "
               f"| {report.seconds:.1f} s")
    for line in report.skipped:
        click.echo(f"  skipped {line}", err=True)


@click.command()
@click.argument("question")
@click.option("--store", "-s", required=True, type=click.Path(), help="A store built by `llmapp index` (folder or URL).")
@click.option("--retrieval", type=click.Choice(["vector", "bm25", "hybrid"]), default=None,
              help="Vector search, BM25, or both fused by reciprocal rank (default: RAGConfig's, hybrid).")
@click.option("--mmr", is_flag=True, help="Maximal marginal relevance: fewer near-duplicate chunks.")
@click.option("-k", "k", type=int, default=None, help="Chunks handed to the model (default: RAGConfig's, 4).")
@click.option("--min-score", type=float, default=None,
              help="Abstain below this relevance (default: the threshold calibrated for the store's embeddings).")
@click.option("--json", "as_json", is_flag=True, help="Print {question, answer, sources, abstained} as JSON.")
@model_options()
@generation_options(max_tokens=RAGConfig().max_tokens)  # the answer budget
def ask(question, store, retrieval, mmr, k, min_score, as_json, model, backend, settings):
    """Answer a question from a store, with [n] citations and a Sources list.

    When nothing in the store is relevant, it says so instead of answering. Each answer sentence is
    checked against the sources, and the answer ends with the source sentence that best answers the
    question (see RAGConfig in docs/chains.md).

    \b
    Examples:
      llmapp ask "What is a VAE?" --store store
      llmapp ask "How are GANs trained?" --store store --retrieval vector --mmr -k 3
    """
    import dataclasses

    from chains.rag import rag_chain
    from chains.stores import open_store
    from llmapp.core.config import RAGConfig

    chosen = {"retrieval": retrieval, "k": k, "min_score": min_score}
    # --max-tokens is the answer budget here: RAGConfig's unless given, and an explicit one wins.
    config = dataclasses.replace(RAGConfig(), mmr=mmr, max_tokens=None,
                                 **{key: value for key, value in chosen.items() if value is not None})
    loaded = open_store(store)
    chain = rag_chain(loaded, _chat(model, backend, settings), config, return_sources=as_json)
    if as_json:
        json.dump(chain.invoke(question), sys.stdout, indent=1, ensure_ascii=False)
        click.echo()
        return
    _echo_stream(chain.stream(question))
