"""The chat REPL's front ends: a rich, line-edited terminal, and a plain one for pipes.

``run_terminal`` is what a person sees: prompt_toolkit line editing with persistent history
(``$LLMAPP_HOME/chat_history``), multi-line input (Esc then Enter, or a ``\"\"\"`` block), replies
streamed live and rendered as Markdown by rich, a status line with tokens/s, Ctrl-C to stop a
reply. ``run_plain`` is for scripts: ``echo hi | llmapp chat`` reads stdin line by line and prints
bare replies (notices and errors go to stderr). Both drive a ``llmapp.chat.ChatSession``.

    llmapp chat                       # the terminal front end
    printf 'hi\\n/tokens\\n' | llmapp chat   # the plain one
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from llmapp.chat.session import ChatSession, ExitChat, Reply
from llmapp.core.errors import LLMAppError
from llmapp.core.paths import home

BLOCK = '"""'  # opens and closes a multi-line message in both front ends


def read_message(next_line: Callable[[bool], str]) -> str:
    """Read one message: a line, or a ``\"\"\"`` block spanning lines (the quotes are removed).

    Args:
        next_line: returns the next line; its argument is True for continuation lines.
            Raises EOFError at the end of input.
    """
    line = next_line(False)
    if not line.lstrip().startswith(BLOCK):
        return line
    body = line.lstrip()[len(BLOCK):]
    if body.rstrip().endswith(BLOCK):  # """one line"""
        return body.rstrip()[:-len(BLOCK)]
    lines = [body] if body else []
    while True:
        try:
            line = next_line(True)
        except EOFError:
            break  # an unclosed block at the end of input is still a message
        if line.rstrip().endswith(BLOCK):
            lines.append(line.rstrip()[:-len(BLOCK)])
            break
        lines.append(line)
    return "\n".join(lines).strip("\n")


def notice_for(reply: Reply, session: ChatSession) -> str | None:
    """The one-line notice shown when history was trimmed to fit the window."""
    if not reply.dropped:
        return None
    return (f"dropped the {reply.dropped} oldest message{'s' * (reply.dropped != 1)} to fit the "
            f"{session.context_window}-token context (system prompt kept)")


def sources_text(reply: Reply, store: Any = None) -> str:
    """RAG sources as plain lines: ``[n] source: snippet`` (paths shortened by the store)."""
    if not reply.rag:
        return ""
    if not reply.sources:
        return "Sources: none relevant enough in the store"
    name = getattr(store, "display_name", None) or str
    lines = ["Sources:"]
    for s in reply.sources:
        snippet = " ".join(str(s.get("snippet", "")).split())
        snippet = snippet if len(snippet) <= 80 else snippet[:77] + "..."
        lines.append(f"[{s.get('n')}] {name(str(s.get('source')))}: {snippet}")
    return "\n".join(lines)


def status_text(reply: Reply, session: ChatSession) -> str:
    """``42 tokens · 24.8 tok/s · first token 0.31 s · context 530/8192``."""
    parts = [f"{reply.output_tokens or 0} tokens"]
    if reply.tokens_per_s:
        parts.append(f"{reply.tokens_per_s:.1f} tok/s")
    if reply.first_token_s is not None:
        parts.append(f"first token {reply.first_token_s:.2f} s")
    if not reply.rag:
        try:
            parts.append(f"context {session.context_usage()['used']}/{session.context_window}")
        except LLMAppError:
            pass
    return " · ".join(parts)


