"""Texts shipped with llmapp for demos, training, evaluation and benchmarks.

- ``GENAI_NOTES``: five short notes on generative AI (24 KB), the demo corpus for RAG and summaries.
- ``TINY_SHAKESPEARE``: Tiny Shakespeare (public domain; nanoGPT's ``shakespeare_char`` text, 1.1 MB),
  for training the minimal GPT, perplexity and the trainer benchmark.

    from llmapp.corpora import GENAI_NOTES, TINY_SHAKESPEARE
    llmapp index  "$(python -c 'from llmapp.corpora import GENAI_NOTES; print(GENAI_NOTES)')" --store ./store
"""

from pathlib import Path

HERE = Path(__file__).parent
GENAI_NOTES = HERE / "genai-notes"
TINY_SHAKESPEARE = HERE / "tinyshakespeare.txt"
