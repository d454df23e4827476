"""The store format: a FAISS index, the chunks with their sources, and the vectors, never unpickled.

A store is a folder:

    manifest.json     format version, embedding model, dimension, index type, per-file content hashes
    index.faiss       the FAISS index (``faiss.write_index``; rows line up with the docstore)
    docstore.jsonl    one chunk per line: {"source", "start", "end", "text"}
    vectors.npy       the chunk vectors (float32), so an update re-embeds only changed files

Nothing is unpickled on load: LangChain's ``FAISS.load_local`` unpickles its docstore, so it is never
used on user paths; :meth:`Store.as_langchain` builds the LangChain vector store in memory instead.
Stores are built and updated by ``chains.index``.

    from chains.store import Store
    hits = Store.load("store").search("What is a VAE?", k=4)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmapp.core.errors import LLMAppError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the store layout changes; older stores are refused with a rebuild hint
MANIFEST, INDEX_FILE, DOCSTORE, VECTORS = "manifest.json", "index.faiss", "docstore.jsonl", "vectors.npy"
HNSW_EF_SEARCH = 768  # HNSW breadth: recall@10 at 100k chunks 0.93 at 384, 0.95 at 512, 0.98 at 768 (bench rag)
IVF_NPROBE = 16  # IVF lists visited per query; a recall/latency trade-off


@dataclass
class Hit:
    """One retrieved chunk."""

    text: str
    source: str  # the file's absolute path
    start: int  # character offsets of the chunk in the file's extracted text
    end: int
    score: float  # cosine similarity to the query (vectors are normalized)
    id: int = -1  # row in the store


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

        return np.asarray(encode(self.embeddings, [query]), dtype="float32").reshape(1, -1)

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
        if file.stat().st_size != expected["size"] or sha256(file.read_bytes()) != expected["sha256"]:
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


def encode(embeddings: Any, texts: list[str]) -> Any:
    if hasattr(embeddings, "encode"):  # llmapp's LocalEmbeddings: numpy straight from sentence-transformers
        return embeddings.encode(texts)
    return embeddings.embed_documents(texts)  # any LangChain Embeddings


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
        manifest["payload"] = {name: {"size": (tmp / name).stat().st_size, "sha256": sha256((tmp / name).read_bytes())}
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
