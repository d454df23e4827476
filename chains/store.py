"""The store format: a FAISS index, the chunks with their sources, and the vectors, never unpickled.

A store is a folder:

    manifest.json     format version, embedding model, dimension, index type, per-file content hashes
    index.faiss       the FAISS index (``faiss.write_index``; rows line up with the docstore)
    docstore.jsonl    one chunk per line: {"source", "start", "end", "text"}
    vectors.npy       the chunk vectors (float32), so an update re-embeds only changed files

Nothing is unpickled on load: LangChain's ``FAISS.load_local`` unpickles its docstore, so it is never
used on user paths; :meth:`Store.as_langchain` builds it in memory instead. ``chains.index`` writes stores.

    from chains.store import Store
    hits = Store.load("store").search("What is a VAE?", k=4)
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmapp.core.errors import LLMAppError
from llmapp.core.files import crash_point, readable_dir, replace_dir
from llmapp.core.validate import Invalid, check_path, check_record

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the store layout changes; older stores are refused with a rebuild hint
MANIFEST, INDEX_FILE, DOCSTORE, VECTORS = "manifest.json", "index.faiss", "docstore.jsonl", "vectors.npy"
HNSW_EF_SEARCH = 768  # HNSW breadth: recall@10 at 100k chunks 0.93 at 384, 0.95 at 512, 0.98 at 768 (bench rag)
IVF_NPROBE = 16  # IVF lists visited per query; a recall/latency trade-off
READ_ATTEMPTS = 4  # a load that races a writer's swap is retried this often before calling the store corrupt


@dataclass
class Hit:
    """One retrieved chunk."""

    text: str
    source: str  # the file's absolute path
    start: int  # character offsets of the chunk in the file's extracted text
    end: int
    score: float  # cosine similarity to the query (vectors are normalized)
    id: int = -1  # row in the store


class Searchable:
    """Text queries for any store kind: embed the query with ``embeddings``, then ``search_vector``."""

    _embeddings: Any = None  # set by the store; None: the manifest's model, loaded on first query

    @property
    def embeddings(self) -> Any:
        """The model queries are embedded with (the store's own, unless another was given)."""
        if self._embeddings is None:
            from llmapp.models.embeddings import load_embeddings

            self._embeddings = load_embeddings(self.manifest["embedding_model"])
        return self._embeddings

    def embed_query(self, query: str) -> Any:
        """The query as a (1, d) float32 array."""
        import numpy as np

        return np.asarray(encode(self.embeddings, [query]), dtype="float32").reshape(1, -1)

    def search(self, query: str, k: int = 4) -> list[Hit]:
        """The ``k`` chunks nearest to ``query`` by cosine similarity, best first."""
        if not query.strip():
            raise LLMAppError("empty query: ask something")
        return self.search_vector(self.embed_query(query), k)

    def display_name(self, source: str) -> str:
        """A short name for a source: its path under the folder the store's files share."""
        root = self.manifest.get("root")
        try:
            return str(Path(source).relative_to(root)) if root else source
        except ValueError:
            return source


class Store(Searchable):
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

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, chunks={len(self)}, index={self.manifest['index_type']!r})"

    @classmethod
    def load(cls, store_dir: str | Path, embeddings: Any = None) -> Store:
        """Open a store without unpickling anything.

        Every file is read once; the bytes that are checked against the manifest's hashes are the
        bytes that are loaded, so a writer swapping the store meanwhile can never pass a mix. A read
        that races a swap is retried on the new store.

        Args:
            store_dir: the folder :func:`build_index` wrote.
            embeddings: the model to embed queries with; default: the store's own
                (``load_embeddings(manifest["embedding_model"])``).

        Raises:
            LLMAppError: no store there (index it first), a corrupt or partial store, another
                format version, or embeddings other than those the store was built with.
        """
        path = Path(store_dir).expanduser()
        for attempt in range(READ_ATTEMPTS):
            folder = readable_dir(path)
            seen = _identity(folder)
            try:
                manifest, payload = _read_all(path, folder)
                break
            except _Raced:
                time.sleep(0.05 * (attempt + 1))
                if attempt == READ_ATTEMPTS - 1 or _identity(readable_dir(path)) == seen:
                    raise  # the same folder as read: damaged, not a writer's swap in progress
        embeddings = _check_embeddings(manifest, embeddings, path)
        return cls(path, manifest, *payload, embeddings)

    def search_vector(self, vector: Any, k: int) -> list[Hit]:
        """The ``k`` nearest chunks to an already-embedded (1, d) query vector."""
        if not self.docs or k <= 0:
            return []
        vector = _as_query(vector)
        if vector.shape[1] != self.index.d:
            raise LLMAppError(f"store {self.path} holds {self.index.d}-dimensional vectors but the query embeddings "
                              f"({embedding_name(self.embeddings)}) make {vector.shape[1]}-dimensional ones; query it with "
                              f"{self.manifest['embedding_model']!r}, or {rebuild_hint(self.path)}")
        scores, ids = self.index.search(vector, min(k, len(self.docs)))
        return [self.hit(int(i), float(s)) for s, i in zip(scores[0], ids[0], strict=False) if i >= 0]

    def hit(self, row: int, score: float) -> Hit:
        doc = self.docs[row]
        return Hit(doc["text"], doc["source"], doc["start"], doc["end"], score, row)

    def as_langchain(self) -> Any:
        """The same index as a ``langchain_community`` FAISS vector store, built in memory (no pickle)."""
        from langchain_community.docstore.in_memory import InMemoryDocstore
        from langchain_community.vectorstores import FAISS
        from langchain_core.documents import Document

        docstore = InMemoryDocstore({str(i): Document(d["text"], metadata={k: d[k] for k in ("source", "start", "end")})
                                     for i, d in enumerate(self.docs)})
        return FAISS(self.embeddings, self.index, docstore, {i: str(i) for i in range(len(self.docs))},
                     normalize_L2=False, distance_strategy="MAX_INNER_PRODUCT")


