"""Where a store lives: a FAISS folder (``chains.store``) or a Postgres database (``chains.pgstore``).

Everything that accepts ``--store`` opens it here, so a folder and a ``postgresql://`` URL work alike
in ``llmapp index``/``ask``/``chat``/``serve``/``eval`` and in ``rag_chain()``/``build_index()``. Both
kinds offer what retrieval reads: ``embed_query``, ``search``, ``search_vector``, ``docs[row]``,
``vectors[rows]``, ``display_name``, ``manifest``, ``len()``; a Postgres store also ranks by keywords
and hybrid in the database (``keyword_ranking``, ``hybrid_ranking``).

    from chains.stores import open_store, store_label
    store = open_store("store")                                          # a FAISS folder
    store = open_store("postgresql://app@db.example/docs?store=notes")   # password: $PGPASSWORD
    print(store_label("postgresql://app:secret@db/docs"))                # postgresql://app:***@db/docs
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chains.pgconnection import is_postgres, mask_url


def open_store(location: Any, embeddings: Any = None) -> Any:
    """The store at ``location``, opened; an already opened store is returned as it is.

    Args:
        location: a store folder, a ``postgresql://`` URL, or a loaded store.
        embeddings: the model to embed queries with; default: the store's own.

    Raises:
        LLMAppError: no store there, a corrupt one, embeddings other than its own, or (Postgres) an
            unreachable server, a failed login or a database without the vector extension.
    """
    if not isinstance(location, (str, Path)):
        return location
    if is_postgres(str(location)):
        from chains.pgstore import PgStore

        return PgStore.load(str(location), embeddings)
    from chains.store import Store

    return Store.load(Path(location).expanduser(), embeddings)


def store_exists(location: str | Path) -> bool:
    """Whether a store is already built at ``location`` (an update then keeps its embeddings)."""
    if not is_postgres(str(location)):
        from chains.store import MANIFEST
        from llmapp.core.files import readable_dir

        return (readable_dir(Path(location).expanduser()) / MANIFEST).exists()  # a store mid-swap exists
    from chains.pgconnection import connect, parse_location
    from chains.pgstore import STORES_TABLE

    loc = parse_location(str(location))
    with connect(loc) as conn:
        if conn.execute("SELECT to_regclass(%s)", (STORES_TABLE,)).fetchone()[0] is None:
            return False
        return conn.execute(f"SELECT 1 FROM {STORES_TABLE} WHERE name = %s", (loc.name,)).fetchone() is not None


def store_label(location: Any) -> str:
    """How a store is named in messages and logs: its folder, or its URL with the password masked."""
    if not isinstance(location, (str, Path)):
        return str(getattr(location, "path", location))
    return mask_url(str(location)) if is_postgres(str(location)) else str(location)


def store_name(location: str | Path) -> str:
    """A short name (``rag:NAME`` in ``llmapp serve``): the folder's name, or the Postgres store's name."""
    if is_postgres(str(location)):
        from chains.pgconnection import parse_location

        return parse_location(str(location)).name
    return Path(location).expanduser().resolve().name


def all_docs(store: Any) -> list[dict[str, Any]]:
    """Every chunk of a loaded store, as ``{"source", "start", "end", "text"}`` dicts."""
    return store.all_docs() if hasattr(store, "all_docs") else list(store.docs)
