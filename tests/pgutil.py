"""Helpers for the Postgres store tests: store URLs on the session's server, SQL, document folders.

The server itself is the ``pg`` fixture in conftest.py (a real embedded PostgreSQL with pgvector).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from chains.pgconnection import parse_location


def data_folder() -> Path:
    """A folder for a server's data outside pytest's tmp tree, which pytest keeps private (0700): as root,
    PostgreSQL runs as another user, who must be able to reach its data folder."""
    return Path(tempfile.mkdtemp(prefix="llmapp-test-pg-")) / "data"


def store_url(pg: str, name: str) -> str:
    """The URL of store ``name`` on the session's server."""
    return f"{pg}&store={name}"


def sql(pg: str, statement: str, params=(), database: str = "llmapp"):
    """Run one statement as the server's superuser; its rows, or None."""
    import psycopg

    url = parse_location(pg).conninfo.replace("/llmapp?", f"/{database}?")
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else None


def write_docs(folder: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (name -> text) into ``folder``; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def catch(errors: list, fn, *args) -> None:
    """Call ``fn(*args)``, appending what it raises to ``errors`` (for threads)."""
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        errors.append(exc)
