"""The Postgres store: chunks, vectors and manifest in one database, searched by pgvector and full-text search.

A store named NAME is one row of ``llmapp_stores`` (name, version, chunks table, manifest as JSON:
embedding model, dimension, chunking, per-file content hashes) and one chunks table
``llmapp_NAME_<version>`` (``id, source, start_char, end_char, text, embedding vector(d), tsv``) with an
HNSW index on the vectors cast to ``halfvec`` (``halfvec_ip_ops``: vectors are normalized, as in the FAISS
store), whose candidates are re-ranked on the full vectors, and a GIN index on ``tsv``. Stores built before
the halfvec index (manifest without ``vector_index``) keep their full-precision ``vector_ip_ops`` index and
are searched through it until rebuilt.
Stores are written by ``chains.pgindex``; both are reached through ``chains.stores``.

Direct schema over psycopg 3 and the ``pgvector`` adapter, not langchain-postgres: its tables keep no
content hashes or versions to update a corpus in one transaction, and it would pin pgvector<0.4 plus
async extras for nothing we use.

Consistency: an update is one transaction, and every retrieval reads in one statement, so a reader sees
one committed version, never half of one. Rows are never changed in place (a changed file gets new rows,
with ids from one shared sequence), so a row fetched by id is the row the ranking saw.

    from chains.stores import open_store
    store = open_store("postgresql://app@db.example/docs?store=notes")   # password: $PGPASSWORD
    hits = store.search("What is a VAE?", k=4)
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from typing import Any

from chains.pgconnection import Location, connect, ensure_vector, parse_location, reason
from chains.store import Hit, Searchable, embedding_name
from llmapp.core.errors import LLMAppError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the schema changes; older stores are refused with a rebuild hint
STORES_TABLE = "llmapp_stores"
HNSW_EF_SEARCH = 800  # recall@10 at 100k chunks, m=32: 0.88 at 300, 0.93-0.95 at 400-600, 0.97 at 800 (default 40)
HALFVEC = "halfvec"  # manifest "vector_index" of an HNSW index on embedding::halfvec(d): 130 MB against 203 MB at
# 100k chunks, so it stays in shared_buffers (bench rag, 100k chunks, idle machine: p95 10.2 ms, recall 0.990)
RERANK = 40  # candidates the halfvec index hands over (at least 4 x k), re-ranked exactly on the full vectors:
# recall@10 0.99 at 100k chunks in bench rag; 100 candidates gained nothing in a side test
TEXT_SEARCH = "english"  # the text search configuration of the tsv column and of queries (stemming, stopwords)
TS_RANK_NORMALIZATION = 1  # ts_rank divides by 1 + log(length), as BM25 damps long chunks
ROW_CACHE = 4096  # rows kept by id: a retrieval reads back the ~20 rows its ranking just returned
IDLE_CONNECTIONS = 8  # connections kept open between queries; more are opened under load, then closed
MANIFEST_TTL_S = 1.0  # how stale the cached manifest (file list, chunk count) may be

COLUMNS = "id, source, start_char, end_char, text, embedding"
KEYWORD_SQL = (f"SELECT {COLUMNS} FROM {{table}}, websearch_to_tsquery('{TEXT_SEARCH}', %(terms)s) AS tq "
               f"WHERE tsv @@ tq ORDER BY ts_rank(tsv, tq, {TS_RANK_NORMALIZATION}) DESC, id LIMIT %(k)s")
# Both rankings and their reciprocal-rank fusion in one statement, so both read the same committed version.
# Ties keep chains.rag's order: vector hits first, by their vector rank.
HYBRID_SQL = f"""
WITH vec AS (SELECT id, row_number() OVER (ORDER BY d) AS r
             FROM ({{nearest}}) v),
     kw AS (SELECT id, row_number() OVER (ORDER BY rank DESC, id) AS r
            FROM (SELECT id, ts_rank(tsv, tq, {TS_RANK_NORMALIZATION}) AS rank
                  FROM {{table}}, websearch_to_tsquery('{TEXT_SEARCH}', %(terms)s) AS tq
                  WHERE tsv @@ tq ORDER BY rank DESC, id LIMIT %(k)s) k),
     fused AS (SELECT id, sum(1.0 / (%(rrf)s + r)) AS s, min(r) FILTER (WHERE src = 0) AS vr,
                      min(r) FILTER (WHERE src = 1) AS kr
               FROM (SELECT id, r, 0 AS src FROM vec UNION ALL SELECT id, r, 1 FROM kw) u GROUP BY id)
