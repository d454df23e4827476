"""Atomic writes: every file and folder llmapp saves appears whole or not at all.

A file is written to a temporary name in the same folder, flushed to disk, then renamed over the
target (``os.replace`` is atomic on POSIX and Windows). A folder is built under a temporary name and
swapped in by renames; the previous folder survives until the new one is complete, so a crash or a
full disk mid-save loses nothing.

    from llmapp.core.files import write_text, replace_dir
    write_text(path, json.dumps(manifest))
    with replace_dir(out) as tmp:
        model.save_pretrained(tmp)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


@contextmanager
def replace_dir(target: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name, then swap it in for ``target``.

    Yields the temporary folder to fill. On success the old ``target`` (if any) is moved to
    ``target.old``, the new one renamed into place, and the old one deleted; on any exception the
    temporary folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        old = target.with_name(target.name + ".old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
