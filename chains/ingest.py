"""Ingesting files into a store: the steps every store shares, FAISS folder or Postgres.

Which files changed (content hashes), reading and chunking them token-aware, and embedding the
chunks in batches with a progress bar. ``chains.index`` (folders) and ``chains.pgindex`` (Postgres)
write what these produce, each in its own format.

    from chains.ingest import IndexReport, plan_files, chunk_files, embed_chunks
    report = IndexReport()
    kept, todo = plan_files(paths, old_files={}, report=report)
    docs = chunk_files(todo, embeddings, RAGConfig(), report)
    vectors = embed_chunks(embeddings, [d["text"] for d in docs], progress=True)
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
from chains.documents import MAX_FILE_BYTES, PDF_BYTES_PER_TEXT_BYTE, check_size, read_document
from chains.store import encode, sha256
from llmapp.core.config import RAGConfig
from llmapp.core.errors import LLMAppError

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


def plan_files(files: list[Path], old_files: dict[str, Any], report: IndexReport,
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
            skip_file(report, path, f"unreadable ({exc.strerror or exc})")
            continue
        except LLMAppError as exc:
            skip_file(report, path, str(exc))
            continue
        digest = sha256(data)
        if key in old_files and old_files[key]["sha256"] == digest:
            kept[key] = old_files[key]
            report.files_unchanged += 1
        else:
            todo[key] = {"sha256": digest, "bytes": len(data)}
    return kept, todo


def plan_update(files: list[Path], paths: list, old_files: dict[str, Any], report: IndexReport,
                max_file_bytes: int = MAX_FILE_BYTES) -> tuple[dict, dict, list[str]]:
    """What an update of a store holding ``old_files`` does, for ``files`` found under ``paths``.

    Returns:
        ``(kept, todo, gone)``: files whose vectors stay (unchanged ones, and those indexed earlier
        from folders not named now), new or changed files to chunk and embed, and files to drop
        (deleted from disk, or no longer under the folders named). ``report.files_removed`` is set.
    """
    roots = [Path(p).expanduser().resolve() for p in paths]
    kept, todo = plan_files(files, old_files, report, max_file_bytes)
    gone = [f for f in old_files if f not in kept and f not in todo
            and (not Path(f).exists() or any(is_under(Path(f), r) for r in roots))]
    report.files_removed = len(gone)
    kept.update({f: v for f, v in old_files.items() if f not in kept and f not in todo and f not in gone})
    return kept, todo, gone


def chunk_files(todo: dict[str, dict], embeddings: Any, config: RAGConfig, report: IndexReport,
                max_file_bytes: int = MAX_FILE_BYTES) -> list[dict]:
    tokenizer = _tokenizer(embeddings)
    docs = []
    for key, meta in todo.items():
        try:
            text = read_document(Path(key), max_file_bytes)
        except LLMAppError as exc:
            skip_file(report, Path(key), str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - one bad file (a hostile PDF, say) never stops the run
            skip_file(report, Path(key), f"unreadable ({type(exc).__name__}: {str(exc)[:120]})")
            continue
        if not text.strip():
            skip_file(report, Path(key), "no text")
            continue
        if len(text) > LARGE_TEXT_CHARS:
            log.warning("%s is large (%.1f M characters): chunking and embedding it takes a while", key, len(text) / 1e6)
        chunks = split_text(text, tokenizer, config)
        meta["chunks"] = len(chunks)
        docs += [{"source": key, "start": s, "end": e, "text": t} for s, e, t in chunks]
        report.files_indexed += 1
    return docs


def skip_file(report: IndexReport, path: Path, why: str) -> None:
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


def default_embeddings() -> Any:
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


def common_root(files: dict[str, Any]) -> str:
    if not files:
        return ""
    parents = [str(Path(f).parent) for f in files]
    return os.path.commonpath(parents)


def is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
