"""chains.summarize: every strategy keeps every prompt inside the window, measured by the model's tokenizer."""

from __future__ import annotations

import pytest
from langchain_core.callbacks import BaseCallbackHandler

from chains.summarize import SummarizeConfig, summarize, summarize_chain
from llmapp.core.errors import LLMAppError, PromptTooLong

SHAKESPEARE = __import__("conftest").CORPORA / "tinyshakespeare.txt"


class PromptSizes(BaseCallbackHandler):
    """Counts every prompt sent to the model, with the model's own tokenizer and chat template."""

    def __init__(self, chat):
        self.chat, self.sizes = chat, []

    def on_chat_model_start(self, serialized, messages, **kwargs):
        self.sizes.append(self.chat.get_num_tokens_from_messages(messages[0]))


@pytest.fixture(scope="module")
def short_chat():
    from llmapp import load_chat_model

    return load_chat_model(max_tokens=16)


@pytest.mark.parametrize("strategy", ["map_reduce", "refine"])
def test_no_prompt_exceeds_the_window(short_chat, strategy):
    text = SHAKESPEARE.read_text()[:1600]  # ~480 tokens against a 300-token window
    sizes, steps = PromptSizes(short_chat), []
    out = summarize(text, short_chat, strategy, progress=lambda d, n: steps.append((d, n)),
                    config=SummarizeConfig(context_window=300), run_config={"callbacks": [sizes]})
    assert out
    assert len(sizes.sizes) >= 3, sizes.sizes  # the text really was cut into several steps
    assert max(sizes.sizes) <= 300 - 16, sizes.sizes  # prompt + reply always fit
    assert steps[-1][0] == steps[-1][1] == len(sizes.sizes)


def test_auto_stuffs_short_text_in_one_call(short_chat):
    sizes = PromptSizes(short_chat)
    chain = summarize_chain(short_chat)
    out = chain.invoke({"text": "The cat sat on the mat. It was warm and happy."}, {"callbacks": [sizes]})
    assert out and len(sizes.sizes) == 1


def test_stuff_refuses_text_that_does_not_fit_and_bad_input_is_named(short_chat):
    with pytest.raises(PromptTooLong, match="map_reduce or refine"):
        summarize("word " * 500, short_chat, "stuff", config=SummarizeConfig(context_window=300))
    with pytest.raises(LLMAppError, match="use one of: auto, stuff, map_reduce, refine"):
        summarize("text", short_chat, "magic")
    with pytest.raises(LLMAppError, match="empty"):
        summarize("   ", short_chat)


@pytest.mark.slow
def test_100kb_of_shakespeare_with_the_real_window():
    from llmapp import load_chat_model

    chat = load_chat_model(max_tokens=64)
    text = SHAKESPEARE.read_text()[:100_000]
    sizes = PromptSizes(chat)
    out = summarize(text, chat, run_config={"callbacks": [sizes]})
    assert out and len(sizes.sizes) >= 4 and max(sizes.sizes) <= chat.context_window - 64
