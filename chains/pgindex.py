"""Building Postgres stores: the same files, chunks, embeddings and content hashes as ``chains.index``,
written in one transaction.

- Writers serialize on an advisory lock (``pg_advisory_lock``), held by the writer's session, so a
  writer that dies releases it with its connection.
- An update is one transaction: the rows of changed and removed files are deleted, the new chunks
  copied in (``COPY ... FORMAT BINARY``) and the store's row (version, manifest) updated; readers see
  the old version until the commit, then the new one. A crash or a lost connection rolls it all back.
- A first build, a ``rebuild``, another index type, or an update larger than what it keeps goes into a
  new table (kept rows copied over with their ids), indexed in bulk (much faster than row by row), then
  switched in and the old table dropped, in the same transaction.

    from chains.index import build_index     # dispatches postgresql:// URLs here
    build_index(["docs/"], "postgresql://app@db.example/docs?store=notes")

    llmapp index docs/ --store postgresql://app@db.example/docs?store=notes [--index hnsw|flat]
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chains.documents import find_files
from chains.pgconnection import Location, connect, ensure_vector, parse_location, reason
from chains.pgstore import FORMAT_VERSION, HALFVEC, STORES_TABLE, TEXT_SEARCH
from chains.store import embedding_name
from llmapp.core.config import RAGConfig
from llmapp.core.errors import LLMAppError

log = logging.getLogger(__name__)

HNSW_M = 32  # graph degree: at 100k chunks m=16 reached recall@10 0.91 at ef_search 400, m=32 0.95 (as FAISS HNSW32)
HNSW_EF_CONSTRUCTION = 64  # pgvector's default; recall comes cheaper from m and ef_search than from build effort
HALFVEC_MAX_DIM = 4000  # pgvector indexes halfvec up to 4,000 dimensions (vector: 2,000)
BUILD_MEMORY = "1GB"  # maintenance_work_mem for the bulk HNSW build: a graph that fits builds ~10x faster
LOCK_CLASS = 0x11a9  # advisory lock key space of llmapp stores (key 2: hashtext(store name))

SCHEMA_SQL = [
    f"CREATE TABLE IF NOT EXISTS {STORES_TABLE} (name text PRIMARY KEY, chunks_table text NOT NULL, "
    "version bigint NOT NULL, manifest jsonb NOT NULL, updated timestamptz NOT NULL DEFAULT now())",
    "CREATE SEQUENCE IF NOT EXISTS llmapp_chunk_ids",  # one id space for every table: ids are never reused
]
TABLE_SQL = ("CREATE TABLE {table} (id bigint PRIMARY KEY DEFAULT nextval('llmapp_chunk_ids'), "
             "source text NOT NULL, start_char integer NOT NULL, end_char integer NOT NULL, text text NOT NULL, "
             "embedding vector({dim}) NOT NULL, "
             f"tsv tsvector GENERATED ALWAYS AS (to_tsvector('{TEXT_SEARCH}', text)) STORED)")


@dataclass
class Plan:
    """What one update writes: new chunks and vectors, the files whose old rows go, the new manifest."""

    manifest: dict[str, Any]
    docs: list[dict[str, Any]]  # new chunks: {"source", "start", "end", "text"}
    vectors: Any  # (len(docs), d) float32
    drop_sources: list[str]  # files whose rows are deleted (changed or removed)
    keep_sources: list[str]  # files whose rows stay
    fresh: bool  # write a new table instead of updating the current one


def parse_index_type(index_type: str | None, old: str | None = None) -> str:
    """``hnsw`` / ``HNSW<M>`` -> ``HNSW<M>``; ``flat`` -> ``Flat`` (exact scan); None keeps ``old`` (else HNSW).

    Raises:
        LLMAppError: an index type pgvector stores do not have.
    """
    if index_type is None:
        return old or f"HNSW{HNSW_M}"
    if index_type.lower() == "flat":
        return "Flat"
    m = re.fullmatch(r"hnsw(\d*)", index_type.strip().lower())
    if m and (not m.group(1) or 4 <= int(m.group(1)) <= 100):
        return f"HNSW{m.group(1) or HNSW_M}"
    raise LLMAppError(f"a Postgres store takes --index hnsw (default), HNSW<M> (4-100) or flat, not {index_type!r}")


def build_pg_index(paths: list[str | Path], url: str, embeddings: Any = None, index_type: str | None = None,
                   config: RAGConfig | None = None, *, rebuild: bool = False,
                   progress: bool | Callable[[int, int], None] | None = None) -> Any:
    """Index files and folders into a Postgres store, incrementally (``chains.index.build_index`` for URLs).

    Args:
        paths: files and folders (recursed for .txt/.md/.html/.pdf).
        url: ``postgresql://USER@HOST:PORT/DB[?store=NAME]`` (password from ``$PGPASSWORD`` or a service file).
        embeddings: LangChain embeddings; default: the store's own model (new stores: ``load_embeddings()``).
        index_type: ``hnsw`` (default), ``HNSW<M>`` or ``flat``; None keeps the store's.
        config: chunk size and overlap; None: the store's (new stores: ``RAGConfig()``). A store keeps
            one chunking: other settings need ``rebuild``.
        rebuild: index everything again into a new table (switched in atomically).
        progress: True for a tqdm bar, a ``callback(done, total)``, or None/False.

    Returns:
        A ``chains.ingest.IndexReport``; its ``store`` is the URL with the password masked.

    Raises:
        LLMAppError: unreachable server or failed login, no vector extension, other embeddings or
            chunking than the store's, nothing to index, or a connection lost mid-update (rolled back).
    """
    import psycopg

    from chains.ingest import IndexReport

    t0 = time.perf_counter()
    loc = parse_location(str(url))
    files = find_files(paths)
    report = IndexReport(store=loc.label)
    conn = connect(loc)
    try:
        ensure_vector(conn, loc, create=True)
        _lock(conn, loc)
        current = _read_store(conn, loc, check_format=not rebuild)
        old = None if rebuild else current
        plan = _plan_update(files, paths, old, embeddings, index_type, config, report, progress, loc)
        if plan is None:  # nothing changed: leave the store (and its version) alone
            report.chunks, report.seconds = old[2]["chunks"], round(time.perf_counter() - t0, 3)
            return report
        with conn.transaction():
            _write(conn, loc, current, plan)
        report.chunks = plan.manifest["chunks"]
    except psycopg.OperationalError as exc:
        raise LLMAppError(f"lost the connection to {loc.label} while updating store {loc.name!r} "
                          f"({reason(exc, loc)}); the update was rolled back and the store is as it was: run the "
                          "same command again") from None
    except psycopg.Error as exc:
        raise LLMAppError(f"Postgres refused the update of store {loc.name!r} at {loc.label} ({reason(exc, loc)}); "
                          "the update was rolled back and the store is as it was") from None
    finally:
        conn.close()  # also releases the advisory lock
    report.seconds = round(time.perf_counter() - t0, 3)
    log.info("indexed %s", report)
    return report


def _lock(conn: Any, loc: Location) -> None:
    """Wait for any other writer of this store to finish (a session-level advisory lock)."""
    key = (LOCK_CLASS, loc.name)
    if not conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", key).fetchone()[0]:
        log.warning("another process is updating store %r; waiting for it to finish", loc.name)
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", key)


def _read_store(conn: Any, loc: Location, check_format: bool = True) -> tuple[int, str, dict[str, Any]] | None:
    """(version, chunks table, manifest) of the store, or None when there is none yet."""
    exists = conn.execute("SELECT to_regclass(%s)", (STORES_TABLE,)).fetchone()[0]
    row = conn.execute(f"SELECT version, chunks_table, manifest FROM {STORES_TABLE} WHERE name = %s",
                       (loc.name,)).fetchone() if exists else None
    if row and check_format and row[2].get("format_version") != FORMAT_VERSION:
        raise LLMAppError(f"store {loc.label} has format {row[2].get('format_version')}, this llmapp writes "
                          f"{FORMAT_VERSION}; rebuild it with: llmapp index FILES --store URL --rebuild")
    return (int(row[0]), row[1], row[2]) if row else None


def _plan_update(files: list[Path], paths: list, old: tuple | None, embeddings: Any, index_type: str | None,
                 config: RAGConfig | None, report: Any, progress: Any, loc: Location) -> Plan | None:
    """Decide what changes (as ``chains.index.build_index`` does), then chunk and embed the new files."""
    import numpy as np

    from chains.ingest import chunk_files, common_root, default_embeddings, embed_chunks, plan_update

    manifest = old[2] if old else None
    if manifest:
        _check_same(manifest, embeddings, config, loc)
        config = config or RAGConfig(chunk_tokens=manifest["chunk_tokens"], chunk_overlap=manifest["chunk_overlap"])
    config = config or RAGConfig()
    kind = parse_index_type(index_type, manifest["index_type"] if manifest else None)
    old_files = manifest["files"] if manifest else {}
    kept, todo, gone = plan_update(files, paths, old_files, report)
    if manifest and not todo and not gone and kind == manifest["index_type"]:
        return None
    if todo:  # the model is loaded only when something needs embedding
        embeddings = embeddings or _store_embeddings(manifest) or default_embeddings()
    docs = chunk_files(todo, embeddings, config, report) if todo else []
    vectors = embed_chunks(embeddings, [d["text"] for d in docs], progress) if docs else np.zeros((0, 0), "float32")
    kept_chunks = sum(int(v.get("chunks", 0)) for v in kept.values())
    if not docs and not kept_chunks:
        raise LLMAppError(f"nothing to index: all {len(files)} file(s) were skipped "
                          f"({'; '.join(report.skipped[:3])}); check the files")
    dim = int(vectors.shape[1]) if len(docs) else manifest["dimension"]
    if manifest and dim != manifest["dimension"]:
        raise LLMAppError(f"store {loc.label} holds {manifest['dimension']}-dimensional vectors, these embeddings "
                          f"make {dim}; rebuild it with: llmapp index FILES --store URL --rebuild")
    files_meta = {**kept, **{f: meta for f, meta in todo.items() if meta.get("chunks")}}
    new = {"format_version": FORMAT_VERSION, "embedding_model": manifest["embedding_model"] if manifest
           else embedding_name(embeddings), "dimension": dim, "index_type": kind, "chunk_tokens": config.chunk_tokens,
           "chunk_overlap": config.chunk_overlap, "text_search": TEXT_SEARCH, "root": common_root(files_meta),
           "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "chunks": kept_chunks + len(docs), "files": files_meta}
    fresh = not manifest or kind != manifest["index_type"] or len(docs) > kept_chunks
    # a new table gets today's vector index; an update in place keeps the index the table has
    new["vector_index"] = vector_index(kind, dim) if fresh else manifest.get("vector_index")
    return Plan(new, docs, np.asarray(vectors, dtype="float32").reshape(len(docs), dim) if docs else vectors,
                sorted(set(old_files) - set(kept)), sorted(kept), fresh)


def _check_same(manifest: dict[str, Any], embeddings: Any, config: RAGConfig | None, loc: Location) -> None:
    """An update must embed and chunk as the store was built; anything else needs a rebuild."""
    if embeddings is not None and embedding_name(embeddings) != manifest["embedding_model"]:
        raise LLMAppError(f"store {loc.label} was built with embeddings {manifest['embedding_model']!r}, not "
                          f"{embedding_name(embeddings)!r}; use that model, or rebuild the store with: "
                          "llmapp index FILES --store URL --rebuild")
    if config is not None and (config.chunk_tokens, config.chunk_overlap) != (manifest["chunk_tokens"],
                                                                             manifest["chunk_overlap"]):
        raise LLMAppError(f"store {loc.label} is chunked at {manifest['chunk_tokens']} tokens (overlap "
                          f"{manifest['chunk_overlap']}), not {config.chunk_tokens} ({config.chunk_overlap}); keep "
                          "the store's chunking, or rebuild it with --rebuild")


def _store_embeddings(manifest: dict[str, Any] | None) -> Any:
    if not manifest:
        return None
    from llmapp.models.embeddings import load_embeddings

    return load_embeddings(manifest["embedding_model"])


def _write(conn: Any, loc: Location, current: tuple | None, plan: Plan) -> None:
    """The whole update, inside the caller's transaction (``current``: the store as it is, even on a rebuild)."""
    from psycopg import sql

    for statement in SCHEMA_SQL:
        conn.execute(statement)
    version = (current[0] if current else 0) + 1
    old_table = current[1] if current else None
    if plan.fresh:
        table = f"llmapp_{loc.name}_{version}"
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {t}").format(t=sql.Identifier(table)))  # a stray copy
        conn.execute(sql.SQL(TABLE_SQL).format(table=sql.Identifier(table), dim=sql.Literal(plan.manifest["dimension"])))
        if old_table and plan.keep_sources:  # kept rows move over with their ids: a row id always means one row
            conn.execute(sql.SQL("INSERT INTO {new} (id, source, start_char, end_char, text, embedding) "
                                 "SELECT id, source, start_char, end_char, text, embedding FROM {old} "
                                 "WHERE source = ANY(%s)").format(new=sql.Identifier(table), old=sql.Identifier(old_table)),
                         (plan.keep_sources,))
        copy_rows(conn, table, plan.docs, plan.vectors)
        create_indexes(conn, table, plan.manifest)
    else:
        table = old_table
        conn.execute(sql.SQL("DELETE FROM {t} WHERE source = ANY(%s)").format(t=sql.Identifier(table)),
                     (plan.drop_sources,))
        copy_rows(conn, table, plan.docs, plan.vectors)
    from psycopg.types.json import Jsonb

    conn.execute(f"INSERT INTO {STORES_TABLE} (name, chunks_table, version, manifest) VALUES (%s, %s, %s, %s) "
                 "ON CONFLICT (name) DO UPDATE SET chunks_table = EXCLUDED.chunks_table, version = EXCLUDED.version, "
                 "manifest = EXCLUDED.manifest, updated = now()", (loc.name, table, version, Jsonb(plan.manifest)))
    if old_table and old_table != table:  # last: readers of the old table wait only for the commit
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {t}").format(t=sql.Identifier(old_table)))


