"""The chat REPL in-process: session logic, slash commands, trimming, autosave, save/load, piped stdin.

    python -m pytest tests/test_chat.py -q
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from llmapp.chat.conversation import (
    ChatState,
    ConversationLog,
    fit_history,
    latest_conversation,
    load_state,
    read_log,
    save_state,
)
from llmapp.chat.session import ChatSession, ExitChat, Reply
from llmapp.chat.terminal import read_message
from llmapp.cli import cli
from llmapp.core.errors import LLMAppError, PromptTooLong


@pytest.fixture
def llmapp_home(tmp_path, monkeypatch):
    """A private $LLMAPP_HOME whose model cache points at the real one (no second GGUF conversion)."""
    from llmapp.core import paths

    models = paths.home() / "models"
    home = tmp_path / "llmapp-home"
    home.mkdir()
    if models.is_dir():
        (home / "models").symlink_to(models)
    monkeypatch.setenv("LLMAPP_HOME", str(home))
    return home


@pytest.fixture
def session(chat_model, llmapp_home):
    """A session on the shared bundled model, autosaving into a private $LLMAPP_HOME."""
    return ChatSession(chat_model=chat_model, settings={"max_tokens": 6}, log=ConversationLog.new())


def lines_reader(lines):
    it = iter(lines)

    def next_line(_continuation: bool) -> str:
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None
    return next_line


# -- input ------------------------------------------------------------------------------------
def test_read_message_blocks():
    assert read_message(lines_reader(["hello"])) == "hello"
    assert read_message(lines_reader(['"""one line"""'])) == "one line"
    assert read_message(lines_reader(['"""', "def f():", "    return 1", '"""', "next"])) == "def f():\n    return 1"
    assert read_message(lines_reader(['"""first', "second", 'third"""'])) == "first\nsecond\nthird"
    assert read_message(lines_reader(['"""', "unclosed at EOF"])) == "unclosed at EOF"
    with pytest.raises(EOFError):
        read_message(lines_reader([]))


# -- trimming ---------------------------------------------------------------------------------
def turns(n: int) -> list[dict]:
    out = []
    for i in range(n):
        out += [{"role": "user", "content": f"Question number {i}: tell me about topic {i}."},
                {"role": "assistant", "content": f"Topic {i} is interesting because of reason {i}. " * 3}]
    return out


def test_fit_history_drops_oldest_turns_keeps_system_and_newest(chat_model):
    count = chat_model.get_num_tokens_from_messages
    system = "You are terse."
    history = turns(6) + [{"role": "user", "content": "And the last one?"}]

    def count_dicts(msgs):
        from llmapp.chat.session import _to_lc
        return count(_to_lc(msgs))

    full = count_dicts([{"role": "system", "content": system}] + history)
    kept, dropped = fit_history(history, system, count_dicts, budget=full)
    assert (kept, dropped) == (history, 0)

    budget = full // 2
    kept, dropped = fit_history(history, system, count_dicts, budget=budget)
    assert 0 < dropped < len(history) and dropped % 2 == 0  # whole turns, oldest first
    assert kept == history[dropped:] and kept[0]["role"] == "user" and kept[-1] == history[-1]
    assert count_dicts([{"role": "system", "content": system}] + kept) <= budget
    # one more turn would not have fitted: it dropped as few as possible
    assert count_dicts([{"role": "system", "content": system}] + history[dropped - 2:]) > budget

    with pytest.raises(PromptTooLong, match="shorten it"):
        fit_history(history, system, count_dicts, budget=5)


def test_session_trims_to_max_context_with_notice(session):
    session.set({"max_context": 160})
    for m in turns(4):
        session.messages.append(m)
    reply = session.send("Summarize.")
    text = "".join(reply)
    assert reply.dropped > 0 and text
    assert session.messages[-1] == {"role": "assistant", "content": text}
    assert session.context_window == 160
    usage = session.context_usage()
    assert usage["kept"] < usage["messages"] and usage["used"] + usage["reserved"] <= 160
    assert "oldest no longer fit" in session.run_command("/tokens")


def test_message_too_long_is_refused_and_withdrawn(session):
    session.set({"max_context": 64})
    with pytest.raises(PromptTooLong):
        session.send("word " * 200)
    assert session.messages == []  # the session goes on, unpoisoned


# -- talking ----------------------------------------------------------------------------------
def test_reply_streams_and_joins_history_and_log(session):
    reply = session.send("Name a colour.")
    pieces = list(reply)
    assert len(pieces) >= 2 and reply.text == "".join(pieces)
    assert reply.output_tokens == 6 and reply.first_token_s is not None
    state, torn = read_log(session.log.path)
    assert not torn and [m["role"] for m in state.messages] == ["user", "assistant"]
    assert state.messages[1]["content"] == reply.text


