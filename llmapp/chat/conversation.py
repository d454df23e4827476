"""Chat history on disk and in the context window: autosaved JSONL logs, save/load, trimming.

A conversation is an append-only JSONL event log under ``$LLMAPP_HOME/conversations/``. Every line
is one whole JSON object, written with a single ``write`` then flushed and fsynced, so a crash can
at worst tear the last line; :func:`read_log` detects a torn last line, drops it and says so, and
turns any other damage into a one-line :class:`~llmapp.core.errors.LLMAppError`.

Events (each line has ``"type"``):
    header    {"version", "id", "created", "model", "system", "settings"}   first line, always
    message   {"role": "user"|"assistant", "content", "partial"?, "sources"?}
    system    {"content"}          the system prompt changed (/system)
    settings  {"values", "model"}  generation settings or model changed (/set, /model)
    pop       {}                   the last message was withdrawn (/retry)
    reset     {}                   history cleared (/reset, /load)

    python -m llmapp.chat.conversation FILE     # check a conversation file and print a summary
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmapp.chat.state import ChatState, check_message, check_settings, text_or_none
from llmapp.core.errors import LLMAppError, PromptTooLong
from llmapp.core.files import crash_due, crash_point, kill_self, write_text
from llmapp.core.paths import home

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the event schema changes; older files are refused with a clear message
MAX_FILE_BYTES = 256_000_000  # a conversation larger than this is not one: refuse before reading it into memory
__all__ = ["ChatState", "ConversationLog", "check_message", "check_settings", "fit_history", "latest_conversation",
           "load_state", "read_log", "save_state"]


def conversations_dir() -> Path:
    """Where conversations are autosaved: ``$LLMAPP_HOME/conversations``."""
    return home() / "conversations"


class ConversationLog:
    """An append-only, crash-safe JSONL log of one conversation.

    The file is created on the first :meth:`append`, so a chat that never says anything leaves
    nothing behind.

    Args:
        path: the ``.jsonl`` file (new or, with :meth:`open_existing`, one to continue).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._repair = False  # a torn last line was found: cut it off before the next append

    @classmethod
    def new(cls, folder: Path | None = None) -> ConversationLog:
        """A log with a fresh, sortable name: ``YYYYmmdd-HHMMSS-<random>.jsonl``."""
        folder = folder or conversations_dir()
        name = time.strftime("%Y%m%d-%H%M%S") + f"-{secrets.token_hex(3)}.jsonl"
        return cls(folder / name)

    @classmethod
    def open_existing(cls, path: Path) -> tuple[ConversationLog, ChatState]:
        """Open a log to continue it. Returns the log and its replayed state (bad saved settings
        are dropped with a warning: the history always comes back)."""
        state, torn = read_log(path, strict=False)
        conv = cls(path)
        conv._repair = torn
        return conv, state

    def append(self, event: dict[str, Any], header: dict[str, Any] | None = None) -> None:
        """Append one event as one whole line, flushed and fsynced before returning.

        Args:
            event: the event (``type`` plus its fields); a timestamp is added.
            header: written first if the file does not exist yet.
        """
        lines = []
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lines.append({"type": "header", "version": FORMAT_VERSION, "id": self.path.stem,
                          "created": time.time(), **(header or {})})
        lines.append({**event, "ts": round(time.time(), 3)})
        data = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in lines).encode()
        if self._repair:
            _cut_torn_tail(self.path)
            self._repair = False
        # One write of whole lines in append mode: readers never see half an event unless the
        # machine dies mid-write, and that torn tail is what read_log detects.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if crash_due("autosave:torn"):
                os.write(fd, data[: len(data) // 2])  # fault injection: the machine dies mid-write
                kill_self()
            os.write(fd, data)
            os.fsync(fd)
            crash_point("autosave:written")
        finally:
            os.close(fd)


def read_log(path: Path, strict: bool = True) -> tuple[ChatState, bool]:
    """Replay a conversation log (or a ``/save``\\ d ``.jsonl`` file).

    Args:
        path: the ``.jsonl`` file.
        strict: refuse bad saved settings (``/load``); False drops them with a warning (``--continue``).

    Returns:
        The state, and whether a torn last line was dropped.

    Raises:
        LLMAppError: the file is missing, from a newer version, or damaged before its last line.
    """
    path = Path(path)
    fix = "delete it or start a new chat without --continue"
    _check_readable(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LLMAppError(f"cannot read conversation {path}: {exc.strerror or exc}") from None
    lines = raw.split(b"\n")
    torn = False
    if lines and lines[-1] != b"":  # no newline at the end: the last write was cut short
        tail = lines.pop()
        torn = True
        log.warning("%s: dropped a torn last line (%d bytes) left by an interrupted write", path, len(tail))
    else:
        lines.pop() if lines else None
    state = ChatState()
    for n, line in enumerate(lines, 1):
        try:
            event = json.loads(line)
            if not isinstance(event, dict):
                raise ValueError("not a JSON object")
            if n == 1:
                if event.get("type") != "header":
                    raise ValueError("the first line is not a header")
                version = event.get("version")
                if version != FORMAT_VERSION:
                    raise LLMAppError(f"conversation {path} has format version {version!r}; this llmapp reads "
                                      f"version {FORMAT_VERSION}; upgrade llmapp or {fix}")
            state.apply(event, strict)
        except (ValueError, TypeError, RecursionError) as exc:
            raise LLMAppError(f"conversation {path} is corrupt at line {n} ({exc}); {fix}") from None
    if not lines:
        raise LLMAppError(f"conversation {path} is empty or has no complete header line; {fix}")
    return state, torn


def _cut_torn_tail(path: Path) -> None:
    """Truncate ``path`` just after its last newline (removing a torn final line)."""
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as f:
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())


def latest_conversation(folder: Path | None = None) -> Path:
    """The most recently written conversation log.

    Raises:
        LLMAppError: there is none yet.
    """
    folder = folder or conversations_dir()
    logs = sorted(folder.glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name)) if folder.is_dir() else []
    if not logs:
        raise LLMAppError(f"no saved conversation in {folder} to continue; run `llmapp chat` without --continue")
    return logs[-1]


def save_state(state: ChatState, path: Path) -> Path:
    """Write a conversation to ``path`` atomically: ``.jsonl`` as an event log, anything else as JSON.

    Returns:
        The path written.
    """
    path = Path(path).expanduser()
    if path.suffix == ".jsonl":
        events = [{"type": "header", "version": FORMAT_VERSION, "id": path.stem, "created": time.time(),
                   "model": state.model, "system": state.system}]
        if state.settings:
            events.append({"type": "settings", "values": state.settings, "model": state.model})
        events += [{"type": "message", **m} for m in state.messages]
        text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
    else:
        text = json.dumps({"version": FORMAT_VERSION, "model": state.model, "system": state.system,
                           "settings": state.settings, "messages": state.messages}, indent=2, ensure_ascii=False)
    try:
        if path.is_dir():
            raise LLMAppError(f"cannot save to {path}: it is a folder; give a file name, e.g. "
                              f"/save {path / 'chat.json'}")
        write_text(path, text)
    except (OSError, ValueError) as exc:  # unwritable, read-only, full disk, a NUL in the name...: one line
        raise LLMAppError(f"cannot save to {path}: {getattr(exc, 'strerror', None) or exc}; pick another file") from None
    return path


def load_state(path: Path) -> ChatState:
    """Read a conversation written by :func:`save_state` (JSON or JSONL), validating every message.

    Raises:
        LLMAppError: missing, unreadable or invalid file (one line, naming the problem).
    """
    path = Path(path).expanduser()
    _check_readable(path)
    if path.suffix == ".jsonl":
        state, torn = read_log(path)
        if torn:
            raise LLMAppError(f"{path} ends in a torn line; it was not written completely")
        return state
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise LLMAppError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:
        raise LLMAppError(f"{path} is not valid JSON ({' '.join(str(exc).split())[:120]}); "
                          "load a file written by /save") from None
    try:
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            raise ValueError("expected an object with a 'messages' list")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"format version {data.get('version')!r}, expected {FORMAT_VERSION}")
        system = data.get("system")
        if system is not None and not isinstance(system, str):
            raise ValueError("'system' must be a string")
        messages = [check_message(m) for m in data["messages"]]
        settings = check_settings(data.get("settings"))
        model = text_or_none(data, "model")
    except ValueError as exc:
        raise LLMAppError(f"{path} is not a saved conversation: {exc}; fix that field or load another file") from None
    return ChatState(system=system, messages=messages, model=model, settings=settings)


