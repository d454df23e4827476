"""Atomic writes: every file and folder llmapp saves appears whole or not at all, and survives a crash.

A file is written to a temporary name in the same folder, flushed to disk, then renamed over the
target (``os.replace`` is atomic on POSIX and Windows). A folder (a store, a checkpoint, a fine-tuned
model, a cache) is built under a temporary name and swapped in by :func:`replace_dir`:

    1. build   .NAME.tmp-PID-XXXX     (fsynced)           crash here: the old NAME is untouched
    2. move    NAME -> .NAME.old-PID                       crash here: NAME is missing, the old copy whole
    3. move    .NAME.tmp-PID-XXXX -> NAME                  crash here: the new NAME is in place
    4. delete  .NAME.old-PID

No crash point loses the previous folder. Readers call :func:`readable_dir`, which falls back to the
``.old`` copy in the one window where NAME is missing; the next writer (or :func:`recover_dir`) puts
it back and deletes what a killed process left behind. Leftovers carry the writer's process id, and
only those of dead processes are touched, so a concurrent writer's work in progress is never swept.

Fault injection for the crash-consistency tests: ``LLMAPP_CRASH_AT=POINT`` (or ``POINT@N``, the N-th
time) makes the process SIGKILL itself at that named write point (:func:`crash_point`).

    from llmapp.core.files import write_text, replace_dir, readable_dir
    write_text(path, json.dumps(manifest))
    with replace_dir(out) as tmp:
        model.save_pretrained(tmp)
    folder = readable_dir(out)
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CRASH_ENV = "LLMAPP_CRASH_AT"  # fault injection: the write point at which to SIGKILL this process
_crash_counts: dict[str, int] = {}


def crash_point(name: str) -> None:
    """SIGKILL this process here if ``$LLMAPP_CRASH_AT`` names this point (``NAME`` or ``NAME@N``).

    Points: ``file:written`` (temp file complete, not renamed), ``dir:built``, ``dir:moved-old``,
    ``dir:swapped`` (see the module docstring), ``index:embedded``, ``autosave:torn`` (half a line
    written) and ``autosave:written``.
    """
    if crash_due(name):
        kill_self()


def crash_due(name: str) -> bool:
    """True if this is the time ``$LLMAPP_CRASH_AT`` names for point ``name`` (counts each call)."""
    want = os.environ.get(CRASH_ENV)
    if not want:
        return False
    point, _, nth = want.partition("@")
    if point != name:
        return False
    _crash_counts[name] = _crash_counts.get(name, 0) + 1
    return _crash_counts[name] == int(nth or 1)


def kill_self() -> None:
    """SIGKILL this process: no finally blocks, no atexit, no flush, as when the machine dies."""
    os.kill(os.getpid(), signal.SIGKILL)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_files(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp makes 0600
        crash_point("file:written")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


# Files whose presence marks a folder as an earlier llmapp output that may be replaced: a checkpoint or
# Hugging Face model (config.json), a store (manifest.json, index.faiss), a cache, a fine-tune, an export.
OUTPUT_MARKERS = ("config.json", "manifest.json", "index.faiss", "llmapp-cache.json", "llmapp-finetune.json",
                  "llmapp-export.json", "model.safetensors", "adapter_config.json",
                  "last/config.json")  # a training run's folder, holding its own last checkpoint


@contextmanager
def replace_dir(target: str | Path, markers: tuple[str, ...] = OUTPUT_MARKERS) -> Iterator[Path]:
    """Build a folder under a temporary name, then swap it in for ``target`` (see the module docstring).

    Leftovers of a killed earlier write are recovered or removed first. On an exception the
    temporary folder is removed and ``target`` is untouched. A ``target`` that is a file, or a
    folder of other things (say ``--out ~``), is refused before anything is written: only an empty
    folder or an earlier output (one holding a file named in ``markers``) is ever replaced.

    Args:
        target: the folder to create or replace (its parent is created).
        markers: file names that mark ``target`` as an earlier output it may replace; ``()`` for a
            folder llmapp owns outright (a cache), replaced whatever it holds.

    Yields:
        The temporary folder to fill.

    Raises:
        LLMAppError: ``target`` is a file, or a folder that is not an earlier output.
    """
    target = _named(Path(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(target)
    _check_replaceable(target, markers)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    try:
        yield tmp
        fsync_tree(tmp)
        crash_point("dir:built")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists() or target.is_symlink():
            os.replace(target, old)  # the old folder stays whole until the new one is in place
        crash_point("dir:moved-old")
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        crash_point("dir:swapped")
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not target.exists():
            os.replace(old, target)  # failed between the two renames: put the old one back
        raise


def _named(target: Path) -> Path:
    """``target`` as an absolute path with a real last name (``.`` and ``..`` resolved)."""
    target = target.expanduser().absolute()
    return target.resolve() if target.name in ("", ".", "..") else target


def _check_replaceable(target: Path, markers: tuple[str, ...]) -> None:
    from llmapp.core.errors import LLMAppError

    if target.is_symlink() and not target.is_dir():
        raise LLMAppError(f"{target} is a broken symlink; remove it or pick another folder")
    if not target.exists():
        return
    if not target.is_dir():
        raise LLMAppError(f"{target} is a file, not a folder; pick a folder name (nothing was written)")
    if target == Path(target.anchor) or target == Path.home():
        raise LLMAppError(f"{target} is not a folder llmapp may replace; pick a new folder for the output")
    try:
        empty = next(target.iterdir(), None) is None
    except OSError as exc:
        raise LLMAppError(f"cannot read {target}: {exc.strerror or exc}; pick another folder") from None
    if markers and not empty and not any((target / m).exists() for m in markers):
        raise LLMAppError(f"{target} holds other files and is not an earlier llmapp output; pick a new or empty "
                          "folder (nothing there was touched)")


def readable_dir(target: str | Path) -> Path:
    """The folder to read for ``target``: itself, or its whole previous copy if a writer died mid-swap.

    Read-only: nothing is moved (:func:`recover_dir` does that, for writers).
    """
    target = Path(target)
    if target.exists():
        return target
    olds = _leftovers(target, "old")
    return max(olds, key=lambda p: p.stat().st_mtime) if olds else target


def recover_dir(target: str | Path) -> None:
    """Undo what a killed :func:`replace_dir` left beside ``target``.

    A missing ``target`` with a whole ``.old`` copy gets it back (the interrupted write never
    committed); temporary and ``.old`` folders of dead processes are deleted.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return
    dead_olds = [p for p in _leftovers(target, "old") if not _alive(_pid_of(p))]
    if not target.exists() and not target.is_symlink() and dead_olds:
        newest = max(dead_olds, key=lambda p: p.stat().st_mtime)
        os.replace(newest, target)
        dead_olds.remove(newest)
    for p in dead_olds + [p for p in _leftovers(target, "tmp") if not _alive(_pid_of(p))]:
        shutil.rmtree(p, ignore_errors=True)


