"""Decoding through the chat models on the real bundled SmolLM2, on both local backends.

Every behaviour a user relies on (streaming, stop strings, usage, seeds, the window check,
cancellation) is written once in ``llmapp.backends.base`` and checked here on llama.cpp and on
transformers alike; the two backends must also build the very same prompt tokens.
"""

from __future__ import annotations

import threading

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from llmapp.backends import load_chat_model
from llmapp.backends.engine import TextStream, _held_back, fit_prompt
from llmapp.core.config import GenerationConfig
from llmapp.core.errors import ConfigError, LLMAppError, PromptTooLong

PROMPT = "List the days of the week, one per line."
BACKENDS = ["llamacpp", "hf"]


@pytest.fixture(scope="module", params=BACKENDS)
def chat(request):
    return load_chat_model(backend=request.param, max_tokens=24)


def test_stream_equals_invoke_and_is_incremental(chat):
    chunks = [c.content for c in chat.stream(PROMPT)]
    assert len([c for c in chunks if c]) > 3
    assert "".join(chunks) == chat.invoke(PROMPT).content


def test_stop_cuts_exactly_before_the_stop_string(chat):
    full = chat.invoke(PROMPT).content
    assert "Tuesday" in full
    stopped = chat.invoke(PROMPT, stop=["Tuesday"])
    assert stopped.content == full[: full.index("Tuesday")]
    assert stopped.response_metadata["finish_reason"] == "stop"


def test_usage_counts_prompt_and_reply_tokens(chat):
    msg = chat.invoke(PROMPT, max_tokens=5)
    assert msg.usage_metadata["input_tokens"] == len(chat.prompt_ids([HumanMessage(PROMPT)]))
    assert msg.usage_metadata["output_tokens"] == 5
    assert msg.response_metadata["finish_reason"] == "length"
    assert chat.invoke("Say OK.", max_tokens=200).response_metadata["finish_reason"] == "stop"  # end of turn


def test_same_seed_same_text_other_seed_other_text(chat):
    sampled = chat.with_generation({"max_tokens": 20, "temperature": 1.0})
    a = sampled.invoke("Tell me a story.", seed=7).content
    b = sampled.invoke("Tell me a story.", seed=7).content
    c = sampled.invoke("Tell me a story.", seed=8).content
    assert a == b
    assert a != c


def test_system_prompt_goes_through_the_chat_template(chat):
    ids = chat.prompt_ids([SystemMessage("You are Zed."), HumanMessage("Hi")])
    text = chat.engine.tokenizer.decode(ids) if hasattr(chat.engine, "tokenizer") else chat.lm.tokenizer.decode(ids)
    assert "You are Zed." in text and "SmolLM" not in text  # our system prompt replaces the default one


def test_both_backends_build_the_same_prompt_tokens():
    llama, hf = (load_chat_model(backend=b) for b in BACKENDS)
    chat = [SystemMessage("Be brief."), HumanMessage("Hi, I'm Ada. Ça va? 你好"), AIMessage("Hello Ada!"),
            HumanMessage("What is my name?")]
    assert llama.prompt_ids(chat) == hf.prompt_ids(chat)
    for text in ["Once upon a time", "  spaced\n\ttext  ", "naïve café 東京 🙂"]:
        assert llama.get_token_ids(text) == hf.get_token_ids(text)
        assert llama.engine.encode(text, True) == hf.engine.encode(text, True)


def test_empty_prompt_is_refused(chat):
    with pytest.raises(LLMAppError, match="empty prompt"):
        chat.invoke("   ")


def test_bad_settings_fail_where_they_are_written(chat):
    with pytest.raises(ConfigError, match="temperature=nan"):
        chat.with_generation({"temperature": float("nan")})
    with pytest.raises(ConfigError, match="seed"):
        chat.invoke("hi", seed=2**40)
    with pytest.raises(ConfigError, match="max_tokens=0"):
        load_chat_model(backend=chat.backend_name, max_tokens=0)


def test_over_long_prompt_is_refused_unless_truncation_is_asked(chat):
    ids = chat.get_token_ids("word " * 100)
    with pytest.raises(PromptTooLong, match=r"prompt is \d+ tokens but only 40 fit .*truncate=True"):
        fit_prompt(48, ids, GenerationConfig(max_tokens=8))
    kept = fit_prompt(48, ids, GenerationConfig(max_tokens=8, truncate=True))
    assert kept == ids[-40:]
    stream = TextStream(chat.engine, kept, GenerationConfig(max_tokens=8))
    stream.text()
    assert stream.usage["input_tokens"] == 40 and 0 < stream.usage["output_tokens"] <= 8
    with pytest.raises(PromptTooLong, match="prompt is"):
        chat.invoke("word " * (chat.context_window + 10))


def test_closing_a_stream_stops_the_model(chat):
    ids = chat.prompt_ids([HumanMessage("Write a very long essay about the ocean.")])
    stream = TextStream(chat.engine, ids, GenerationConfig(max_tokens=200))
    it = iter(stream)
    next(it), next(it)
    it.close()  # what Ctrl-C in the REPL or a client disconnect does
    assert stream.usage["output_tokens"] < 20
    assert stream.usage["finish_reason"] in (None, "cancelled")


def test_a_cancel_from_another_thread_stops_within_a_token(chat):
    ids = chat.prompt_ids([HumanMessage("Write a very long essay about the ocean.")])
    stream = TextStream(chat.engine, ids, GenerationConfig(max_tokens=400))
    seen = []
    for piece in stream:
        seen.append(piece)
        if len(seen) == 3:
            threading.Thread(target=stream.cancel.set).start()
    assert stream.usage["finish_reason"] == "cancelled"
    assert stream.usage["output_tokens"] < 12


def test_a_deadline_ends_the_reply_with_what_it_has(chat):
    slow = chat.with_generation({"max_tokens": 400}).model_copy(update={"timeout": 0.3})
    reply = slow.invoke("Write a very long essay about the ocean.")
    assert reply.response_metadata["finish_reason"] == "length"
    assert 0 < reply.usage_metadata["output_tokens"] < 400


def test_partial_stop_strings_are_held_back():
    assert _held_back("Hello Tue", ["Tuesday"]) == 3
    assert _held_back("Hello", ["Tuesday"]) == 0
    assert _held_back("ab", ["abc", "b"]) == 2


def test_llamacpp_cache_grows_when_a_prompt_needs_it():
    from llmapp.backends.llamacpp import MIN_CONTEXT, ChatLlamaCpp, load_engine

    chat = ChatLlamaCpp(max_tokens=2, threads=1, batch_threads=2)
    engine = chat.engine
    assert engine is load_engine(chat.model, 1, 2, 1, chat.kv_cache)
    short = chat.invoke("Say OK.").content
    long = "The cat sat on the mat. " * 300  # ~2100 tokens: more than the first cache holds
    assert engine.allocated == MIN_CONTEXT
    reply = chat.invoke(long)
    assert engine.allocated == 2 * MIN_CONTEXT and reply.usage_metadata["input_tokens"] > MIN_CONTEXT
    assert chat.invoke("Say OK.").content == short  # the restarted engine answers as before