class _Raced(LLMAppError):
    """A store that failed its checks; raised again after the retries, when it is not a writer's swap."""


STORE_FILES = (MANIFEST, INDEX_FILE, DOCSTORE, VECTORS)
DOC_FIELDS = {"source": str, "start": int, "end": int, "text": str}  # one docstore row


def rebuild_hint(path: Path) -> str:
    return f"rebuild it with: llmapp index FILES --store {path} --rebuild"


def is_store_like(folder: Path) -> bool:
    """True if ``folder`` holds nothing but store files (so ``--rebuild`` may replace it)."""
    return all(p.name in STORE_FILES for p in folder.iterdir() if not p.name.startswith("."))


def _read_all(path: Path, folder: Path) -> tuple[dict[str, Any], tuple[Any, list[dict[str, Any]], Any]]:
    """Manifest and payload of the store at ``folder``, each file read once and checked."""
    if not (folder / MANIFEST).exists():
        if folder.is_dir() and any(folder.iterdir()):
            if is_store_like(folder):
                raise _Raced(f"store {path} is corrupt or partial ({MANIFEST} is missing); {rebuild_hint(path)}")
            raise LLMAppError(f"{path} holds other files and is not an llmapp store (no {MANIFEST}); "
                              "pick the folder `llmapp index --store` wrote")
        if folder.exists() and not folder.is_dir():
            raise LLMAppError(f"{path} is a file, not a store; pass the folder `llmapp index --store` wrote")
        raise _Raced(f"no store at {path}; build one first with: llmapp index FILES --store {path}")  # or a swap
    manifest = _read_manifest(path, folder)
    return manifest, _read_payload(path, folder, manifest)