def leftovers(target: str | Path) -> list[Path]:
    """Temporary and ``.old`` folders or files beside ``target`` (what a crash can leave; tests check none stay)."""
    target = Path(target)
    return _leftovers(target, "tmp") + _leftovers(target, "old")


def fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder`` (and the folders themselves) to disk before it is swapped in."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(root))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder; its renames are durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _leftovers(target: Path, kind: str) -> list[Path]:
    name = re.escape(target.name)
    # .NAME.tmp-PID-XXXX / .NAME.old-PID, and what older llmapp versions left: .NAME.tmp-XXXXXXXX
    # (mkdtemp's 8 random characters, no pid) and NAME.old
    legacy = rf"\.{name}\.tmp-[a-z0-9_]{{8}}" if kind == "tmp" else rf"{name}\.old"
    pattern = re.compile(rf"^(\.{name}\.{kind}-(\d+)(-.*)?|{legacy})$")
    try:
        return [p for p in target.parent.iterdir() if pattern.match(p.name)]
    except OSError:
        return []


def _sweep_files(path: Path) -> None:
    """Delete temp files a killed :func:`write_bytes` left for ``path``."""
    for p in _leftovers(path, "tmp"):
        if p.is_file() and not _alive(_pid_of(p)):
            p.unlink(missing_ok=True)


def _pid_of(path: Path) -> int:
    """The writer's process id in a leftover's name; 0 (no live writer) for an older llmapp's leftovers."""
    match = re.search(r"\.(?:tmp|old)-(\d+)(?:-|$)", path.name)
    return int(match.group(1)) if match else 0


def _alive(pid: int) -> bool:
    """True if process ``pid`` exists (this one included, whose writes are never its own leftovers
    unless an exception already cleaned them)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return False  # this process is not mid-write when it starts a new write to the same target
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True
