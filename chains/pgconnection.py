"""Postgres locations and connections: parse a ``postgresql://`` store URL, mask its secrets, connect.

A store URL is a libpq connection URI plus one llmapp parameter, ``store`` (the store's name, default:
the database name), which is removed before libpq sees the URL:

    postgresql://app@db.example:5432/docs?store=notes      # password from $PGPASSWORD or ~/.pgpass
    postgresql:///docs?service=llmapp                      # everything from a libpq service file
    postgresql://postgres:@/llmapp?host=/path/to/socket    # `llmapp db start`'s embedded server

Every URL that is printed or logged goes through :func:`mask_url` first, and every error message
through :func:`scrub`, so a password given in a URL never reaches a terminal or a log.

    from chains.pgconnection import connect, parse_location
    loc = parse_location("postgresql://app@localhost/docs?store=notes")
    with connect(loc) as conn:
        ensure_vector(conn, loc, create=False)
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from llmapp.core.errors import LLMAppError

log = logging.getLogger(__name__)

SCHEMES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT_S = 10  # libpq waits forever for an unreachable host by default; a store should fail fast
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")  # store names become part of table names (63-byte limit)
SECRET_PARAMS = ("password", "sslpassword")  # query parameters that carry secrets


@dataclass(frozen=True)
class Location:
    """Where a Postgres store lives."""

    conninfo: str  # what libpq gets: the URL without llmapp's own ``store`` parameter
    name: str  # the store's name: ``llmapp_stores.name`` and the prefix of its chunks tables
    label: str  # the URL with any password masked: the only form that is printed or logged
    secrets: tuple[str, ...] = ()  # passwords found in the URL, scrubbed from every message


def is_postgres(location: Any) -> bool:
    """Whether ``location`` names a Postgres store (a ``postgresql://`` URL) rather than a folder."""
    return isinstance(location, str) and location.strip().lower().startswith(SCHEMES)


def parse_location(url: str) -> Location:
    """Split a store URL into the libpq connection string, the store name and a printable label.

    Raises:
        LLMAppError: not a postgresql:// URL, or a store name that cannot name a table.
    """
    url = url.strip()
    if not is_postgres(url):
        raise LLMAppError(f"{mask_url(url)!r} is not a postgresql:// URL; use postgresql://USER@HOST/DB[?store=NAME]")
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        password = parts.password
    except ValueError as exc:
        raise LLMAppError(f"cannot parse the store URL {mask_url(url)} ({exc}); "
                          "use postgresql://USER@HOST:PORT/DB[?store=NAME]") from None
    names = [v for k, v in query if k == "store"]
    database = parts.path.lstrip("/") or "postgres"
    name = (names[-1] if names else re.sub(r"[^a-z0-9_]+", "_", database.lower()).strip("_")) or "default"
    if not name[0].isalpha():
        name = f"s_{name}"
    if not NAME.match(name):
        raise LLMAppError(f"store name {name!r} cannot name a table; use ?store=NAME with lowercase letters, digits "
                          "and _, starting with a letter (at most 40)")
    secrets = tuple(s for s in [password, *(v for k, v in query if k in SECRET_PARAMS)] if s)
    if secrets:
        log.warning("the store URL carries a password, which shows in process lists and shell history; "
                    "set PGPASSWORD or use a libpq service file instead")
    kept = "&".join(pair for pair in parts.query.split("&") if pair and pair.partition("=")[0] != "store")
    return Location(_unsplit(parts, kept), name, mask_url(url), secrets)


def _unsplit(parts: Any, query: str) -> str:
    """The URL back together (``urlunsplit`` drops the ``//`` of an empty host, which libpq needs)."""
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")


def mask_url(url: str) -> str:
    """``url`` with the password (in the user part or a ``password=`` parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//([^/:@]*):[^@/]*@", r"//\1:***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, sep, password = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if password else netloc
    pairs = [(pair, *pair.partition("=")) for pair in parts.query.split("&") if pair]
    query = "&".join(f"{k}=***" if k in SECRET_PARAMS and v else pair for pair, k, _, v in pairs)
    return _unsplit(parts._replace(netloc=netloc), query)


def scrub(text: str, loc: Location) -> str:
    """``text`` with the location's passwords replaced by ``***`` (for messages that quote a server)."""
    for secret in loc.secrets:
        text = text.replace(secret, "***")
    return text


def reason(exc: BaseException, loc: Location) -> str:
    """The useful part of a psycopg error, on one line, with no secret in it."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    first = first.rsplit("failed: ", 1)[-1]  # libpq: "connection to server at ..., port ... failed: WHY"
    return scrub(re.sub(r"^(FATAL|ERROR):\s+", "", first).strip(), loc)


def connect(loc: Location, *, autocommit: bool = True) -> Any:
    """A psycopg connection to ``loc``, failing within :data:`CONNECT_TIMEOUT_S` when it cannot.

    Raises:
        LLMAppError: the server is unreachable, the login fails or the database does not exist (the
            message names the fix and never the password).
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(loc.conninfo)
    except psycopg.ProgrammingError as exc:
        raise LLMAppError(f"invalid store URL {loc.label} ({reason(exc, loc)}); "
                          "use postgresql://USER@HOST:PORT/DB[?store=NAME]") from None
    params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    params.setdefault("application_name", "llmapp")
    try:
        return psycopg.connect(autocommit=autocommit, **params)
    except psycopg.OperationalError as exc:
        raise connect_error(exc, loc) from None


def connect_error(exc: BaseException, loc: Location) -> LLMAppError:
    """The one-line error for a failed connection: what went wrong and what to do."""
    why = reason(exc, loc)
    low = why.lower()
    if "password" in low or "authentication" in low or ("role" in low and "does not exist" in low):
        return LLMAppError(f"cannot log in to {loc.label}: {why}; check the user name, and give the password in "
                           "$PGPASSWORD or a libpq service file (~/.pg_service.conf), never in the URL")
    if "database" in low and "does not exist" in low:
        return LLMAppError(f"{why} on {loc.label}; create it (createdb NAME) or fix the database name in the URL")
    return LLMAppError(f"cannot reach Postgres at {loc.label} ({why}); start it (llmapp db start prints a URL) "
                       "or fix the host and port in the URL")


def ensure_vector(conn: Any, loc: Location, *, create: bool) -> str:
    """Make sure the ``vector`` extension is there (adding it when ``create`` and allowed); register its type.

    Returns:
        pgvector's version in this database.

    Raises:
        LLMAppError: the extension is missing and cannot be added here (the message says how to add it).
    """
    import psycopg
    from pgvector.psycopg import register_vector

    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    if row is None and create:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        except psycopg.Error as exc:
            if not conn.autocommit:
                conn.rollback()
            log.info("CREATE EXTENSION vector failed: %s", reason(exc, loc))
    if row is None:
        db = conn.info.dbname
        raise LLMAppError(f"database {db!r} at {loc.label} has no vector extension; as a superuser run "
                          f"`CREATE EXTENSION vector;` in {db!r} (the server needs pgvector installed), or use "
                          "`llmapp db start`, which has it")
    register_vector(conn)
    return row[0]