def test_stop_keeps_partial_reply_and_cancels(session):
    session.set(["max_tokens=200"])
    reply = session.send("Write a long story about a dragon.")
    it = iter(reply)
    got = next(it) + next(it)
    reply.stop()
    assert reply.partial and reply.text == got
    assert session.messages[-1] == {"role": "assistant", "content": got, "partial": True}
    assert reply.output_tokens < 200
    # the session goes on
    session.set(["max_tokens=3"])
    assert "".join(session.send("Hi")).strip()


def test_retry_replaces_the_last_reply(session):
    first = "".join(session.send("Say hello."))
    again = session.run_command("/retry")
    assert isinstance(again, Reply)
    assert "".join(again) == first  # greedy: the same text
    assert [m["role"] for m in session.messages] == ["user", "assistant"]
    state, _ = read_log(session.log.path)
    assert state.messages == session.messages  # the log replays to the same history (a pop was logged)


def test_retry_with_nothing_to_retry(session):
    with pytest.raises(LLMAppError, match="nothing to retry"):
        session.run_command("/retry")


# -- commands ---------------------------------------------------------------------------------
def test_help_lists_every_command(session):
    from llmapp.chat.commands import COMMANDS

    text = session.run_command("/help")
    for name in ("/reset", "/system", "/model", "/set", "/rag", "/save", "/load", "/history", "/tokens",
                 "/retry", "/exit"):
        assert name in text and name in COMMANDS
    assert '"""' in text and "Esc" in text


@pytest.mark.parametrize("line, match", [
    ("/frobnicate", "unknown command /frobnicate"),
    ("/set temperature=hot", "bad value for temperature"),
    ("/set warmth=1", "unknown setting 'warmth'.*max_context"),
    ("/set temperature", "expected key=value"),
    ("/set top_p=0", "top_p=0.0: must be above 0"),
    ("/set max_context=abc", "max_context"),
    ("/model gpt-17", "unknown model 'gpt-17'"),
    ("/load /nonexistent/chat.json", "cannot read"),
    ("/save", "give a file"),
    ("/rag /nonexistent/store", "no store"),
])
def test_bad_commands_give_one_line_errors(session, line, match):
    before = session.config
    with pytest.raises(LLMAppError, match=match) as info:
        session.run_command(line)
    assert "\n" not in str(info.value)
    assert session.config == before


def test_set_system_reset_tokens_exit(session):
    assert "temperature=0.7" in session.run_command("/set temperature=0.7 max_tokens=4 seed=1")
    assert (session.config.temperature, session.config.max_tokens, session.config.seed) == (0.7, 4, 1)
    session.run_command("/system You are a pirate.")
    assert session.system == "You are a pirate."
    empty = session.context_usage()["used"]
    "".join(session.send("Hello"))
    usage = session.run_command("/tokens")
    assert f"of {session.chat_model.context_window} tokens" in usage and "in 2 messages" in usage
    assert session.context_usage()["used"] > empty
    assert "1 user" in session.run_command("/history")
    session.run_command("/reset")
    assert session.messages == [] and session.system == "You are a pirate."
    with pytest.raises(ExitChat):
        session.run_command("/exit")
    state, _ = read_log(session.log.path)
    assert state.system == "You are a pirate." and state.messages == [] and state.settings["seed"] == 1


# -- save / load / autosave ---------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_save_then_load_round_trip(session, tmp_path, suffix):
    session.run_command("/system Be brief.")
    session.messages += [{"role": "user", "content": "My name is Ada."},
                         {"role": "assistant", "content": "Hello Ada", "partial": True}]
    session.set(["temperature=0.5"])
    path = tmp_path / f"chat{suffix}"
    assert "saved 2 messages" in session.run_command(f"/save {path}")
    assert not list(tmp_path.glob(".chat*"))  # no temp file left behind
    other = ChatSession(chat_model=session.chat_model)
    assert "loaded 2 messages" in other.run_command(f"/load {path}")
    assert other.messages == session.messages and other.system == "Be brief."
    assert other.config.temperature == 0.5


def test_load_rejects_invalid_files(session, tmp_path):
    bad = {"not json": "{nope", "no messages": json.dumps({"version": 1}),
           "bad role": json.dumps({"version": 1, "messages": [{"role": "tool", "content": "x"}]}),
           "new version": json.dumps({"version": 99, "messages": []})}
    for i, (why, text) in enumerate(bad.items()):
        path = tmp_path / f"bad{i}.json"
        path.write_text(text)
        with pytest.raises(LLMAppError) as info:
            session.run_command(f"/load {path}")
        assert str(path) in str(info.value), why
    assert session.messages == []


