"""chains.summarize: every strategy keeps every prompt inside the window, the guard keeps the summary to
what the text says, long runs show chunk i of n and resume from their cache after an interruption."""

from __future__ import annotations

import pytest
from langchain_core.callbacks import BaseCallbackHandler

from chains.summarize import (
    AUTO,
    SummarizeConfig,
    Summarizer,
    pick_strategy,
    summarize,
    summarize_chain,
    target_sentences,
)
from llmapp.backends import load_chat_model
from llmapp.core.errors import LLMAppError, PromptTooLong

SHAKESPEARE = __import__("conftest").CORPORA / "tinyshakespeare.txt"


class PromptSizes(BaseCallbackHandler):
    """Counts every prompt sent to the model, with the model's own tokenizer and chat template."""

    raise_error = True  # an exception raised here (the simulated Ctrl-C) reaches the caller

    def __init__(self, chat, stop_at: int | None = None):
        self.chat, self.sizes, self.prompts, self.stop_at = chat, [], [], stop_at

    def on_chat_model_start(self, serialized, messages, **kwargs):
        self.sizes.append(self.chat.get_num_tokens_from_messages(messages[0]))
        self.prompts.append(messages[0][-1].content)
        if self.stop_at is not None and len(self.sizes) == self.stop_at:
            raise KeyboardInterrupt  # the user pressed Ctrl-C as this step started


@pytest.fixture(scope="module")
def short_chat():
    return load_chat_model(max_tokens=16)


@pytest.mark.parametrize("strategy", ["map_reduce", "refine", "extract"])
def test_no_prompt_exceeds_the_window(short_chat, strategy):
    text = SHAKESPEARE.read_text()[:1600]  # ~480 tokens against a 300-token window
    sizes, steps = PromptSizes(short_chat), []
    run = Summarizer(short_chat, SummarizeConfig(strategy=strategy, context_window=300),
                     progress=lambda d, n, label: steps.append((d, n, label)), run_config={"callbacks": [sizes]})
    out = "".join(run.run(text))
    assert out
    assert max(sizes.sizes) <= 300 - 16, sizes.sizes  # prompt + reply always fit
    assert run.stats.max_prompt_tokens <= 300 - 16 and run.stats.steps == len(sizes.sizes)
    if strategy != "extract":
        assert len(sizes.sizes) >= 3, sizes.sizes  # the text really was cut into several steps
        assert steps[0][2] == f"chunk 1 of {steps[0][1] - (strategy == 'map_reduce')}"
    assert steps[-1][:2] == (len(sizes.sizes), len(sizes.sizes)) and steps[-1][2] == "final summary"


def test_auto_on_short_text_runs_the_tables_choice_in_at_most_one_call(short_chat):
    sizes = PromptSizes(short_chat)
    chain = summarize_chain(short_chat)
    out = chain.invoke({"text": "The cat sat on the mat. It was warm and happy."}, {"callbacks": [sizes]})
    assert out and len(sizes.sizes) == (0 if AUTO[0][1] == "select" else 1)
    run = Summarizer(short_chat)
    assert "".join(run.run(SOURCE)) and run.stats.strategy == pick_strategy(run.stats.text_tokens) == AUTO[0][1]


def test_auto_follows_the_measured_table_and_length_grows_with_the_text():
    assert [pick_strategy(n) for n in (100, AUTO[0][0], AUTO[0][0] + 1, 30_000)][0] == AUTO[0][1]
    assert pick_strategy(10**6) == AUTO[-1][1]
    assert target_sentences(200) < target_sentences(2000) < target_sentences(10_000) <= target_sentences(30_000)


def test_stuff_refuses_text_that_does_not_fit_and_bad_input_is_named(short_chat):
    with pytest.raises(PromptTooLong, match="use map_reduce, refine or extract"):
        summarize("word " * 500, short_chat, "stuff", config=SummarizeConfig(context_window=300))
    with pytest.raises(LLMAppError, match="use one of: auto, stuff, map_reduce, refine, extract, select"):
        summarize("text", short_chat, "magic")
    with pytest.raises(LLMAppError, match="empty"):
        summarize("   ", short_chat)
    with pytest.raises(LLMAppError, match="use one of: drop, flag, off"):
        summarize("text", short_chat, config=SummarizeConfig(guard="loose"))


SOURCE = ("The Marlow Street library reopened on Monday, 14 October, eleven months after the flood. "
          "The branch manager, Priya Nandakumar, said about 9000 books were lost. "
          "Insurance covered most of the cost of the repairs.")


def test_the_guard_drops_an_invented_name_number_and_link():
    chat = load_chat_model("fake", backend="fake", replies=[
        "The library reopened on Monday, 14 October. Its manager Ruth Osei counted 12,000 lost books. "
        "Photos: https://marlow.example/flood. Insurance covered most of the repairs."])
    run = Summarizer(chat, SummarizeConfig(strategy="stuff", top_up=False))
    assert "".join(run.run(SOURCE)) == ("The library reopened on Monday, 14 October. "
                                        "Insurance covered most of the repairs.")
    assert [why for _, why in run.stats.dropped] == ["Ruth, Osei, 12,000", "https://marlow.example/flood"]
    # topped up: what was dropped is replaced by a sentence of the source, verbatim
    topped = Summarizer(chat, SummarizeConfig(strategy="stuff", sentences=3))
    out = "".join(topped.run(SOURCE))
    assert topped.stats.topped_up == 1 and "Priya Nandakumar" in out and "Ruth" not in out
    flagged = summarize(SOURCE, chat, "stuff", config=SummarizeConfig(guard="flag", top_up=False))
    assert "[unsupported: Ruth, Osei, 12,000]" in flagged
    assert "Ruth Osei" in summarize(SOURCE, chat, "stuff", config=SummarizeConfig(guard="off"))


