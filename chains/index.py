"""Document stores for retrieval: load files, split them token-aware, embed in batches, save FAISS + JSONL.

A store is a folder:

    manifest.json     format version, embedding model, dimension, index type, per-file content hashes
    index.faiss       the FAISS index (``faiss.write_index``; rows line up with the docstore)
    docstore.jsonl    one chunk per line: {"source", "start", "end", "text"}
    vectors.npy       the chunk vectors (float32), so an update re-embeds only changed files

Nothing is unpickled on load: LangChain's ``FAISS.load_local`` unpickles its docstore, so it is never
used on user paths; :meth:`Store.as_langchain` builds the LangChain vector store in memory instead.
Updates are incremental (content hashes), written to a temporary folder and swapped in under a file
lock, so a crash or a concurrent writer never leaves a half-written store behind.

    from chains.index import build_index, Store
    report = build_index(["docs/"], "store")            # IndexReport(files_indexed=..., chunks=...)
    hits = Store.load("store").search("What is a VAE?", k=4)

    llmapp index docs/ --store store [--index Flat|HNSW32|IVF256,Flat]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmapp.core.config import RAGConfig
from llmapp.core.errors import LLMAppError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the store layout changes; older stores are refused with a rebuild hint
MANIFEST, INDEX_FILE, DOCSTORE, VECTORS = "manifest.json", "index.faiss", "docstore.jsonl", "vectors.npy"
SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")  # what a folder walk picks up
EMBED_BATCH = 512  # chunks per encode call: large enough to keep encode at full speed, small enough for a live bar
HNSW_EF_SEARCH = 256  # HNSW search breadth: 128 gave recall@10 of 0.92 at 10k chunks, 256 buys it back
IVF_NPROBE = 16  # IVF lists visited per query; a recall/latency trade-off


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


@dataclass
class Hit:
    """One retrieved chunk."""

    text: str
    source: str  # the file's absolute path
    start: int  # character offsets of the chunk in the file's extracted text
    end: int
    score: float  # cosine similarity to the query (vectors are normalized)
    id: int = -1  # row in the store


# ---------------------------------------------------------------------------------------------- loading

def read_document(path: Path) -> str:
    """The text of a .txt/.md/.html/.pdf file.

    Raises:
        LLMAppError: binary or unreadable content (the caller skips the file and counts it).
    """
    suffix = path.suffix.lower()
    data = path.read_bytes()
    if suffix == ".pdf":
        return _read_pdf(path)
    if b"\x00" in data[:8192]:
        raise LLMAppError("binary content")
    text = decode_bytes(data)
    if suffix in (".html", ".htm"):
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(text, "html.parser")
        for tag in soup(["script", "style", "noscript"]):
            tag.decompose()
        text = soup.get_text("\n")
    return text


_LATIN = {"cp1250", "cp1252", "cp1254", "cp1257", "latin_1", "iso8859_2", "iso8859_9", "iso8859_15", "mac_roman"}


def decode_bytes(data: bytes) -> str:
    """Decode text of unknown encoding: UTF-8 (BOM or not), then charset detection, then latin-1.

    Detection cannot tell the Latin code pages apart on a short text (``café`` reads as cp1250 too), so
    when it lands on one of them, Windows-1252, the most common, is preferred if the bytes fit it.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(data).best()
        if best is not None:
            if best.encoding in _LATIN:
                try:
                    return data.decode("cp1252")
                except UnicodeDecodeError:
                    pass
            return str(best)
    except ImportError:  # charset-normalizer comes with requests, but is not a hard dependency
        pass
    return data.decode("latin-1")  # never fails: every byte is a character


