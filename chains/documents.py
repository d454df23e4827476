"""Documents: read .txt/.md/.html/.pdf files of any encoding and find them in folders.

A file that cannot be read (binary, a damaged PDF) raises :class:`~llmapp.core.errors.LLMAppError`
naming why, so an index run skips it and goes on with the rest.

    from chains.documents import find_files, read_document
    text = read_document(Path("notes.md"))

Chunking lives in ``chains.chunking`` (``split_text`` is re-exported here for older imports).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from chains.chunking import split_text  # noqa: F401 - re-exported: chunking moved to chains.chunking
from llmapp.core.errors import LLMAppError

log = logging.getLogger(__name__)

SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")  # what a folder walk picks up


def read_document(path: Path) -> str:
    """The text of a .txt/.md/.html/.pdf file.

    Raises:
        LLMAppError: binary or unreadable content (the caller skips the file and counts it).
    """
    suffix = path.suffix.lower()
    data = path.read_bytes()
    if suffix == ".pdf":
        return _read_pdf(path)
    if b"\x00" in data[:8192]:
        raise LLMAppError("binary content")
    text = decode_bytes(data)
    if suffix in (".html", ".htm"):
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(text, "html.parser")
        for tag in soup(["script", "style", "noscript"]):
            tag.decompose()
        text = soup.get_text("\n")
    return text


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
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise LLMAppError(f"unreadable PDF ({exc})") from None


def find_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files to index: each path itself, or the supported files found by recursing a folder.

    Raises:
        LLMAppError: a path that does not exist, or nothing to index at all.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise LLMAppError(f"{raw} does not exist; give files or folders to index")
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
        else:
            found.append(path)
    if not found:
        raise LLMAppError(f"no {'/'.join(s[1:] for s in SUFFIXES)} files under {', '.join(map(str, paths))}; "
                          "add documents or point at another folder")
    return sorted({p.resolve() for p in found})
