"""Documents: read .txt/.md/.html/.pdf files of any encoding and find them in folders.

A file that cannot be read (binary, a damaged PDF) raises :class:`~llmapp.core.errors.LLMAppError`
naming why, so an index run skips it and goes on with the rest.

    from chains.documents import find_files, read_document
    text = read_document(Path("notes.md"))

Chunking lives in ``chains.chunking`` (``split_text`` is re-exported here for older imports).
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from chains.chunking import split_text  # noqa: F401 - re-exported: chunking moved to chains.chunking
from llmapp.core.errors import LLMAppError

log = logging.getLogger(__name__)

SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")  # what a folder walk picks up


MAX_FILE_BYTES = 10_000_000  # one file's text cap: 10 MB is ~2.5M tokens, ~25 min of embedding on 2 cores
PDF_BYTES_PER_TEXT_BYTE = 10  # a PDF is mostly fonts and images: its raw cap is this many times the text cap


def check_size(path: Path, max_bytes: int = MAX_FILE_BYTES, fix: str = "split it into smaller files") -> int:
    """The size of regular file ``path``, refusing anything else and files over ``max_bytes``.

    Args:
        fix: the advice for a file that is too large (``llmapp index`` names ``--max-file-mb``).

    Raises:
        LLMAppError: not a regular file (a FIFO or device would block or never end), or too large.
    """
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise LLMAppError("not a regular file")
    if st.st_size > max_bytes:
        raise LLMAppError(f"{st.st_size / 1e6:.3g} MB is over the {max_bytes / 1e6:.3g} MB limit for one file; "
                          f"{fix.format(mb=math.ceil(st.st_size / 1e6))}")
    return st.st_size


def read_document(path: Path, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The text of a .txt/.md/.html/.pdf file.

    Args:
        path: the file.
        max_bytes: larger files (and PDFs whose text is larger) are refused.

    Raises:
        LLMAppError: binary, unreadable, damaged or oversized content (the caller skips the file and
            counts it). Nothing else escapes: a hostile file costs one warning, never the run.
    """
    suffix = path.suffix.lower()
    try:
        check_size(path, max_bytes * (PDF_BYTES_PER_TEXT_BYTE if suffix == ".pdf" else 1))
        if suffix == ".pdf":
            text = _read_pdf(path)
            if len(text) > max_bytes:
                raise LLMAppError(f"its text is over the {max_bytes / 1e6:g} MB limit for one file; split it")
            return text
        data = path.read_bytes()
    except OSError as exc:
        raise LLMAppError(f"unreadable ({exc.strerror or exc})") from None
    if b"\x00" in data[:8192]:
        raise LLMAppError("binary content")
    text = decode_bytes(data)
    if suffix in (".html", ".htm"):
        text = _html_text(text)
    return text


def _html_text(text: str) -> str:
    import warnings

    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    try:
        with warnings.catch_warnings():  # XHTML and stray <?xml?> read fine as HTML; the warning is noise
            warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
            soup = BeautifulSoup(text, "html.parser")
        for tag in soup(["script", "style", "noscript"]):
            tag.decompose()
        return soup.get_text("\n")
    except RecursionError:  # thousands of nested tags: keep the text, drop the markup by hand
        return re.sub(r"<[^>]*>", " ", text)
    except Exception as exc:  # noqa: BLE001 - html.parser can choke on hostile markup: one line, never a traceback
        raise LLMAppError(f"unreadable HTML ({type(exc).__name__}: {str(exc)[:120]})") from None


_LATIN = {"cp1250", "cp1252", "cp1254", "cp1257", "latin_1", "iso8859_2", "iso8859_9", "iso8859_15", "mac_roman"}


def decode_bytes(data: bytes) -> str:
    """Decode text of unknown encoding: UTF-8 (BOM or not), then charset detection, then latin-1.

    Detection cannot tell the Latin code pages apart on a short text (``café`` reads as cp1250 too), so
    when it lands on one of them, Windows-1252, the most common, is preferred if the bytes fit it.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(data).best()
        if best is not None:
            if best.encoding in _LATIN:
                try:
                    return data.decode("cp1252")
                except UnicodeDecodeError:
                    pass
            return str(best)
    except ImportError:  # charset-normalizer comes with requests, but is not a hard dependency
        pass
    return data.decode("latin-1")  # never fails: every byte is a character


def _read_pdf(path: Path) -> str:
    """The text of every page. A damaged or hostile PDF makes pypdf raise almost anything
    (``NotImplementedError``, ``LimitReachedError``, ``DeprecationError``, ``RecursionError``...):
    all of it is one :class:`LLMAppError`."""
    from pypdf import PdfReader

    pypdf_log = logging.getLogger("pypdf")
    level = pypdf_log.level
    pypdf_log.setLevel(logging.ERROR)  # a damaged file logs a warning per object; the skip says it once
    try:
        reader = PdfReader(str(path))
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        detail = " ".join(str(exc).split())[:120] or "no detail"
        raise LLMAppError(f"unreadable PDF ({type(exc).__name__}: {detail})") from None
    finally:
        pypdf_log.setLevel(level)


def find_files(paths: Iterable[str | Path], skipped: list[str] | None = None) -> list[Path]:
    """Files to index: each path itself, or the supported files found by recursing a folder.

    A folder walk stays inside the folder: a symlink that leads outside it is not followed (it is
    skipped with a warning), so a link to ``~/.ssh`` never lands in a store. Hidden files and
    folders are left out.

    Args:
        paths: files and folders.
        skipped: if given, ``"path: why"`` is appended for each file left out with a warning.

    Raises:
        LLMAppError: a path that does not exist, or nothing to index at all.
    """
    paths = list(paths)
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise LLMAppError(f"{raw} does not exist; give files or folders to index")
        if path.is_dir():
            found += _walk(path, skipped)
        else:
            found.append(path)
    if not found:
        raise LLMAppError(f"no {'/'.join(s[1:] for s in SUFFIXES)} files under {', '.join(map(str, paths))}; "
                          "add documents or point at another folder")
    return sorted({p.resolve() for p in found})


def _walk(folder: Path, skipped: list[str] | None) -> list[Path]:
    """Supported files under ``folder``, never leaving it through a symlink."""
    root = folder.resolve()
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for d in list(dirnames):  # symlinked folders are never walked (os.walk does not follow them)
            target = (here / d).resolve()
            if (here / d).is_symlink() and not _inside(target, root):  # inside: its files are walked anyway
                _note(skipped, here / d, f"a symlink to {target}, outside {folder}; not followed")
        for name in sorted(filenames):
            p = here / name
            if name.startswith(".") or p.suffix.lower() not in SUFFIXES:
                continue
            if p.is_symlink() and not _inside(p.resolve(), root):
                _note(skipped, p, f"a symlink to {p.resolve()}, outside {folder}; not followed")
                continue
            if p.is_file():
                out.append(p)
    return out


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _note(skipped: list[str] | None, path: Path, why: str) -> None:
    log.warning("skipping %s: %s", path, why)
    if skipped is not None:
        skipped.append(f"{path}: {why}")