def _read_pdf(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise LLMAppError(f"unreadable PDF ({exc})") from None


def find_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files to index: each path itself, or the supported files found by recursing a folder.

    Raises:
        LLMAppError: a path that does not exist, or nothing to index at all.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise LLMAppError(f"{raw} does not exist; give files or folders to index")
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
        else:
            found.append(path)
    if not found:
        raise LLMAppError(f"no {'/'.join(s[1:] for s in SUFFIXES)} files under {', '.join(map(str, paths))}; "
                          "add documents or point at another folder")
    return sorted({p.resolve() for p in found})


def split_text(text: str, tokenizer: Any, config: RAGConfig) -> list[tuple[int, int, str]]:
    """Split ``text`` into chunks of about ``config.chunk_tokens`` embedding-model tokens.

    Returns:
        ``(start, end, chunk)`` tuples, with character offsets into ``text``.
    """
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    def length(piece: str) -> int:  # verbose=False: counting a long piece is fine, we never feed it whole
        return len(tokenizer.encode(piece, add_special_tokens=False, verbose=False))

    splitter = RecursiveCharacterTextSplitter(chunk_size=config.chunk_tokens, chunk_overlap=config.chunk_overlap,
                                              length_function=length, add_start_index=True)
    out = []
    for doc in splitter.create_documents([text]):
        start = int(doc.metadata.get("start_index", -1))
        if start < 0:  # the splitter could not place it (whitespace changed); find it ourselves
            start = max(0, text.find(doc.page_content))
        out.append((start, start + len(doc.page_content), doc.page_content))
    return out


# ---------------------------------------------------------------------------------------------- the store

class Store:
    """A loaded store: FAISS index, chunk texts with their sources and offsets, and the vectors.

    Build one with :func:`build_index`; open it with :meth:`Store.load`.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], index: Any, docs: list[dict[str, Any]],
                 vectors: Any, embeddings: Any) -> None:
        self.path, self.manifest, self.index, self.docs = path, manifest, index, docs
        self.vectors = vectors  # (N, d) float32, row i = docs[i]
        self._embeddings = embeddings  # None: the manifest's model, loaded on first query
        self.cache: dict[str, Any] = {}  # derived structures (the BM25 index) built once per store

    def __len__(self) -> int:
        return len(self.docs)

    @property
    def embeddings(self) -> Any:
        """The model queries are embedded with (the store's own, unless another was given)."""
        if self._embeddings is None:
            from llmapp.models.embeddings import load_embeddings

            self._embeddings = load_embeddings(self.manifest["embedding_model"])
        return self._embeddings

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, chunks={len(self)}, index={self.manifest['index_type']!r})"

    @classmethod
    def load(cls, store_dir: str | Path, embeddings: Any = None) -> Store:
        """Open a store without unpickling anything.

        Args:
            store_dir: the folder :func:`build_index` wrote.
            embeddings: the model to embed queries with; default: the store's own
                (``load_embeddings(manifest["embedding_model"])``).

        Raises:
            LLMAppError: no store there (index it first), a corrupt or partial store, another
                format version, or embeddings other than those the store was built with.
        """
        path = Path(store_dir).expanduser()
        if not (path / MANIFEST).exists():
            if path.is_dir() and any(path.iterdir()):
                raise LLMAppError(f"{path} is not an llmapp store (no {MANIFEST}); pick another folder or rebuild it "
                                  f"with: llmapp index FILES --store {path} --rebuild")
            raise LLMAppError(f"no store at {path}; build one first with: llmapp index FILES --store {path}")
        manifest = _read_manifest(path)
        embeddings = _check_embeddings(manifest, embeddings, path)
        return cls(path, manifest, *_read_payload(path, manifest), embeddings)

    def embed_query(self, query: str) -> Any:
        """The query as a (1, d) float32 array."""
        import numpy as np

        return np.asarray(_encode(self.embeddings, [query]), dtype="float32").reshape(1, -1)

    def search(self, query: str, k: int = 4) -> list[Hit]:
        """The ``k`` chunks nearest to ``query`` by cosine similarity, best first."""
        if not query.strip():
            raise LLMAppError("empty query: ask something")
        return self.search_vector(self.embed_query(query), k)

    def search_vector(self, vector: Any, k: int) -> list[Hit]:
        """The ``k`` nearest chunks to an already-embedded (1, d) query vector."""
        if not self.docs or k <= 0:
            return []
        scores, ids = self.index.search(vector, min(k, len(self.docs)))
        return [self.hit(int(i), float(s)) for s, i in zip(scores[0], ids[0], strict=False) if i >= 0]

    def hit(self, row: int, score: float) -> Hit:
        doc = self.docs[row]
        return Hit(doc["text"], doc["source"], doc["start"], doc["end"], score, row)

    def display_name(self, source: str) -> str:
        """A short name for a source: its path under the folder the store's files share."""
        root = self.manifest.get("root")
        try:
            return str(Path(source).relative_to(root)) if root else source
        except ValueError:
            return source

    def as_langchain(self) -> Any:
        """The same index as a ``langchain_community`` FAISS vector store, built in memory (no pickle)."""
        from langchain_community.docstore.in_memory import InMemoryDocstore
        from langchain_community.vectorstores import FAISS
        from langchain_core.documents import Document

        docstore = InMemoryDocstore({str(i): Document(d["text"], metadata={k: d[k] for k in ("source", "start", "end")})
                                     for i, d in enumerate(self.docs)})
        return FAISS(self.embeddings, self.index, docstore, {i: str(i) for i in range(len(self.docs))},
                     normalize_L2=False, distance_strategy="MAX_INNER_PRODUCT")


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        for key in ("format_version", "embedding_model", "dimension", "index_type", "files", "payload"):
            manifest[key]  # noqa: B018 - presence check
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LLMAppError(f"store {path} is corrupt ({MANIFEST}: {exc!r}); rebuild it with: "
                          f"llmapp index FILES --store {path} --rebuild") from None
    if manifest["format_version"] != FORMAT_VERSION:
        raise LLMAppError(f"store {path} has format {manifest['format_version']}, this llmapp reads {FORMAT_VERSION}; "
                          f"rebuild it with: llmapp index FILES --store {path} --rebuild")
    return manifest


def _read_payload(path: Path, manifest: dict[str, Any]) -> tuple[Any, list[dict[str, Any]], Any]:
    """Index, docstore and vectors, each checked against the sizes and hashes the manifest recorded."""
    import faiss
    import numpy as np

    def corrupt(why: str) -> LLMAppError:
        return LLMAppError(f"store {path} is corrupt or partial ({why}); rebuild it with: "
                           f"llmapp index FILES --store {path} --rebuild")

    for name, expected in manifest["payload"].items():
        file = path / name
        if not file.exists():
            raise corrupt(f"{name} is missing")
        if file.stat().st_size != expected["size"] or _sha256(file.read_bytes()) != expected["sha256"]:
            raise corrupt(f"{name} does not match the manifest")
    try:
        index = faiss.read_index(str(path / INDEX_FILE))
        docs = [json.loads(line) for line in (path / DOCSTORE).read_text(encoding="utf-8").splitlines() if line]
        vectors = np.load(path / VECTORS, allow_pickle=False)  # allow_pickle=False: a .npy can carry pickles
    except (RuntimeError, ValueError, OSError) as exc:
        raise corrupt(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    if not (index.ntotal == len(docs) == len(vectors)):
        raise corrupt(f"{index.ntotal} vectors in the index, {len(docs)} chunks, {len(vectors)} stored vectors")
    _tune(index)
    return index, docs, vectors


def _tune(index: Any) -> None:
    """Search-time settings that ``write_index`` does not keep."""
    import faiss

    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = HNSW_EF_SEARCH
    try:
        faiss.extract_index_ivf(index).nprobe = IVF_NPROBE
    except (RuntimeError, TypeError):  # not an IVF index
        pass


def _check_embeddings(manifest: dict[str, Any], embeddings: Any, path: Path) -> Any:
    if embeddings is None:
        return None  # Store.embeddings loads the manifest's model when a query first needs it
    name = embedding_name(embeddings)
    if name != manifest["embedding_model"]:
        raise LLMAppError(f"store {path} was built with embeddings {manifest['embedding_model']!r}, not {name!r}; "
                          f"use that model, or rebuild the store with: llmapp index FILES --store {path} --rebuild")
    return embeddings


def embedding_name(embeddings: Any) -> str:
    """The name a store records for an embeddings object (a registry name, path or hub id)."""
    for attr in ("model", "model_name"):
        value = getattr(embeddings, attr, None)
        if isinstance(value, str):
            return value
    return type(embeddings).__name__


def _encode(embeddings: Any, texts: list[str]) -> Any:
    if hasattr(embeddings, "encode"):  # llmapp's LocalEmbeddings: numpy straight from sentence-transformers
        return embeddings.encode(texts)
    return embeddings.embed_documents(texts)  # any LangChain Embeddings


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------- building

def build_index(paths: list[str | Path], store_dir: str | Path, embeddings: Any = None, index_type: str | None = "Flat",
                config: RAGConfig | None = None, *, rebuild: bool = False,
                progress: bool | Callable[[int, int], None] | None = None) -> IndexReport:
    """Index files and folders into a store, incrementally.

    Args:
        paths: files and folders (recursed for .txt/.md/.html/.pdf).
        store_dir: the store folder; created, or updated if it exists.
        embeddings: LangChain embeddings; default: ``load_embeddings()`` (or the existing store's model).
        index_type: a FAISS factory string: ``Flat`` (exact), ``HNSW32``, ``IVF256,Flat`` ...; None keeps
            an existing store's type (else Flat). Changing it re-uses the stored vectors: no re-embedding.
        config: chunk size and overlap (``chunk_tokens``, ``chunk_overlap``).
        rebuild: ignore an existing (even corrupt) store and index everything again.
        progress: True for a tqdm bar on stderr, a ``callback(done, total)``, or None/False for none.

    Returns:
        An :class:`IndexReport` with file and chunk counts.

    Raises:
        LLMAppError: nothing to index, an existing store that is corrupt or built with other
            embeddings, or an index type FAISS does not know.
    """
    import numpy as np
    from filelock import FileLock

    t0 = time.perf_counter()
    config = config or RAGConfig()
    store = Path(store_dir).expanduser().resolve()
    files = find_files(paths)
    if store.exists() and (not store.is_dir() or (any(store.iterdir()) and not (store / MANIFEST).exists())):
        raise LLMAppError(f"{store} exists and is not an llmapp store; pick a new or empty folder for --store")
    store.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(store) + ".lock"):
        old = None
        if not rebuild and (store / MANIFEST).exists():
            old = Store.load(store, embeddings)  # refuses other embeddings and corrupt stores
        report = IndexReport(store=str(store))
        old_files = old.manifest["files"] if old else {}
        roots = [Path(p).expanduser().resolve() for p in paths]
        kept, todo = _plan(files, old_files, report)
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
        new_docs = _chunk_files(todo, embeddings, config, report)
        new_vectors = embed_chunks(embeddings, [d["text"] for d in new_docs], progress)
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
        manifest = {"format_version": FORMAT_VERSION, "embedding_model": model_name,
                    "dimension": dim, "index_type": index_type, "chunk_tokens": config.chunk_tokens,
                    "chunk_overlap": config.chunk_overlap, "root": _common_root(files_meta),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": files_meta}
        _write_store(store, manifest, make_index(matrix, index_type), docs, matrix)
    report.chunks = len(docs)
    report.seconds = round(time.perf_counter() - t0, 3)
    log.info("indexed %s", report)
    return report


def _plan(files: list[Path], old_files: dict[str, Any], report: IndexReport) -> tuple[dict, dict]:
    """Split files into unchanged (vectors reused) and to-do (new or changed), with their text."""
    kept, todo = {}, {}
    for path in files:
        key = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            _skip(report, path, f"unreadable ({exc.strerror or exc})")
            continue
        digest = _sha256(data)
        if key in old_files and old_files[key]["sha256"] == digest:
            kept[key] = old_files[key]
            report.files_unchanged += 1
        else:
            todo[key] = {"sha256": digest, "bytes": len(data)}
    return kept, todo


def _chunk_files(todo: dict[str, dict], embeddings: Any, config: RAGConfig, report: IndexReport) -> list[dict]:
    tokenizer = _tokenizer(embeddings)
    docs = []
    for key, meta in todo.items():
        try:
            text = read_document(Path(key))
        except (LLMAppError, OSError) as exc:
            _skip(report, Path(key), str(exc))
            continue
        if not text.strip():
            _skip(report, Path(key), "no text")
            continue
        chunks = split_text(text, tokenizer, config)
        meta["chunks"] = len(chunks)
        docs += [{"source": key, "start": s, "end": e, "text": t} for s, e, t in chunks]
        report.files_indexed += 1
    return docs


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
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), desc="embedding", unit="chunk", disable=None)
    out = []
    for i in range(0, len(texts), EMBED_BATCH):
        out.append(np.asarray(_encode(embeddings, texts[i:i + EMBED_BATCH]), dtype="float32"))
        done = min(i + EMBED_BATCH, len(texts))
        if bar is not None:
            bar.update(done - bar.n)
        elif callable(progress):
            progress(done, len(texts))
    if bar is not None:
        bar.close()
    return np.concatenate(out) if out else np.zeros((0, 0), dtype="float32")