# -- plain: pipes and scripts -----------------------------------------------------------------
def run_plain(session: ChatSession, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> None:
    """Read messages (and slash commands) from ``stdin`` line by line; print bare replies."""
    def next_line(_: bool) -> str:
        line = stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    while True:
        try:
            text = read_message(next_line)
        except EOFError:
            return
        if not text.strip():
            continue
        try:
            result = session.run_command(text) if text.startswith("/") else session.send(text)
            if isinstance(result, Reply):
                if note := notice_for(result, session):
                    stderr.write(f"note: {note}\n")
                for piece in result:
                    stdout.write(piece)
                    stdout.flush()
                stdout.write("\n")
                if src := sources_text(result, session.store):
                    stdout.write(src + "\n")
            elif result:
                stdout.write(f"{result}\n")
            stdout.flush()
        except ExitChat:
            return
        except LLMAppError as exc:
            stderr.write(f"error: {exc}\n")
            stderr.flush()


# -- terminal: people -------------------------------------------------------------------------
class Terminal:
    """The interactive front end. Build it, then :meth:`run`.

    Args:
        session: the chat session to drive.
        markdown: render replies as Markdown (False: raw text, as streamed).
        banner: a line shown before the first prompt.
    """

    def __init__(self, session: ChatSession, markdown: bool = True, banner: str = "") -> None:
        from rich.console import Console

        self.session, self.markdown, self.banner = session, markdown, banner
        self.console = Console(highlight=False)
        self.prompt = self._prompt_session()

    def _prompt_session(self) -> Any:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory
        from prompt_toolkit.key_binding import KeyBindings

        keys = KeyBindings()

        @keys.add("escape", "enter")  # Esc then Enter; Alt+Enter sends the same keys
        def _newline(event: Any) -> None:
            event.current_buffer.insert_text("\n")

        history = home() / "chat_history"
        history.parent.mkdir(parents=True, exist_ok=True)
        return PromptSession(history=FileHistory(str(history)), key_bindings=keys, multiline=False,
                             prompt_continuation="... ")

    def _next_line(self, continuation: bool) -> str:
        return self.prompt.prompt("... " if continuation else ">>> ")

    def run(self) -> None:
        """The loop: read, run a command or stream a reply, repeat until /exit or Ctrl-D."""
        if self.banner:
            self.console.print(self.banner, style="dim", markup=False)
        while True:
            try:
                text = read_message(self._next_line)
            except KeyboardInterrupt:  # Ctrl-C at the prompt clears the line, like a shell
                continue
            except EOFError:
                return
            if not text.strip():
                continue
            try:
                if text.startswith("/"):
                    if self._command(text):
                        return
                else:
                    self._stream(lambda: self.session.send(text), fresh=True)  # noqa: B023 - runs now, in this iteration
            except LLMAppError as exc:
                self.console.print(f"error: {exc}", style="red", markup=False)

    def _command(self, text: str) -> bool:
        """Run a slash command; True means leave."""
        name = text.split()[0].lower()
        if name in ("/retry",):
            self._stream(lambda: self.session.run_command(text))
            return False
        try:
            with self.console.status("working ...", spinner="dots") if name in ("/model", "/rag", "/load") \
                    else _nothing():
                out = self.session.run_command(text)
        except ExitChat:
            return True
        if out:
            self.console.print(out, markup=False)
        return False

    def _stream(self, start: Callable[[], Reply], fresh: bool = False) -> None:
        """Start a reply and show it live; Ctrl-C stops it and keeps the partial text.

        Args:
            start: sends the message (or retries) and returns the reply.
            fresh: a new message; Ctrl-C before the reply starts withdraws it.
        """
        from rich.live import Live
        from rich.markdown import Markdown
        from rich.spinner import Spinner
        from rich.text import Text

        reply: Reply | None = None
        # Repaint by hand, at most 15 times a second and only when the text changed: an auto-refresh
        # thread would re-render the Markdown even when nothing changed, taking CPU from the model.
        live = Live(Spinner("dots", text=Text(" thinking ...", style="dim")), console=self.console,
                    auto_refresh=False, vertical_overflow="ellipsis", transient=False)
        render = (lambda text: Markdown(text)) if self.markdown else (lambda text: Text(text))
        waiting = threading.Event()
        spinner = threading.Thread(target=_spin, args=(live, waiting), daemon=True)
        # Ctrl-C raises only while we wait on the model; arriving during a repaint it is held until
        # the repaint ends, because an interrupted repaint leaves rich's cursor bookkeeping half-done
        # (the reply then shows twice).
        allow, pending = False, False

        def on_sigint(signum: int, frame: Any) -> None:
            nonlocal pending
            if allow:
                raise KeyboardInterrupt
            pending = True

        def wait_for(step: Callable[[], Any]) -> Any:
            nonlocal allow
            if pending:
                raise KeyboardInterrupt
            allow = True
            try:
                return step()
            finally:
                allow = False

        previous = signal.signal(signal.SIGINT, on_sigint)
        echo = _quiet_tty()
        try:
            with live:
                waiting.set()
                spinner.start()
                try:
                    reply = wait_for(start)
                    if note := notice_for(reply, self.session):
                        self.console.print(f"note: {note}", style="yellow", markup=False)
                    pieces, last = iter(reply), 0.0
                    while wait_for(lambda: next(pieces, None)) is not None:
                        if waiting.is_set():
                            waiting.clear()
                            spinner.join()
                        if (now := time.monotonic()) - last >= 1 / 15:
                            live.update(render(reply.text), refresh=True)
                            last = now
                finally:
                    waiting.clear()
                    spinner.join()
                    if reply is not None:
                        live.update(render(reply.text), refresh=True)
        except KeyboardInterrupt:
            if reply is None:
                self.console.print("cancelled", style="yellow")
                if fresh:
                    self._drop_unanswered()
                return
            reply.stop()
            self.console.print("[interrupted]", style="yellow", markup=False)
        finally:
            signal.signal(signal.SIGINT, previous)
            echo()
        if src := sources_text(reply, self.session.store):
            self.console.print(src, style="cyan", markup=False)
        self.console.print(status_text(reply, self.session), style="dim", markup=False)

    def _drop_unanswered(self) -> None:
        """Ctrl-C before the first token: forget the question, so the next one stands alone."""
        s = self.session
        if s.messages and s.messages[-1]["role"] == "user":
            s.messages.pop()
            s._record({"type": "pop"})


def _quiet_tty() -> Callable[[], None]:
    """Stop the terminal echoing keys (and ``^C``) while a reply streams; returns the undo.

    rich pads each line to the full width, so an echoed ``^C`` would wrap onto a new line and the
    repaint would leave the reply on screen twice. Keys typed meanwhile are kept for the next prompt.
    """
    try:
        import termios

        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
        quiet = list(saved)
        quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
    except Exception:  # noqa: BLE001 - no termios (Windows) or stdin is not a tty: nothing to quiet
        return lambda: None
    return lambda: termios.tcsetattr(fd, termios.TCSANOW, saved)


def _spin(live: Any, waiting: threading.Event) -> None:
    """Animate the spinner while the model loads or reads the prompt (until the first token)."""
    while waiting.is_set():
        live.refresh()
        time.sleep(0.1)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def run_terminal(session: ChatSession, markdown: bool = True, banner: str = "") -> None:
    """Run the interactive REPL on this terminal."""
    Terminal(session, markdown=markdown, banner=banner).run()


def is_interactive() -> bool:
    """True when both stdin and stdout are terminals."""
    return sys.stdin.isatty() and sys.stdout.isatty()
