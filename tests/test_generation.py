"""Decoding through the chat model on the real bundled SmolLM2: streaming, stop, seeds, limits, errors."""

from __future__ import annotations

import dataclasses

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from llmapp.config import GenerationConfig
from llmapp.errors import LLMAppError, PromptTooLong
from llmapp.generation import TextStream, _held_back, fit_prompt
from llmapp.lc import ChatLocal

PROMPT = "List the days of the week, one per line."


def test_stream_equals_invoke_and_is_incremental(chat_model):
    chunks = [c.content for c in chat_model.stream(PROMPT)]
    assert len([c for c in chunks if c]) > 3
    assert "".join(chunks) == chat_model.invoke(PROMPT).content


def test_stop_cuts_exactly_before_the_stop_string(chat_model):
    full = chat_model.invoke(PROMPT).content
    assert "Tuesday" in full
    stopped = chat_model.invoke(PROMPT, stop=["Tuesday"])
    assert stopped.content == full[: full.index("Tuesday")]
    assert stopped.response_metadata["finish_reason"] == "stop"


def test_usage_counts_prompt_and_reply_tokens(chat_model):
    msg = chat_model.invoke(PROMPT, max_tokens=5)
    assert msg.usage_metadata["input_tokens"] == len(chat_model.prompt_ids([HumanMessage(PROMPT)]))
    assert msg.usage_metadata["output_tokens"] == 5
    assert msg.response_metadata["finish_reason"] == "length"


def test_same_seed_same_text_other_seed_other_text():
    chat = ChatLocal(max_tokens=20, temperature=1.0)
    a = chat.invoke("Tell me a story.", seed=7).content
    b = chat.invoke("Tell me a story.", seed=7).content
    c = chat.invoke("Tell me a story.", seed=8).content
    assert a == b
    assert a != c


def test_system_prompt_goes_through_the_chat_template(chat_model):
    ids = chat_model.prompt_ids([SystemMessage("You are Zed."), HumanMessage("Hi")])
    text = chat_model.lm.tokenizer.decode(ids)
    assert "You are Zed." in text and "SmolLM" not in text  # our system prompt replaces the default one


def test_empty_prompt_is_refused(chat_model):
    with pytest.raises(LLMAppError, match="empty prompt"):
        chat_model.invoke("   ")


def test_over_long_prompt_is_refused_unless_truncation_is_asked(chat_model):
    small = dataclasses.replace(chat_model.lm, context_window=48)
    ids = chat_model.lm.tokenizer("word " * 100)["input_ids"]
    with pytest.raises(PromptTooLong, match=r"prompt is \d+ tokens but only 40 fit .*truncate=True"):
        fit_prompt(small, ids, GenerationConfig(max_tokens=8))
    kept = fit_prompt(small, ids, GenerationConfig(max_tokens=8, truncate=True))
    assert kept == ids[-40:]
    stream = TextStream(small, kept, GenerationConfig(max_tokens=8))
    stream.text()
    assert stream.usage["input_tokens"] == 40 and stream.usage["output_tokens"] <= 8


def test_closing_a_stream_stops_the_model(chat_model):
    ids = chat_model.prompt_ids([HumanMessage("Write a very long essay about the ocean.")])
    stream = TextStream(chat_model.lm, ids, GenerationConfig(max_tokens=200))
    it = iter(stream)
    next(it), next(it)
    it.close()  # what Ctrl-C in the REPL or a client disconnect does
    assert stream.usage["output_tokens"] < 20
    assert stream.usage["finish_reason"] is None or stream.usage["finish_reason"] == "cancelled"


def test_partial_stop_strings_are_held_back():
    assert _held_back("Hello Tue", ["Tuesday"]) == 3
    assert _held_back("Hello", ["Tuesday"]) == 0
    assert _held_back("ab", ["abc", "b"]) == 2
