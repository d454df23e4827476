"""``llmapp chat`` through a real pseudo-terminal (pexpect) on the bundled model.

Covers what only a terminal shows: prompt_toolkit input, live streaming, Ctrl-C stopping a reply
while the session goes on, /save then /load, and the notice when history is trimmed.

    python -m pytest tests/test_chat_pty.py -q
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

# A fresh prompt: prompt_toolkit turns bracketed paste on (ESC[?2004h) before drawing ">>>"; the
# redraws while a line is typed do not, so this never matches the echo of what was sent.
PROMPT = r"\x1b\[\?2004h[^>]*>>>"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
LLMAPP = shutil.which("llmapp", path=str(Path(sys.executable).parent)) or "llmapp"


@pytest.fixture
def spawn(tmp_path):
    """Start ``llmapp chat ARGS`` in a 40x100 pseudo-terminal with a private $LLMAPP_HOME."""
    from llmapp.core import paths

    home = tmp_path / "home"
    home.mkdir()
    if (paths.home() / "models").is_dir():  # share the dequantized model cache
        (home / "models").symlink_to(paths.home() / "models")
    env = dict(os.environ, LLMAPP_HOME=str(home), TERM="xterm-256color", HF_HUB_OFFLINE="1",
               PROMPT_TOOLKIT_NO_CPR="1")  # pexpect does not answer cursor-position requests
    children = []

    def start(*args: str) -> pexpect.spawn:
        child = pexpect.spawn(LLMAPP, ["chat", *args], env=env, encoding="utf-8", timeout=120,
                              dimensions=(40, 100))
        child.expect(PROMPT)
        children.append(child)
        return child

    yield start
    for child in children:
        child.close(force=True)


def say(child: pexpect.spawn, text: str) -> str:
    """Send a line and return what was printed up to the next prompt, without ANSI codes."""
    child.sendline(text)
    child.expect(PROMPT)
    return ANSI.sub("", child.before)


def test_two_turns_then_save_and_load(spawn, tmp_path):
    child = spawn("-o", "max_tokens=16")
    first = say(child, "My name is Ada. Please remember it.")
    assert "tokens" in first and "tok/s" in first  # the status line
    second = say(child, "Do you remember my name?")
    assert "Ada" in second.split("Do you remember my name?", 1)[-1]

    saved = tmp_path / "ada.json"
    assert "saved 4 messages" in say(child, f"/save {saved}")
    say(child, "/reset")
    assert "no messages yet" in say(child, "/history")
    assert "loaded 4 messages" in say(child, f"/load {saved}")
    history = say(child, "/history")
    assert "My name is Ada. Please remember it." in history and "Do you remember my name?" in history
    assert "in 4 messages" in say(child, "/tokens")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)


def test_ctrl_c_stops_a_long_reply_and_the_session_goes_on(spawn):
    child = spawn("-o", "max_tokens=400", "--plain")
    child.sendline("Write a very long story about a dragon who learns to bake bread.")
    child.expect("thinking")
    child.expect(r"\x1b\[2K\w+ \w+ \w+", timeout=120)  # a few words of the reply have been painted
    child.sendintr()
    child.expect(r"\[interrupted\]", timeout=10)  # stopped within moments, not after 400 tokens
    child.expect(PROMPT, timeout=10)
    status = ANSI.sub("", child.before)
    tokens = int(re.search(r"(\d+) tokens", status).group(1))
    assert tokens < 400
    history = say(child, "/history")
    assert "[interrupted]" in history and "dragon" in history
    assert "max_tokens=4" in say(child, "/set max_tokens=4")
    after = say(child, "Say hi.")
    assert re.search(r"\d+ tokens", after)  # a new reply streamed to its end
    child.sendline("/exit")
    child.expect(pexpect.EOF)


def test_context_overflow_trims_history_with_a_notice(spawn):
    child = spawn("-o", "max_tokens=4", "--max-context", "200")
    say(child, "My name is Ada.")
    say(child, "I live in London and I like tea.")
    # A long pasted message, Esc+Enter for new lines (a multi-line paste): the two earlier turns no longer fit.
    child.send("Here are my notes:\x1b\r" + "The quick brown fox jumps over the lazy dog. " * 12 + "\x1b\rSummarize them.")
    child.sendline("")
    child.expect(PROMPT)
    screen = ANSI.sub("", child.before)
    assert re.search(r"dropped the \d+ oldest messages? to fit the 200-token context", screen)
    usage = say(child, "/tokens")
    assert "of 200 tokens" in usage
