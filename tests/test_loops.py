"""The loop guard: a reply ends where it starts repeating itself, the repeat is never shown, and the
text before it is exactly the raw model's."""

from __future__ import annotations

from llmapp.backends import load_chat_model
from llmapp.backends.loops import LoopGuard, max_copies
from llmapp.core.config import GenerationConfig

LOOP = "I'm a friendly AI, and I'm here to help. " * 6 + "Bye."


def test_guard_finds_the_repeat_and_holds_back_a_possible_one():
    guard = LoopGuard()
    assert guard.check("I like green tea. I like green tea. ") == (18, 0)
    assert guard.check("I like green tea. I like gr") == (None, len("I like gr"))  # might become a repeat
    assert guard.check("I like green tea. I like coffee") == (None, 0)  # diverged: show it
    assert guard.check("Yes. Yes. Yes.") == (None, 0)  # too short to call a loop
    assert guard.check("The cat sat down, the cat sat down, and slept") == (18, 0)  # a clause loop too


def test_max_copies_counts_sentences():
    assert max_copies(LOOP) == 6
    assert max_copies("One two three. Four five six.") == 1
    assert max_copies("Hi.") == 0


def test_streamed_reply_ends_before_the_repeat_and_never_shows_it():
    chat = load_chat_model("loop", backend="fake", replies=[LOOP])
    pieces = list(chat.stream("Tell me about yourself."))
    text = "".join(p.content for p in pieces)
    assert text.strip() == "I'm a friendly AI, and I'm here to help."
    assert pieces[-1].response_metadata["finish_reason"] == "stop"
    raw = chat.with_generation({"stop_loops": False}).invoke("Tell me about yourself.").content
    assert raw == LOOP and raw.startswith(text)  # the guard only cuts: what came before is the model's own


def test_loop_guard_is_the_default_and_explicit_settings_win():
    assert GenerationConfig().stop_loops is True and GenerationConfig().repetition_penalty == 1.0
    chat = load_chat_model("loop", backend="fake", replies=[LOOP], stop_loops=False)
    assert chat.invoke("hi").content == LOOP


def test_real_model_reply_has_no_sentence_three_times():
    chat = load_chat_model(max_tokens=160)
    text = chat.invoke("Tell me about yourself.").content
    assert text and max_copies(text) < 2