def _read_manifest(path: Path, folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / MANIFEST).read_bytes().decode("utf-8"))
        check_record(manifest, {"format_version": int})
        if manifest["format_version"] != FORMAT_VERSION:
            raise LLMAppError(f"store {path} has format {manifest['format_version']}, this llmapp reads "
                              f"{FORMAT_VERSION}; {rebuild_hint(path)}")
        check_record(manifest, {"embedding_model": str, "dimension": int, "index_type": str, "files": dict,
                                "payload": dict}, optional={"root": str})
        if manifest["dimension"] < 1:
            raise Invalid(f"'dimension' must be at least 1, not {manifest['dimension']}")
        for name in (INDEX_FILE, DOCSTORE, VECTORS):
            if name not in manifest["payload"]:
                raise Invalid(f"payload entry {name!r} is missing")
            check_record(manifest["payload"][name], {"size": int, "sha256": str})
        for name, meta in manifest["files"].items():
            check_path("files", name)
            check_record(meta, {"sha256": str})
    except FileNotFoundError:
        raise _Raced(f"store {path} is corrupt or partial ({MANIFEST} is missing); {rebuild_hint(path)}") from None
    except (OSError, ValueError, Invalid) as exc:
        raise _Raced(f"store {path} is corrupt ({MANIFEST}: {_one_line(exc)}); {rebuild_hint(path)}") from None
    return manifest


def _read_payload(path: Path, folder: Path, manifest: dict[str, Any]) -> tuple[Any, list[dict[str, Any]], Any]:
    """Index, docstore and vectors from the very bytes checked against the manifest's sizes and hashes."""
    import faiss
    import numpy as np

    def corrupt(why: str) -> _Raced:
        return _Raced(f"store {path} is corrupt or partial ({why}); {rebuild_hint(path)}")

    data = {}
    for name in (INDEX_FILE, DOCSTORE, VECTORS):
        expected = manifest["payload"][name]
        try:
            data[name] = (folder / name).read_bytes()
        except FileNotFoundError:
            raise corrupt(f"{name} is missing") from None
        except OSError as exc:
            raise corrupt(f"{name}: {exc.strerror or exc}") from None
        if len(data[name]) != expected["size"] or sha256(data[name]) != expected["sha256"]:
            raise corrupt(f"{name} does not match the manifest")
    try:
        index = faiss.deserialize_index(np.frombuffer(data[INDEX_FILE], dtype="uint8"))
        vectors = np.load(io.BytesIO(data[VECTORS]), allow_pickle=False)  # a .npy can carry pickles
        lines = data[DOCSTORE].decode("utf-8").splitlines()
    except Exception as exc:  # noqa: BLE001 - a hostile, re-signed file can make numpy raise SyntaxError, TokenError...
        raise corrupt(_one_line(exc)) from None
    docs = [_doc_row(path, n, line) for n, line in enumerate(lines, 1) if line]
    dim = manifest["dimension"]
    if vectors.ndim != 2 or vectors.dtype != np.float32 or index.d != dim or (len(vectors) and vectors.shape[1] != dim):
        raise corrupt(f"the manifest says {dim}-dimensional vectors, the index holds {index.d}-dimensional ones "
                      f"and {VECTORS} is {vectors.dtype} {tuple(vectors.shape)}")
    if not (index.ntotal == len(docs) == len(vectors)):
        raise corrupt(f"{index.ntotal} vectors in the index, {len(docs)} chunks, {len(vectors)} stored vectors")
    _tune(index)
    return index, docs, vectors


def _doc_row(path: Path, n: int, line: str) -> dict[str, Any]:
    """One docstore row, checked for shape: a corrupt row is one line naming the store and the line."""
    try:
        row = check_record(json.loads(line), DOC_FIELDS)
        check_path("source", row["source"])
        if not 0 <= row["start"] <= row["end"]:
            raise Invalid(f"offsets start={row['start']} end={row['end']} are out of order")
    except (ValueError, Invalid) as exc:
        raise LLMAppError(f"store {path} is corrupt ({DOCSTORE} line {n}: {_one_line(exc)}); "
                          f"{rebuild_hint(path)}") from None
    return row


