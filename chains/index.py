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
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chains.chunking import split_text
from chains.documents import (
    MAX_FILE_BYTES,
    PDF_BYTES_PER_TEXT_BYTE,
    check_size,
    find_files,
    read_document,
)
from chains.pgconnection import is_postgres
from chains.store import (
    FORMAT_VERSION,
    MANIFEST,
    Store,
    _check_index_type,
    _write_store,
    embedding_name,
    encode,
    is_store_like,
    make_index,
    rebuild_hint,
    sha256,
)
from llmapp.core.config import RAGConfig
from llmapp.core.errors import LLMAppError
from llmapp.core.files import crash_point, recover_dir

log = logging.getLogger(__name__)

LARGE_TEXT_CHARS = 1_000_000  # a file this long gets a warning: it takes minutes, not seconds
EMBED_BATCH = 512  # chunks per encode call: large enough to keep encode at full speed, small enough for a live bar


@dataclass
class IndexReport:
    """What :func:`build_index` did."""

    files_indexed: int = 0  # new or changed files, (re-)embedded
    files_skipped: int = 0  # binary, unreadable or empty files, each logged with a warning
    files_unchanged: int = 0  # same content hash as in the store: vectors reused
    files_removed: int = 0  # in the store before, gone from disk now
    chunks: int = 0  # chunks in the store after the update
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)  # "path: why" for each skipped file
    store: str = ""


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
        roots = [Path(p).expanduser().resolve() for p in paths]
        kept, todo = _plan(files, old_files, report, max_file_bytes)
        report.files_removed = sum(1 for f in old_files if f not in kept and f not in todo
                                   and (not Path(f).exists() or any(_under(Path(f), r) for r in roots)))
        keep_other = {f: v for f, v in old_files.items() if f not in kept and f not in todo
                      and Path(f).exists() and not any(_under(Path(f), r) for r in roots)}
        kept.update(keep_other)  # files indexed earlier from other folders stay

        if old and not todo and not report.files_removed and index_type in (None, old.manifest["index_type"]):
            report.chunks, report.seconds = len(old), round(time.perf_counter() - t0, 3)
            return report  # nothing changed: leave the store (and its timestamps) alone
        if index_type:
            _check_index_type(index_type)  # fail before embedding, not after
        if todo:  # the model is loaded only when something needs embedding
            embeddings = embeddings or (old.embeddings if old else _default_embeddings())
        docs, vectors = [], []
        if old:
            rows = [i for i, d in enumerate(old.docs) if d["source"] in kept]
            docs += [old.docs[i] for i in rows]
            vectors.append(np.asarray(old.vectors[rows], dtype="float32"))
        new_docs = _chunk_files(todo, embeddings, config, report, max_file_bytes)
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
            "root": _common_root(files), "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": files}


def _plan(files: list[Path], old_files: dict[str, Any], report: IndexReport,
          max_file_bytes: int = MAX_FILE_BYTES) -> tuple[dict, dict]:
    """Split files into unchanged (vectors reused) and to-do (new or changed), with their text."""
    kept, todo = {}, {}
    for path in files:
        key = str(path)
        try:
            check_size(path, max_file_bytes * (PDF_BYTES_PER_TEXT_BYTE if path.suffix.lower() == ".pdf" else 1),
                       fix="split it, or raise the limit with --max-file-mb {mb}")
            data = path.read_bytes()
        except OSError as exc:
            _skip(report, path, f"unreadable ({exc.strerror or exc})")
            continue
        except LLMAppError as exc:
            _skip(report, path, str(exc))
            continue
        digest = sha256(data)
        if key in old_files and old_files[key]["sha256"] == digest:
            kept[key] = old_files[key]
            report.files_unchanged += 1
        else:
            todo[key] = {"sha256": digest, "bytes": len(data)}
    return kept, todo


def _chunk_files(todo: dict[str, dict], embeddings: Any, config: RAGConfig, report: IndexReport,
                 max_file_bytes: int = MAX_FILE_BYTES) -> list[dict]:
    tokenizer = _tokenizer(embeddings)
    docs = []
    for key, meta in todo.items():
        try:
            text = read_document(Path(key), max_file_bytes)
        except LLMAppError as exc:
            _skip(report, Path(key), str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - one bad file (a hostile PDF, say) never stops the run
            _skip(report, Path(key), f"unreadable ({type(exc).__name__}: {str(exc)[:120]})")
            continue
        if not text.strip():
            _skip(report, Path(key), "no text")
            continue
        if len(text) > LARGE_TEXT_CHARS:
            log.warning("%s is large (%.1f M characters): chunking and embedding it takes a while", key, len(text) / 1e6)
        chunks = split_text(text, tokenizer, config)
        meta["chunks"] = len(chunks)
        docs += [{"source": key, "start": s, "end": e, "text": t} for s, e, t in chunks]
        report.files_indexed += 1
    return docs


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


def _skip(report: IndexReport, path: Path, why: str) -> None:
    log.warning("skipping %s: %s", path, why)
    report.files_skipped += 1
    report.skipped.append(f"{path}: {why}")


def _tokenizer(embeddings: Any) -> Any:
    client = getattr(embeddings, "client", None)
    tok = getattr(client, "tokenizer", None)
    if tok is None:  # an embeddings object with no tokenizer: count GPT-2-ish tokens via MiniLM's
        from llmapp.models.embeddings import load_sentence_transformer

        tok = load_sentence_transformer().tokenizer
    return tok


def _default_embeddings() -> Any:
    from llmapp.models.embeddings import load_embeddings

    return load_embeddings()


def embed_chunks(embeddings: Any, texts: list[str], progress: bool | Callable[[int, int], None] | None = None) -> Any:
    """Embed texts in batches of :data:`EMBED_BATCH`, reporting progress.

    Returns:
        A (len(texts), d) float32 array.
    """
    import numpy as np

    bar = None
    if progress is True and sys.stderr.isatty():
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), desc="embedding", unit="chunk")
    elif progress is True:  # piped or logged: plain lines, so a long run still shows it is alive
        progress = _PlainProgress("embedding", "chunks")
    out = []
    for i in range(0, len(texts), EMBED_BATCH):
        out.append(np.asarray(encode(embeddings, texts[i:i + EMBED_BATCH]), dtype="float32"))
        done = min(i + EMBED_BATCH, len(texts))
        if bar is not None:
            bar.update(done - bar.n)
        elif callable(progress):
            progress(done, len(texts))
    if bar is not None:
        bar.close()
    return np.concatenate(out) if out else np.zeros((0, 0), dtype="float32")


class _PlainProgress:
    """Progress as plain stderr lines (no carriage returns), at most one every few seconds."""

    def __init__(self, what: str, unit: str, every_s: float = 5.0) -> None:
        self.what, self.unit, self.every_s = what, unit, every_s
        self.t0 = self.last = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - self.last < self.every_s:
            return
        self.last = now
        rate = done / max(now - self.t0, 1e-9)
        eta = f", about {(total - done) / rate:.0f} s left" if done < total and rate > 0 else ""
        print(f"{self.what}: {done}/{total} {self.unit} ({100 * done / max(total, 1):.0f}%){eta}",
              file=sys.stderr, flush=True)


def _common_root(files: dict[str, Any]) -> str:
    if not files:
        return ""
    parents = [str(Path(f).parent) for f in files]
    return os.path.commonpath(parents)


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