def copy_rows(conn: Any, table: str, docs: list[dict[str, Any]], vectors: Any) -> None:
    """Append chunks and their vectors to ``table`` with one binary COPY."""
    from psycopg import sql

    if not docs:
        return
    statement = sql.SQL("COPY {t} (source, start_char, end_char, text, embedding) FROM STDIN WITH (FORMAT BINARY)")
    with conn.cursor() as cur, cur.copy(statement.format(t=sql.Identifier(table))) as copy:
        copy.set_types(["text", "int4", "int4", "text", "vector"])
        for doc, vec in zip(docs, vectors, strict=True):
            # Postgres text cannot hold NUL; U+FFFD keeps the chunk's length, so offsets stay right
            copy.write_row((doc["source"], doc["start"], doc["end"], doc["text"].replace("\x00", "\ufffd"), vec))


def vector_index(index_type: str, dim: int) -> str | None:
    """What an HNSW store's vector index is built on: ``halfvec`` (half the pages, candidates re-ranked on the
    full vectors, see ``chains.pgstore``), or ``vector`` past pgvector's halfvec limit; None for Flat."""
    if not index_type.startswith("HNSW"):
        return None
    return HALFVEC if dim <= HALFVEC_MAX_DIM else "vector"


def create_indexes(conn: Any, table: str, manifest: dict[str, Any]) -> None:
    """The vector index (HNSW, or none for exact search), the full-text index and the by-file index."""
    from psycopg import sql

    t = sql.Identifier(table)
    conn.execute(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'")
    index_type = manifest["index_type"]
    if index_type.startswith("HNSW"):
        m = int(index_type[4:] or HNSW_M)
        on = (sql.SQL("(embedding::halfvec({d})) halfvec_ip_ops").format(d=sql.Literal(int(manifest["dimension"])))
              if manifest.get("vector_index") == HALFVEC else sql.SQL("embedding vector_ip_ops"))
        conn.execute(sql.SQL("CREATE INDEX ON {t} USING hnsw ({on}) WITH (m = {m}, ef_construction = {ef})").format(
            t=t, on=on, m=sql.Literal(m), ef=sql.Literal(max(HNSW_EF_CONSTRUCTION, 2 * m))))
    conn.execute(sql.SQL("CREATE INDEX ON {t} USING gin (tsv)").format(t=t))
    conn.execute(sql.SQL("CREATE INDEX ON {t} (source)").format(t=t))


def write_chunks(url: str, docs: list[dict[str, Any]], vectors: Any, embedding_model: str,
                 index_type: str | None = None) -> int:
    """Replace store ``url`` with ``docs`` and their ready-made ``vectors`` (benchmarks, imports), atomically.

    Returns:
        The store's new version.
    """
    import numpy as np

    loc = parse_location(url)
    vectors = np.asarray(vectors, dtype="float32")
    kind, dim = parse_index_type(index_type), int(vectors.shape[1])
    manifest = {"format_version": FORMAT_VERSION, "embedding_model": embedding_model, "dimension": dim,
                "index_type": kind, "vector_index": vector_index(kind, dim), "chunk_tokens": RAGConfig().chunk_tokens,
                "chunk_overlap": RAGConfig().chunk_overlap, "text_search": TEXT_SEARCH, "root": "",
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "chunks": len(docs), "files": {}}
    with connect(loc) as conn:
        ensure_vector(conn, loc, create=True)
        _lock(conn, loc)
        current = _read_store(conn, loc, check_format=False)
        with conn.transaction():
            _write(conn, loc, current, Plan(manifest, docs, vectors, [], [], fresh=True))
    return (current[0] if current else 0) + 1