def _check_readable(path: Path) -> None:
    """Refuse what is not a regular file of sane size before reading it (a FIFO would block)."""
    try:
        st = path.stat()
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise LLMAppError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise LLMAppError(f"cannot read {path}: not a regular file; give a file written by /save")
    if st.st_size > MAX_FILE_BYTES:
        raise LLMAppError(f"{path} is {st.st_size / 1e6:.0f} MB, over the {MAX_FILE_BYTES / 1e6:.0f} MB limit for "
                          "a conversation; it is not a file written by /save")


def fit_history(messages: list[dict[str, Any]], system: str | None, count: Callable[[list[dict]], int],
                budget: int) -> tuple[list[dict[str, Any]], int]:
    """Drop the oldest turns until the prompt fits ``budget`` tokens; the system prompt always stays.

    A turn is a user message and the replies after it, so the model never sees an answer without
    its question. The newest user message is never dropped.

    Args:
        messages: the history, oldest first, ending with the user message to answer.
        system: the system prompt (kept), or None.
        count: tokens of a list of ``{"role", "content"}`` dicts rendered with the chat template.
        budget: tokens the prompt may use (context window minus room for the reply).

    Returns:
        The kept messages and how many messages were dropped.

    Raises:
        PromptTooLong: even the system prompt plus the newest message do not fit.
    """
    head = [{"role": "system", "content": system}] if system else []
    starts = [i for i, m in enumerate(messages) if m["role"] == "user"] or [0]

    def fits(start: int) -> tuple[bool, int]:
        used = count(head + [{"role": m["role"], "content": m["content"]} for m in messages[start:]])
        return used <= budget, used

    ok, used = fits(starts[0])
    if ok:  # the common case: everything fits, one count
        return list(messages), 0
    newest_ok, newest_used = fits(starts[-1])
    if not newest_ok:
        raise PromptTooLong(f"your message needs {newest_used} tokens with the system prompt, but only {budget} fit "
                            "(context window minus max_tokens); shorten it, /set max_tokens lower, or /system shorter")
    # Fewer turns never need more tokens, so binary-search the oldest turn that still fits:
    # O(log turns) template renders instead of one per dropped turn.
    lo, hi = 1, len(starts) - 1  # starts[lo-1] does not fit; starts[hi] does
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(starts[mid])[0]:
            hi = mid
        else:
            lo = mid + 1
    return messages[starts[hi]:], starts[hi]


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        st = load_state(Path(arg))
        print(f"{arg}: {len(st.messages)} messages, model={st.model}, system={st.system!r}")