def test_when_nothing_survives_the_summary_falls_back_to_the_source_sentences():
    chat = load_chat_model("fake", backend="fake", replies=["Link 1: https://a.example. Link 2: https://b.example."])
    run = Summarizer(chat, SummarizeConfig(strategy="stuff"))
    out = "".join(run.run(SOURCE))
    assert run.stats.fallback and out and all(s in SOURCE for s in out.split(". "))


LONGER = SOURCE + (" The reading room now has a raised floor and new shelving along the river wall. "
                   "Volunteers from the school sorted the donated books over the summer holidays. "
                   "The library will keep its late opening on Thursdays until the end of the year.")


def test_select_copies_source_sentences_in_order_without_calling_the_model():
    from chains.grounding import split_sentences

    chat = load_chat_model("fake", backend="fake", replies=["Ruth Osei wrote this. It must never be sent."])
    sizes = PromptSizes(chat)
    run = Summarizer(chat, SummarizeConfig(strategy="select", sentences=2), run_config={"callbacks": [sizes]})
    out = "".join(run.run(LONGER))
    source = split_sentences(LONGER)
    picked = split_sentences(out)
    assert sizes.sizes == [] and run.stats.steps == 0 and run.stats.strategy == "select"
    assert picked and all(p in source for p in picked) and "Ruth" not in out
    assert [source.index(p) for p in picked] == sorted(source.index(p) for p in picked)  # document order
    assert chat.get_num_tokens(out) <= 2 * 30 * SummarizeConfig().select_scale + 2 * len(picked)


def test_select_length_follows_select_scale_and_the_lead_prior_moves_the_picks():
    chat = load_chat_model("fake", backend="fake", replies=["unused"])

    def picks(**settings):
        return "".join(Summarizer(chat, SummarizeConfig(strategy="select", sentences=2, **settings)).run(LONGER))

    short, long = picks(select_scale=0.5), picks(select_scale=3.0)
    assert len(short.split()) < len(long.split())
    assert picks(select_scale=0.5, extract_lead=5.0).startswith(SOURCE.split(". ")[0])  # a strong prior: the opening


def test_an_interrupted_summary_resumes_from_its_cache(llmapp_home):
    text = " ".join(f"Item {i} is a plain sentence about topic {i}." for i in range(120))  # ~1,300 fake tokens
    config = SummarizeConfig(strategy="map_reduce", chunk_tokens=200, cache=True)
    replies = [f"Item {i} is about topic {i}." for i in range(40)]
    chat = load_chat_model("fake", backend="fake", replies=replies, window=600, max_tokens=32)

    first = PromptSizes(chat, stop_at=4)  # three map steps finish, the fourth is interrupted
    with pytest.raises(KeyboardInterrupt):
        summarize(text, chat, config=config, run_config={"callbacks": [first]})
    (saved,) = (llmapp_home / "summaries").glob("*.json")  # atomic JSON, one file per text + model + settings
    assert '"version": 1' in saved.read_text()

    second, steps = PromptSizes(chat), []
    run = Summarizer(chat, config, progress=lambda d, n, label: steps.append(label), run_config={"callbacks": [second]})
    out = "".join(run.run(text))
    n_chunks = run.stats.steps - 1
    assert out and n_chunks >= 6
    assert run.stats.cached_steps == 3 and len(second.sizes) == run.stats.steps - 3  # only the rest ran
    assert steps[:3] == [f"chunk {i} of {n_chunks} (cached)" for i in (1, 2, 3)]
    assert "Item 0 is about topic 0." in second.prompts[-1]  # the first run's partial summaries were combined
    assert not list((llmapp_home / "summaries").glob("*.json"))  # done: nothing left to resume


@pytest.mark.slow
def test_100kb_of_shakespeare_with_the_real_window():
    chat = load_chat_model(max_tokens=64)
    text = SHAKESPEARE.read_text()[:100_000]
    sizes = PromptSizes(chat)
    out = summarize(text, chat, "map_reduce", run_config={"callbacks": [sizes]})
    assert out and len(sizes.sizes) >= 4 and max(sizes.sizes) <= chat.context_window - 64


def test_cli_summarize_with_the_new_options(tmp_path, llmapp_home):
    from click.testing import CliRunner

    from llmapp.cli import cli

    (tmp_path / "note.md").write_text(SOURCE)
    result = CliRunner().invoke(cli, ["summarize", str(tmp_path / "note.md"), "--strategy", "extract",
                                      "--guard", "flag", "--sentences", "2", "--max-tokens", "64"])
    assert result.exit_code == 0 and result.output.strip(), result.output
    assert not list((llmapp_home / "summaries").glob("*.json"))  # finished: the step cache is gone
    bad = CliRunner().invoke(cli, ["summarize", str(tmp_path / "note.md"), "--guard", "loose"])
    assert bad.exit_code == 2 and "drop" in bad.output