SELECT {', '.join('t.' + c.strip() for c in COLUMNS.split(','))}
FROM fused JOIN {{table}} t USING (id) ORDER BY fused.s DESC, fused.vr NULLS LAST, fused.kr"""
ROWS_SQL = f"SELECT {COLUMNS} FROM {{table}} WHERE id = ANY(%(ids)s)"


def nearest_sql(cols: str, manifest: dict[str, Any]) -> str:
    """The statement selecting ``cols`` of the ``%(k)s`` nearest rows to ``%(q)s``, nearest first, in exact order.

    A store with the halfvec index (manifest ``vector_index``) takes ``%(c)s`` candidates from it and re-ranks
    them on the full vectors; an older store reads its full-precision index (or scans, for Flat).
    """
    if manifest.get("vector_index") == HALFVEC:
        half = f"::halfvec({int(manifest['dimension'])})"  # the index's own expression, or the planner ignores it
        return (f"SELECT {cols} FROM (SELECT {COLUMNS} FROM {{table}} ORDER BY embedding{half} <#> %(q)s{half} "
                "LIMIT %(c)s) c ORDER BY embedding <#> %(q)s LIMIT %(k)s")
    return f"SELECT {cols} FROM {{table}} ORDER BY embedding <#> %(q)s LIMIT %(k)s"


def vector_sql(manifest: dict[str, Any]) -> str:
    """The k nearest rows with their cosine (vectors are unit length: the negated inner product)."""
    return nearest_sql(f"{COLUMNS}, -(embedding <#> %(q)s)", manifest)


def hybrid_sql(manifest: dict[str, Any]) -> str:
    """:data:`HYBRID_SQL` over the store's own vector ranking."""
    return HYBRID_SQL.replace("{nearest}", nearest_sql("id, embedding <#> %(q)s AS d", manifest))


def candidates(k: int) -> int:
    """How many rows the halfvec index hands over for an exact top ``k``."""
    return max(RERANK, 4 * k)


