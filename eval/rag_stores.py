"""The stores ``rag-qa`` asks: one per corpus and chunking setting, built once and reused.

A question with a ``corpus`` field (``eval/data/rag-qa.jsonl``) is asked against that corpus's store
only; a question without one against ``--store`` or the bundled demo notes. Stores live under
``$LLMAPP_HOME/eval/stores/<corpus>-<folder hash>-<chunker>-<tokens>-<overlap>-<embeddings>`` and are
updated incrementally (``chains.index``), so a second run embeds nothing. The hash of the corpus's
resolved folder keeps two checkouts (or two folders of one name) apart: an update keeps the files of
other folders, so a store shared by both would hold every file twice.

    from eval.rag_stores import StoreSet
    stores = StoreSet(ctx)
    store = stores.get("harbor-library", RAGConfig())
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from eval.tasks.base import DATA
from llmapp.core.config import RAGConfig
from llmapp.core.errors import LLMAppError

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CORPORA = {  # corpus name in the datasets -> its folder
    "genai-notes": ROOT / "llmapp" / "corpora" / "genai-notes",
    "llmapp-docs": DATA / "corpora" / "llmapp-docs",
    "harbor-library": DATA / "corpora" / "harbor-library",
}
DEMO = "genai-notes"  # the corpus of questions that name none (genai-qa.jsonl)


def corpus_folder(name: str) -> Path:
    """The folder of corpus ``name`` (a known name, or a folder path)."""
    if name in CORPORA:
        return CORPORA[name]
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    raise LLMAppError(f"unknown corpus {name!r}; use one of: {', '.join(CORPORA)}, or a folder")


class StoreSet:
    """Loaded stores by (corpus, chunking), and the plain-LangChain pipelines by corpus."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.stores: dict[tuple, Any] = {}
        self.plain: dict[str, Any] = {}
        self._embeddings = None

    @property
    def embeddings(self) -> Any:
        if self._embeddings is None:
            from llmapp import load_embeddings

            self._embeddings = load_embeddings(self.ctx.embeddings)
        return self._embeddings

    def get(self, corpus: str | None, config: RAGConfig) -> Any:
        """The store for ``corpus`` chunked as ``config`` says (``--store`` when given, for every corpus)."""
        from chains.store import Store
        from chains.stores import open_store

        if self.ctx.store:  # a folder or a Postgres URL
            key: tuple = ("given", self.ctx.store)
            if key not in self.stores:
                self.stores[key] = open_store(self.ctx.store)
            return self.stores[key]
        corpus = corpus or DEMO
        key = (corpus, config.chunker, config.chunk_tokens, config.chunk_overlap)
        if key not in self.stores:
            self.stores[key] = Store.load(self.build(corpus, config), self.embeddings)
        return self.stores[key]

    def build(self, corpus: str, config: RAGConfig) -> Path:
        """Index ``corpus`` with ``config``'s chunking (incremental: unchanged files are not re-embedded)."""
        from chains.index import build_index
        from llmapp.core.paths import home

        source = corpus_folder(corpus).resolve()
        name = Path(corpus).name if corpus not in CORPORA else corpus
        tag = hashlib.sha256(str(source).encode()).hexdigest()[:8]
        emb = self.ctx.embeddings.replace("/", "_")
        settings = f"{config.chunker}-{config.chunk_tokens}-{config.chunk_overlap}-{emb}"
        folder = home() / "eval" / "stores" / f"{name}-{tag}-{settings}"
        build_index([source], folder, self.embeddings, config=config)
        log.info("store for %s: %s", corpus, folder)
        return folder

    def plain_rag(self, corpus: str | None) -> Any:
        """The plain LangChain pipeline over the same corpus (over ``--store``'s files when given)."""
        from eval.plain_rag import PlainRAG

        key = "given" if self.ctx.store else (corpus or DEMO)
        if key not in self.plain:
            if self.ctx.store:
                paths = list(self.get(None, RAGConfig()).manifest["files"])
            else:
                paths = [corpus_folder(key)]
            self.plain[key] = PlainRAG(paths, self.embeddings)
        return self.plain[key]
