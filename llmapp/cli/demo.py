"""``llmapp demo``: the main job on the bundled models, as run by ``make demo``.

    llmapp demo
    llmapp demo --question "What is a transformer?"
"""

from __future__ import annotations

import click


@click.command()
@click.option("--question", default="In two sentences, what is generative AI?", show_default=True,
              help="What to ask the bundled chat model.")
@click.option("--max-tokens", default=128, show_default=True, help="Longest reply, in tokens.")
def demo(question: str, max_tokens: int) -> None:
    """Stream an answer from the bundled chat model (SmolLM2-135M-Instruct).

    \b
    Example:
      llmapp demo --question "Why is the sky blue?"
    """
    from llmapp import load_chat_model

    click.echo(f"Q: {question}\nA: ", nl=False)
    for chunk in load_chat_model(max_tokens=max_tokens).stream(question):
        click.echo(chunk.content, nl=False)
    click.echo()
