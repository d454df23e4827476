"""The chat REPL's slash commands: one handler per command, and the table that names them.

A handler takes the session and the text after the command and returns text to show, a ``Reply``
to stream (``/retry``), or None. To add a command, write its handler here and add one row to
:data:`COMMANDS`; ``/help`` lists it by itself.

    from llmapp.chat.commands import COMMANDS, run_command
    run_command(session, "/set temperature=0.7")     # "temperature=0.7 max_tokens=..."
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmapp.chat.conversation import load_state, save_state
from llmapp.chat.state import clean_text
from llmapp.core.config import GENERATION_FIELDS
from llmapp.core.errors import LLMAppError

if TYPE_CHECKING:
    from llmapp.chat.session import ChatSession, Reply


class ExitChat(Exception):
    """Raised by ``/exit``: the front end leaves the loop."""


@dataclass
class Command:
    """One slash command: the handler, its argument synopsis and a line of help."""

    handler: Callable[[ChatSession, str], Any]  # (session, argument text) -> str | Reply | None
    usage: str  # shown by /help after the name, e.g. "TEXT"
    help: str


def run_command(session: ChatSession, line: str) -> Any:
    """Run a slash command line such as ``/set temperature=0.7`` (``ChatSession.run_command``).

    Returns:
        Text to show, a ``Reply`` to stream (``/retry``), or None.

    Raises:
        LLMAppError: unknown command or bad argument (one line).
        ExitChat: ``/exit``.
    """
    name, _, arg = clean_text(line).strip().partition(" ")
    name = ALIASES.get(name.lower(), name.lower())
    command = COMMANDS.get(name)
    if command is None:
        raise LLMAppError(f"unknown command {name}; try /help (commands: {', '.join(COMMANDS)})")
    if "\x00" in arg:
        raise LLMAppError(f"{name}: the argument holds a NUL character; type it again")
    try:
        return command.handler(session, arg.strip())
    except LLMAppError:
        raise
    except (OSError, ValueError) as exc:  # the disk or a path said no: one line, the chat goes on
        raise LLMAppError(f"{name} failed: {getattr(exc, 'strerror', None) or exc}") from None


def _registry() -> dict[str, Any]:
    from llmapp.models import REGISTRY

    return REGISTRY


# -- slash command handlers: (session, argument) -> str | Reply | None --------------------------
def _help(s: ChatSession, arg: str) -> str:
    width = max(len(f"{n} {c.usage}") for n, c in COMMANDS.items())
    lines = [f"{(n + ' ' + c.usage).strip():<{width}}  {c.help}" for n, c in COMMANDS.items()]
    return "\n".join(lines + ['', 'Multi-line input: Esc then Enter (or Alt+Enter) for a new line, or wrap text in """ ... """.',
                              "Ctrl-C stops a reply; Ctrl-D or /exit leaves."])


def _reset(s: ChatSession, arg: str) -> str:
    s.messages.clear()
    s._record({"type": "reset"})
    return "history cleared (system prompt and settings kept)"


def _system(s: ChatSession, arg: str) -> str:
    if not arg:
        return f"system prompt: {s.system!r}" if s.system else "no system prompt (the model's default); set one with /system TEXT"
    s.system = None if arg.lower() in ("none", "off", "default") else arg
    s._record({"type": "system", "content": s.system})
    return "system prompt set" if s.system else "system prompt cleared"


def _model(s: ChatSession, arg: str) -> str:
    from llmapp.backends import BACKENDS

    if not arg:
        names = ", ".join(n for n, spec in _registry().items() if spec.kind == "chat")
        return (f"model: {s.model_name} on {s.chat_model.backend_name} (chat models: {names}, or a local HF "
                f"directory / .gguf file / openai:URL#MODEL; backends: {', '.join(BACKENDS)})")
    name, _, backend = arg.partition(" ")
    s.switch_model(name, backend.strip() or None)
    return f"model: {s.model_name} on {s.chat_model.backend_name} (context window {s.chat_model.context_window} tokens)"


def _set(s: ChatSession, arg: str) -> str:
    if arg:
        pairs = arg.replace(",", " ").split()
        bad = [p for p in pairs if "=" not in p]
        if bad:
            raise LLMAppError(f"expected key=value, got {bad[0]!r}; e.g. /set temperature=0.7 max_tokens=256")
        s.set(pairs)
    c = s.config
    values = " ".join(f"{f.name}={','.join(v) if isinstance(v := getattr(c, f.name), list) else v}"
                      for f in dataclasses.fields(c))
    return f"{values} max_context={s.max_context or 'model'}"


def _rag(s: ChatSession, arg: str) -> str:
    if not arg:
        return f"RAG store: {s.store.path}" if s.store is not None else "RAG is off; turn it on with /rag DIR"
    if arg.lower() == "off":
        s.use_store(None)
        return "RAG off: plain chat"
    s.use_store(arg)
    return f"RAG on: answering from {s.store.path} ({len(s.store)} chunks) with [n] citations"


def _save(s: ChatSession, arg: str) -> str:
    if not arg:
        raise LLMAppError("give a file: /save chat.json (or .jsonl)")
    return f"saved {len(s.messages)} messages to {save_state(s.state, Path(arg))}"


def _load(s: ChatSession, arg: str) -> str:
    if not arg:
        raise LLMAppError("give a file: /load chat.json")
    state = load_state(Path(arg))
    s.restore(state)
    note = f" (saved with model {state.model}; still using {s.model_name})" if state.model and state.model != s.model_name else ""
    return f"loaded {len(state.messages)} messages from {arg}{note}"


def _history(s: ChatSession, arg: str) -> str:
    if not s.messages:
        return "no messages yet"
    lines = [f"system: {s.system}"] if s.system else []
    for i, m in enumerate(s.messages, 1):
        text = " ".join(m["content"].split())
        text = text if len(text) <= 100 else text[:97] + "..."
        mark = " [interrupted]" if m.get("partial") else ""
        lines.append(f"{i:>3} {m['role']:<9} {text}{mark}")
    return "\n".join(lines)


def _tokens(s: ChatSession, arg: str) -> str:
    u = s.context_usage()
    pct = 100 * u["used"] / u["window"] if u["window"] else 0
    dropped = u["messages"] - u["kept"]
    where = (f"the newest {u['kept']} of {u['messages']} messages ({dropped} oldest no longer fit)" if dropped
             else f"{u['messages']} messages")
    return (f"context: {u['used']} of {u['window']} tokens ({pct:.0f}%) in {where}; "
            f"{u['reserved']} reserved for the reply; {u['free']} free")


def _retry(s: ChatSession, arg: str) -> Reply:
    return s.retry()


def _exit(s: ChatSession, arg: str) -> None:
    raise ExitChat


COMMANDS: dict[str, Command] = {
    "/help": Command(_help, "", "show this help"),
    "/reset": Command(_reset, "", "forget the conversation (keeps the system prompt and settings)"),
    "/system": Command(_system, "TEXT", "set the system prompt (/system off: the model's default)"),
    "/model": Command(_model, "NAME [BACKEND]", "switch model or backend (llamacpp, hf, openai); history stays"),
    "/set": Command(_set, "KEY=VALUE ...", ", ".join([*GENERATION_FIELDS, "max_context"])),
    "/rag": Command(_rag, "DIR|URL|off", "answer from a store (folder or postgresql:// URL) with [n] citations, or turn RAG off"),
    "/save": Command(_save, "FILE", "save the conversation (.json, or .jsonl)"),
    "/load": Command(_load, "FILE", "load a saved conversation (replaces the current one)"),
    "/history": Command(_history, "", "show the conversation so far"),
    "/tokens": Command(_tokens, "", "context used vs the window, and room left for the reply"),
    "/retry": Command(_retry, "", "regenerate the last reply"),
    "/exit": Command(_exit, "", "leave (Ctrl-D works too)"),
}
ALIASES = {"/quit": "/exit", "/bye": "/exit", "/?": "/help", "/clear": "/reset"}