class PgStore(Searchable):
    """A store in Postgres, with the interface ``chains.rag`` reads: ``search_vector``, ``docs[row]``,
    ``vectors[rows]``, plus ``keyword_ranking`` and ``hybrid_ranking`` done by Postgres itself.

    Open one with :func:`chains.stores.open_store` (or :meth:`PgStore.load`); it is safe to share
    between threads: each query borrows a connection from a small pool.
    """

    def __init__(self, loc: Location, embeddings: Any = None) -> None:
        self.location, self.path = loc, loc.label  # path: what chat and serve print as the store's name
        self.cache: dict[str, Any] = {}
        self._embeddings = embeddings  # None: the manifest's model, loaded on first query
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._rows: OrderedDict[int, tuple] = OrderedDict()  # id -> (id, source, start, end, text, vector)
        self.version, self.table, self._manifest = self._read_meta()
        self._checked = time.monotonic()
        self.docs, self.vectors = _Docs(self), _Vectors(self)
        if embeddings is not None and embedding_name(embeddings) != self._manifest["embedding_model"]:
            raise LLMAppError(f"store {loc.label} was built with embeddings {self._manifest['embedding_model']!r}, "
                              f"not {embedding_name(embeddings)!r}; use that model, or rebuild the store with: "
                              f"llmapp index FILES --store URL --rebuild")

    @classmethod
    def load(cls, url: str, embeddings: Any = None) -> PgStore:
        """Open the store a ``postgresql://`` URL names.

        Args:
            url: ``postgresql://USER@HOST:PORT/DB[?store=NAME]``; the password comes from ``$PGPASSWORD``,
                ``~/.pgpass`` or a libpq service file.
            embeddings: the model to embed queries with; default: the store's own.

        Raises:
            LLMAppError: unreachable server, failed login, no vector extension, no store of that name,
                another format version, or embeddings other than the store's.
        """
        return cls(parse_location(url), embeddings)

    def __len__(self) -> int:
        return int(self.manifest.get("chunks", 0))

    def __repr__(self) -> str:
        return f"PgStore({self.path!r}, chunks={len(self)}, index={self._manifest['index_type']!r})"

    @property
    def manifest(self) -> dict[str, Any]:
        """The store's manifest, re-read when another process has committed a new version."""
        if time.monotonic() - self._checked > MANIFEST_TTL_S:
            self.refresh()
        return self._manifest

    def refresh(self) -> None:
        """Catch up with the latest committed version (chunks table and manifest)."""
        row = self._execute(f"SELECT version FROM {STORES_TABLE} WHERE name = %(name)s", {"name": self.location.name},
                            table=False)
        if not row or row[0][0] != self.version:
            self.version, self.table, self._manifest = self._read_meta()
        self._checked = time.monotonic()

    # ------------------------------------------------------------------------------------------ search

    def search_vector(self, vector: Any, k: int) -> list[Hit]:
        """The ``k`` nearest chunks to an already-embedded (1, d) query vector (pgvector's HNSW index)."""
        if k <= 0:
            return []
        rows = self._execute(vector_sql(self.manifest), {"q": self._query_vector(vector), "k": k, "c": candidates(k)})
        self._remember(rows)
        return [Hit(r[4], r[1], r[2], r[3], float(r[6]), int(r[0])) for r in rows]

    def keyword_ranking(self, question: str, n: int) -> list[int]:
        """Row ids of the ``n`` best full-text matches (any of the question's words), best first."""
        rows = self._execute(KEYWORD_SQL, {"terms": _terms(question), "k": n})
        self._remember(rows)
        return [int(r[0]) for r in rows]

    def hybrid_ranking(self, question: str, vector: Any, n: int, rrf_k: int) -> list[int]:
        """The vector and full-text rankings (``n`` each) fused by reciprocal rank, in one statement."""
        rows = self._execute(hybrid_sql(self.manifest), {"q": self._query_vector(vector), "terms": _terms(question),
                                                         "k": n, "c": candidates(n), "rrf": rrf_k})
        self._remember(rows)
        return [int(r[0]) for r in rows]

    def all_docs(self) -> list[dict[str, Any]]:
        """Every chunk of the current version, in id order (for baselines and exports, not for search)."""
        rows = self._execute("SELECT source, start_char, end_char, text FROM {table} ORDER BY id", {})
        return [{"source": s, "start": a, "end": b, "text": t} for s, a, b, t in rows]

    def close(self) -> None:
        """Close the pooled connections (the store reconnects if used again)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # ------------------------------------------------------------------------------------------ rows

    def rows(self, ids: list[int]) -> list[tuple]:
        """The cached or fetched rows for ``ids``, in that order.

        Raises:
            LLMAppError: an id that is not in the store (it was removed after the ranking that returned it).
        """
        with self._lock:
            found = {i: self._rows[i] for i in ids if i in self._rows}
        missing = [i for i in ids if i not in found]
        if missing:
            fetched = self._execute(ROWS_SQL, {"ids": missing})
            self._remember(fetched)
            with self._lock:
                found.update((int(r[0]), self._rows[int(r[0])]) for r in fetched if int(r[0]) in self._rows)
        gone = [i for i in ids if i not in found]
        if gone:
            raise LLMAppError(f"chunk {gone[0]} is no longer in store {self.path} (it changed during the query); "
                              "ask again")
        return [found[i] for i in ids]

    def _remember(self, rows: list[tuple]) -> None:
        with self._lock:
            for r in rows:
                vec = r[5].to_numpy() if hasattr(r[5], "to_numpy") else r[5]  # pgvector's Vector -> float32 array
                self._rows[int(r[0])] = (*r[:5], vec)
                self._rows.move_to_end(int(r[0]))
            while len(self._rows) > ROW_CACHE:
                self._rows.popitem(last=False)

    def _query_vector(self, vector: Any) -> Any:
        import numpy as np

        vec = np.asarray(vector, dtype="float32").reshape(-1)
        if len(vec) != self._manifest["dimension"]:
            raise LLMAppError(f"store {self.path} holds {self._manifest['dimension']}-dimensional vectors of "
                              f"{self._manifest['embedding_model']!r}, the query has {len(vec)}; embed queries "
                              "with the store's model, or rebuild the store with: llmapp index FILES --store URL --rebuild")
        return vec

    # ------------------------------------------------------------------------------------------ database

    def _read_meta(self) -> tuple[int, str, dict[str, Any]]:
        import psycopg

        loc = self.location
        try:
            rows = self._execute(f"SELECT version, chunks_table, manifest FROM {STORES_TABLE} WHERE name = %(name)s",
                                 {"name": loc.name}, table=False)
        except psycopg.errors.UndefinedTable:
            rows = []
        if not rows:
            raise LLMAppError(f"no llmapp store {loc.name!r} at {loc.label}; build one first with: "
                              f"llmapp index FILES --store URL")
        version, table, manifest = rows[0]
        if manifest.get("format_version") != FORMAT_VERSION:
            raise LLMAppError(f"store {loc.label} has format {manifest.get('format_version')}, this llmapp reads "
                              f"{FORMAT_VERSION}; rebuild it with: llmapp index FILES --store URL --rebuild")
        return int(version), table, manifest

    def _execute(self, template: str, params: dict[str, Any], table: bool = True) -> list[tuple]:
        """Run one statement on a pooled connection; reconnect once if the connection was lost."""
        import psycopg
        from psycopg import sql

        for attempt in range(2):
            query = sql.SQL(template).format(table=sql.Identifier(self.table)) if table else template
            conn = self._borrow()
            try:
                rows = conn.execute(query, params, binary=True).fetchall()  # binary: vectors without text parsing
            except psycopg.OperationalError as exc:
                conn.close()
                if attempt:
                    raise LLMAppError(f"lost the connection to {self.path} ({reason(exc, self.location)}); "
                                      "check that the server is up, then ask again") from None
                continue
            except psycopg.errors.UndefinedTable:
                self._give_back(conn)
                if attempt or not table:
                    raise
                self.version, self.table, self._manifest = self._read_meta()  # a rebuild switched tables
                continue
            except psycopg.Error as exc:  # e.g. a role that may not read the store's tables
                self._give_back(conn)
                raise LLMAppError(f"Postgres refused to read store {self.location.name!r} at {self.path} "
                                  f"({reason(exc, self.location)}); check the role's privileges (docs/stores.md)") from None
            self._give_back(conn)
            return rows
        raise AssertionError("unreachable")

    def _borrow(self) -> Any:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None and not conn.closed:
            return conn
        conn = connect(self.location)
        version = ensure_vector(conn, self.location, create=False)
        conn.execute(f"SET hnsw.ef_search = {HNSW_EF_SEARCH}")
        # the planner prices an HNSW scan at ef_search 800 above a scan of the whole table, up to tens of
        # thousands of rows: 17 ms against 8 ms at 10k chunks; reads here always have an index to use
        conn.execute("SET enable_seqscan = off")
        if tuple(int(x) for x in re.findall(r"\d+", version)[:2]) >= (0, 8):
            conn.execute("SET hnsw.iterative_scan = strict_order")  # rows dead since an update never cut a top-k
        return conn

    def _give_back(self, conn: Any) -> None:
        with self._lock:
            if len(self._idle) < IDLE_CONNECTIONS and not conn.closed:
                self._idle.append(conn)
                return
        conn.close()


class _Docs:
    """``store.docs[row]`` -> ``{"source", "start", "end", "text"}``, by row id (as in the FAISS store)."""

    def __init__(self, store: PgStore) -> None:
        self.store = store

    def __getitem__(self, row: int) -> dict[str, Any]:
        _, source, start, end, text, _ = self.store.rows([int(row)])[0]
        return {"source": source, "start": start, "end": end, "text": text}

    def __len__(self) -> int:
        return len(self.store)


class _Vectors:
    """``store.vectors[rows]`` -> an (n, d) float32 array, by row ids (as in the FAISS store)."""

    def __init__(self, store: PgStore) -> None:
        self.store = store

    def __getitem__(self, rows: Any) -> Any:
        import numpy as np

        if isinstance(rows, (int, np.integer)):
            return np.asarray(self.store.rows([int(rows)])[0][5], dtype="float32")
        ids = [int(r) for r in rows]
        if not ids:
            return np.zeros((0, self.store._manifest["dimension"]), dtype="float32")
        return np.stack([np.asarray(r[5], dtype="float32") for r in self.store.rows(ids)])


def _terms(question: str) -> str:
    """The question's words joined by ``or``: full-text search matches any of them, as BM25 does."""
    return " or ".join(w for w in re.findall(r"\w+", question) if w.lower() != "or")
