"""``llmapp demo``: the main job, as run by ``make demo``.

Indexes the bundled generative-AI notes (``llmapp/corpora/genai-notes``) into
``$LLMAPP_HOME/demo-store`` (incrementally: the second run re-embeds nothing) and streams a cited
answer to a question about them, with its Sources.

    llmapp demo
    llmapp demo --question "How are VAEs trained?"
"""

from __future__ import annotations

import click

DEFAULT_QUESTION = "What are the two neural networks in a GAN, and what does each one do?"


@click.command()
@click.option("--question", "-q", default=DEFAULT_QUESTION, show_default=True, help="What to ask about the notes.")
@click.option("--max-tokens", default=128, show_default=True, help="Longest answer, in tokens.")
@click.option("--retrieval", type=click.Choice(["vector", "bm25", "hybrid"]), default="hybrid", show_default=True,
              help="How chunks are retrieved.")
def demo(question: str, max_tokens: int, retrieval: str) -> None:
    """Index the bundled demo notes and answer a question about them, with [n] citations.

    \b
    Example:
      llmapp demo --question "What is LangChain?"
      llmapp ask "What are flow-based models?" --store ~/.cache/llmapp/demo-store   # afterwards
    """
    import dataclasses

    from chains.index import build_index
    from chains.rag import rag_chain
    from llmapp import load_chat_model
    from llmapp.core.config import RAGConfig
    from llmapp.core.paths import home
    from llmapp.corpora import GENAI_NOTES as DEMO_DATA

    store = home() / "demo-store"
    report = build_index([DEMO_DATA], store, progress=True)
    state = "up to date" if not report.files_indexed else f"{report.files_indexed} file(s) embedded"
    click.echo(f"Store {store}: {report.files_indexed + report.files_unchanged} notes, {report.chunks} chunks "
               f"({state}, {report.seconds:.1f} s)")
    click.echo(f"Try: llmapp ask \"...\" --store {store}\n")
    chat = load_chat_model(max_tokens=max_tokens)
    chain = rag_chain(store, chat, dataclasses.replace(RAGConfig(), retrieval=retrieval))
    _ = chain.store.embeddings.client, chat.warm()  # load both models now, so their load messages come before the answer
    click.echo(f"Q: {question}\nA: ", nl=False)
    stream = chain.stream(question)
    try:
        for piece in stream:
            click.echo(piece, nl=False)
    finally:
        stream.close()
    click.echo()
