"""Building stores: find and read files, split them token-aware, embed in batches, write the store.

The store format itself (FAISS + JSONL docstore + vectors, never unpickled) is ``chains.store``.
Updates are incremental (content hashes), written to a temporary folder and swapped in under a file
lock, so a crash or a concurrent writer never leaves a half-written store behind.

    from chains.index import build_index
    from chains.store import Store
    report = build_index(["docs/"], "store")            # IndexReport(files_indexed=..., chunks=...)
    hits = Store.load("store").search("What is a VAE?", k=4)

    llmapp index docs/ --store store [--index Flat|HNSW32|IVF256,Flat]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chains.documents import MAX_FILE_BYTES, find_files
from chains.ingest import IndexReport, chunk_files, common_root, default_embeddings, embed_chunks, plan_update
from chains.pgconnection import is_postgres
from chains.store import (
    FORMAT_VERSION,
    MANIFEST,
    Store,
    _check_index_type,
    _write_store,
    embedding_name,
    is_store_like,
    make_index,
    rebuild_hint,
)
from llmapp.core.config import RAGConfig
from llmapp.core.errors import LLMAppError
from llmapp.core.files import crash_point, recover_dir

log = logging.getLogger(__name__)


def build_index(paths: list[str | Path], store_dir: str | Path, embeddings: Any = None, index_type: str | None = "Flat",
                config: RAGConfig | None = None, *, rebuild: bool = False,
                progress: bool | Callable[[int, int], None] | None = None,
                max_file_bytes: int = MAX_FILE_BYTES) -> IndexReport:
    """Index files and folders into a store, incrementally.

    Args:
        paths: files and folders (recursed for .txt/.md/.html/.pdf).
        store_dir: the store folder; created, or updated if it exists. A ``postgresql://`` URL builds a
            Postgres store instead (``chains.pgindex``).
        embeddings: LangChain embeddings; default: ``load_embeddings()`` (or the existing store's model).
        index_type: a FAISS factory string: ``Flat`` (exact), ``HNSW32``, ``IVF256,Flat`` ...; None keeps
            an existing store's type (else Flat). Changing it re-uses the stored vectors: no re-embedding.
        config: chunk size and overlap (``chunk_tokens``, ``chunk_overlap``).
        rebuild: ignore an existing (even corrupt) store and index everything again.
        progress: True for a tqdm bar on stderr (plain lines when stderr is not a terminal), a
            ``callback(done, total)``, or None/False for none.
        max_file_bytes: larger files are skipped with a warning (see :data:`MAX_FILE_BYTES`).

    Returns:
        An :class:`IndexReport` with file and chunk counts.

    Raises:
        LLMAppError: nothing to index, an existing store that is corrupt or built with other
            embeddings, a --store folder holding other files, or an index type FAISS does not know.
    """
    import numpy as np
    from filelock import FileLock

    if is_postgres(store_dir):  # a postgresql:// URL: the same files and chunks, written in one transaction
        from chains.pgindex import build_pg_index

        return build_pg_index(paths, store_dir, embeddings, index_type, config, rebuild=rebuild, progress=progress)
    t0 = time.perf_counter()
    config = config or RAGConfig()
    store = _store_path(store_dir)
    report = IndexReport(store=str(store))
    files = find_files(paths, skipped=report.skipped)
    report.files_skipped = len(report.skipped)
    _check_target(store, rebuild)
    with FileLock(str(store) + ".lock"):
        recover_dir(store)  # a writer killed mid-swap: put its previous store back, delete its leftovers
        old = Store.load(store, embeddings) if not rebuild and (store / MANIFEST).exists() else None  # checked
        old_files = old.manifest["files"] if old else {}
        kept, todo, _ = plan_update(files, paths, old_files, report, max_file_bytes)
        if old and not todo and not report.files_removed and index_type in (None, old.manifest["index_type"]):
            report.chunks, report.seconds = len(old), round(time.perf_counter() - t0, 3)
            return report  # nothing changed: leave the store (and its timestamps) alone
        if index_type:
            _check_index_type(index_type)  # fail before embedding, not after
        if todo:  # the model is loaded only when something needs embedding
            embeddings = embeddings or (old.embeddings if old else default_embeddings())
        docs, vectors = [], []
        if old:
            rows = [i for i, d in enumerate(old.docs) if d["source"] in kept]
            docs += [old.docs[i] for i in rows]
            vectors.append(np.asarray(old.vectors[rows], dtype="float32"))
        new_docs = chunk_files(todo, embeddings, config, report, max_file_bytes)
        new_vectors = embed_chunks(embeddings, [d["text"] for d in new_docs], progress)
        _check_dimension(store, old, embeddings, new_vectors)
        crash_point("index:embedded")
        docs += new_docs
        vectors.append(new_vectors)
        if not len(docs):
            raise LLMAppError(f"nothing to index: all {len(files)} file(s) were skipped "
                              f"({'; '.join(report.skipped[:3])}); check the files")
        dim = int(new_vectors.shape[1]) if len(new_vectors) else old.manifest["dimension"]
        matrix = np.concatenate([v.reshape(-1, dim) for v in vectors if v.size])
        index_type = index_type or (old.manifest["index_type"] if old else "Flat")
        files_meta = {**kept, **{f: meta for f, meta in todo.items() if meta.get("chunks")}}
        model_name = old.manifest["embedding_model"] if old else embedding_name(embeddings)
        manifest = _manifest(model_name, dim, index_type, config, files_meta)
        _write_store(store, manifest, make_index(matrix, index_type), docs, matrix)
    report.chunks = len(docs)
    report.seconds = round(time.perf_counter() - t0, 3)
    log.info("indexed %s", report)
    return report


def _check_dimension(store: Path, old: Store | None, embeddings: Any, new_vectors: Any) -> None:
    """Refuse new vectors whose width differs from the store's (a one-line error, not a FAISS assertion)."""
    if old and len(new_vectors) and new_vectors.shape[1] != old.manifest["dimension"]:
        raise LLMAppError(f"store {store} holds {old.manifest['dimension']}-dimensional vectors but "
                          f"{embedding_name(embeddings)} makes {new_vectors.shape[1]}-dimensional ones; "
                          f"use {old.manifest['embedding_model']!r}, or {rebuild_hint(store)}")


def _manifest(model_name: str, dim: int, index_type: str, config: RAGConfig, files: dict[str, Any]) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "embedding_model": model_name, "dimension": dim,
            "index_type": index_type, "chunk_tokens": config.chunk_tokens, "chunk_overlap": config.chunk_overlap,
            "chunker": config.chunker,
            "root": common_root(files), "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": files}


def _store_path(store_dir: str | Path) -> Path:
    """The store folder as an absolute path (its parent resolved, the folder itself taken as named)."""
    path = Path(store_dir).expanduser()
    return path.parent.resolve() / path.name if path.name not in ("", ".", "..") else path.resolve()


def _check_target(store: Path, rebuild: bool) -> None:
    """Refuse a --store that is a file, or a folder of other files (never deleted, even with --rebuild);
    otherwise make sure its parent exists."""
    store.parent.mkdir(parents=True, exist_ok=True)
    if not store.exists():
        return
    if not store.is_dir():
        raise LLMAppError(f"{store} is a file, not a store folder; pick a new or empty folder for --store")
    if (store / MANIFEST).exists() or not any(store.iterdir()):
        return
    if not is_store_like(store):
        raise LLMAppError(f"{store} holds other files and is not an llmapp store; pick a new or empty folder "
                          "for --store (nothing there was touched)")
    if not rebuild:
        raise LLMAppError(f"store {store} is corrupt or partial ({MANIFEST} is missing); {rebuild_hint(store)}")