def test_log_torn_last_line_is_dropped_and_repaired(llmapp_home):
    log = ConversationLog.new()
    log.append({"type": "message", "role": "user", "content": "one"})
    log.append({"type": "message", "role": "assistant", "content": "two"})
    with open(log.path, "ab") as f:
        f.write(b'{"type": "message", "role": "user", "con')  # the machine died mid-write
    state, torn = read_log(log.path)
    assert torn and [m["content"] for m in state.messages] == ["one", "two"]
    log2, state2 = ConversationLog.open_existing(log.path)
    log2.append({"type": "message", "role": "user", "content": "three"})
    state3, torn3 = read_log(log.path)
    assert not torn3 and [m["content"] for m in state3.messages] == ["one", "two", "three"]


def test_log_corruption_and_versions_are_one_line_errors(llmapp_home):
    log = ConversationLog.new()
    log.append({"type": "message", "role": "user", "content": "hi"})
    lines = log.path.read_text().splitlines()
    log.path.write_text(lines[0] + "\nGARBAGE\n" + lines[1] + "\n")
    with pytest.raises(LLMAppError, match="corrupt at line 2"):
        read_log(log.path)
    header = json.loads(lines[0])
    log.path.write_text(json.dumps({**header, "version": 99}) + "\n")
    with pytest.raises(LLMAppError, match="format version 99"):
        read_log(log.path)
    assert latest_conversation() == log.path


def test_save_state_jsonl_replays(tmp_path):
    state = ChatState(system="s", messages=[{"role": "user", "content": "a"}], model="m", settings={"seed": 3})
    path = save_state(state, tmp_path / "x.jsonl")
    assert load_state(path) == state


# -- the CLI, piped -----------------------------------------------------------------------------
def test_piped_stdin_prints_bare_replies(llmapp_home):
    result = CliRunner().invoke(cli, ["chat", "-o", "max_tokens=5"],
                                input="Name a fruit.\n/tokens\n/bogus\n/set temperature=x\n\"\"\"\nTwo\nlines\n\"\"\"\n")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "\x1b[" not in out and ">>>" not in out  # no colours, no prompt
    assert "context:" in out and "in 2 messages" in out
    assert "error: unknown command /bogus" in result.stderr
    assert "error: bad value for temperature" in result.stderr
    state, _ = read_log(latest_conversation())
    assert [m["content"] for m in state.messages if m["role"] == "user"] == ["Name a fruit.", "Two\nlines"]

    # --continue resumes it
    result = CliRunner().invoke(cli, ["chat", "--continue"], input="/history\n")
    assert result.exit_code == 0 and "Name a fruit." in result.stdout and "Two lines" in result.stdout


def test_continue_with_corrupt_file_is_a_clear_error(llmapp_home):
    folder = llmapp_home / "conversations"
    folder.mkdir(parents=True)
    (folder / "20240101-000000-abcdef.jsonl").write_text("this is not json\n")
    proc = subprocess.run([sys.executable, "-c", "from llmapp.cli import main; main()", "chat", "--continue"],
                          input="", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: conversation") and "corrupt at line 1" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_continue_with_nothing_saved(llmapp_home):
    with pytest.raises(LLMAppError, match="no saved conversation"):
        latest_conversation()


# -- RAG ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory, embeddings):
    from chains.index import build_index

    docs = tmp_path_factory.mktemp("docs")
    (docs / "zephyr.txt").write_text("The Zephyr-9 telescope was built in 2031 in Chile. "
                                     "It has a 12-metre mirror made of beryllium.\n")
    (docs / "banana.txt").write_text("Bananas are rich in potassium. A medium banana has about 420 mg.\n")
    path = tmp_path_factory.mktemp("store") / "store"
    build_index([docs], path, embeddings=embeddings)
    return path


def test_rag_mode_answers_with_sources(session, store):
    assert "RAG on" in session.run_command(f"/rag {store}")
    session.set(["max_tokens=24"])
    reply = session.send("How big is the mirror of the Zephyr-9 telescope?")
    assert reply.rag and reply.sources and reply.sources[0]["source"].endswith("zephyr.txt")
    assert reply.sources[0]["n"] == 1
    text = "".join(reply)
    assert text.strip()
    assert session.messages[-1]["sources"] == reply.sources
    assert "RAG off" in session.run_command("/rag off")
    assert session.store is None


def test_second_answer_uses_the_first_turn(chat_model, llmapp_home):
    """The same question with and without the earlier turn: only the history can supply the name."""
    with_history = ChatSession(chat_model=chat_model, settings={"max_tokens": 24}, log=ConversationLog.new())
    "".join(with_history.send("My name is Zanthor. Please remember my name."))
    recalled = "".join(with_history.send("What is my name?"))
    fresh = ChatSession(chat_model=chat_model, settings={"max_tokens": 24}, log=ConversationLog.new())
    assert "Zanthor" in recalled
    assert "Zanthor" not in "".join(fresh.send("What is my name?"))