def _check_index_type(index_type: str) -> None:
    import faiss

    try:
        faiss.index_factory(8, index_type, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError:
        raise LLMAppError(f"unknown FAISS index type {index_type!r}; use Flat, HNSW32, or an IVF factory "
                          "string such as IVF256,Flat") from None


def make_index(vectors: Any, index_type: str) -> Any:
    """A FAISS inner-product index of ``index_type`` (a factory string) holding ``vectors``."""
    import faiss

    dim = vectors.shape[1]
    try:
        index = faiss.index_factory(dim, index_type, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError:
        raise LLMAppError(f"unknown FAISS index type {index_type!r}; use Flat, HNSW32, or an IVF factory "
                          "string such as IVF256,Flat") from None
    if not index.is_trained:
        ivf = faiss.extract_index_ivf(index)
        if len(vectors) < ivf.nlist:
            raise LLMAppError(f"{index_type} needs at least {ivf.nlist} chunks to train, the store has {len(vectors)}; "
                              "use --index Flat, or fewer IVF lists")
        index.train(vectors)
    if hasattr(index, "hnsw"):
        index.hnsw.efConstruction = 80  # build a better graph: recall matters more than build time here
    index.add(vectors)
    _tune(index)
    return index


def _write_store(store: Path, manifest: dict[str, Any], index: Any, docs: list[dict], vectors: Any) -> None:
    """Write every file into a temporary folder beside ``store``, then swap it in."""
    import faiss
    import numpy as np

    tmp = Path(tempfile.mkdtemp(prefix=f".{store.name}.tmp-", dir=store.parent))
    try:
        faiss.write_index(index, str(tmp / INDEX_FILE))
        with (tmp / DOCSTORE).open("w", encoding="utf-8") as f:
            for doc in docs:
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
        np.save(tmp / VECTORS, np.ascontiguousarray(vectors, dtype="float32"), allow_pickle=False)
        manifest["payload"] = {name: {"size": (tmp / name).stat().st_size, "sha256": _sha256((tmp / name).read_bytes())}
                               for name in (INDEX_FILE, DOCSTORE, VECTORS)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
        for name in (INDEX_FILE, DOCSTORE, VECTORS, MANIFEST):
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        old = store.with_name(f".{store.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        if store.exists():
            os.replace(store, old)  # the old store stays whole until the new one is in place
        os.replace(tmp, store)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _common_root(files: dict[str, Any]) -> str:
    if not files:
        return ""
    parents = [str(Path(f).parent) for f in files]
    return os.path.commonpath(parents)


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