def _identity(folder: Path) -> tuple:
    """What changes when a writer swaps a store in: the folder (its name too: a swap renames the old
    one to ``.old``), its inode, and its manifest's."""
    out: list = [folder]
    for p in (folder, folder / MANIFEST):
        try:
            st = p.stat()
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _as_query(vector: Any) -> Any:
    import numpy as np

    return np.ascontiguousarray(np.asarray(vector, dtype="float32").reshape(1, -1))


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


# The FAISS factory strings a store may use. FAISS aborts the process on some others (HNSW0), or
# allocates without bound (IVF1000000000): a string is checked here before FAISS sees it.
_INDEX_TYPE = re.compile(r"^(Flat|HNSW(?P<m>\d{1,4})(,Flat|,SQ8)?|IVF(?P<n>\d{1,6}),(Flat|SQ8|PQ(?P<pq>\d{1,3})))$")
_INDEX_HINT = "use Flat, HNSW32 (M from 4 to 256), or IVF<lists>,Flat|SQ8|PQ<m> with 1 to 65536 lists"


def _check_index_type(index_type: str) -> None:
    import faiss

    match = _INDEX_TYPE.match(str(index_type))
    ok = bool(match)
    if match and match["m"]:
        ok = 4 <= int(match["m"]) <= 256
    if match and match["n"]:
        ok = 1 <= int(match["n"]) <= 65_536 and (not match["pq"] or 1 <= int(match["pq"]) <= 384)
    if ok:
        try:
            faiss.index_factory(8 if not match["pq"] else int(match["pq"]), index_type, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError:
            ok = False
    if not ok:
        raise LLMAppError(f"unknown FAISS index type {index_type!r} (or one llmapp does not build); {_INDEX_HINT}")


def make_index(vectors: Any, index_type: str) -> Any:
    """A FAISS inner-product index of ``index_type`` (a factory string) holding ``vectors``."""
    import faiss

    _check_index_type(index_type)
    dim = vectors.shape[1]
    try:
        index = faiss.index_factory(dim, index_type, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            ivf = faiss.extract_index_ivf(index)
            if len(vectors) < ivf.nlist:
                raise LLMAppError(f"{index_type} needs at least {ivf.nlist} chunks to train, the store has "
                                  f"{len(vectors)}; use --index Flat, or fewer IVF lists")
            index.train(vectors)
        if hasattr(index, "hnsw"):
            index.hnsw.efConstruction = 80  # build a better graph: recall matters more than build time here
        index.add(vectors)
    except (RuntimeError, MemoryError) as exc:  # e.g. PQ<m> with m not dividing the dimension
        raise LLMAppError(f"FAISS cannot build {index_type!r} for {dim}-dimensional vectors "
                          f"({_one_line(exc)}); {_INDEX_HINT}") from None
    _tune(index)
    return index


def _write_store(store: Path, manifest: dict[str, Any], index: Any, docs: list[dict], vectors: Any) -> None:
    """Write every file into a temporary folder beside ``store``, then swap it in (``replace_dir``)."""
    import faiss
    import numpy as np

    with replace_dir(store, markers=STORE_FILES) as tmp:  # --rebuild may replace a store missing its manifest
        faiss.write_index(index, str(tmp / INDEX_FILE))
        with (tmp / DOCSTORE).open("w", encoding="utf-8") as f:
            for doc in docs:
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
        np.save(tmp / VECTORS, np.ascontiguousarray(vectors, dtype="float32"), allow_pickle=False)
        manifest["payload"] = {name: {"size": (tmp / name).stat().st_size, "sha256": sha256((tmp / name).read_bytes())}
                               for name in (INDEX_FILE, DOCSTORE, VECTORS)}
        crash_point("store:payload")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
