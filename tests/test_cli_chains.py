"""The chain commands in-process: index, ask, generate, summarize, demo, and their one-line errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from llmapp.cli import cli
from llmapp.core.errors import LLMAppError
from llmapp.corpora import GENAI_NOTES as DEMO_DATA


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "store"
    result = CliRunner().invoke(cli, ["index", str(DEMO_DATA), "--store", str(path)])
    assert result.exit_code == 0, result.output
    assert "5 indexed, 0 unchanged, 0 removed, 0 skipped" in result.output
    return path


def test_index_again_is_incremental(store):
    result = CliRunner().invoke(cli, ["index", str(DEMO_DATA), "--store", str(store)])
    assert result.exit_code == 0 and "0 indexed, 5 unchanged" in result.output


def test_ask_streams_a_cited_answer_with_sources(store):
    result = CliRunner().invoke(cli, ["ask", "What are the two networks in a GAN?", "--store", str(store),
                                      "--max-tokens", "24", "-k", "2", "--retrieval", "vector"])
    assert result.exit_code == 0, result.output
    assert "\nSources:\n[1] " in result.output and "[2] " in result.output


def test_ask_json_and_abstention(store):
    result = CliRunner().invoke(cli, ["ask", "Who won the 2018 FIFA World Cup?", "--store", str(store), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["abstained"] is True and out["sources"] == []


def test_ask_before_indexing_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(cli, ["ask", "anything", "--store", str(tmp_path / "none")])
    assert isinstance(result.exception, LLMAppError) and "llmapp index" in str(result.exception)


def test_generate_with_template_and_vars():
    result = CliRunner().invoke(cli, ["generate", "add two numbers", "-t", "code_assistant", "--var", "language=Go",
                                      "--max-tokens", "8"])
    assert result.exit_code == 0 and result.output.strip(), result.output
    listing = CliRunner().invoke(cli, ["generate", "--list"])
    assert "rag_answer" in listing.output and "code_assistant" in listing.output
    bad = CliRunner().invoke(cli, ["generate", "x", "--var", "nokv"])
    assert bad.exit_code == 2 and "k=v" in bad.output


def test_summarize_a_short_file(tmp_path):
    (tmp_path / "note.md").write_text("# Cats\nCats sleep most of the day. They hunt at dusk and dawn.")
    result = CliRunner().invoke(cli, ["summarize", str(tmp_path / "note.md"), "--max-tokens", "12"])
    assert result.exit_code == 0 and result.output.strip(), result.output


@pytest.fixture
def demo_home(tmp_path, monkeypatch):
    """A private $LLMAPP_HOME that shares the real one's model cache (no second GGUF conversion)."""
    from llmapp.core import paths

    home = tmp_path / "home"
    home.mkdir()
    if (paths.home() / "models").is_dir():
        (home / "models").symlink_to(paths.home() / "models")
    monkeypatch.setenv("LLMAPP_HOME", str(home))
    return home


def test_demo_indexes_into_home_and_answers(demo_home):
    llmapp_home = demo_home
    result = CliRunner().invoke(cli, ["demo", "--max-tokens", "16"])
    assert result.exit_code == 0, result.output
    assert "5 notes" in result.output and "Sources:" in result.output
    assert (llmapp_home / "demo-store" / "manifest.json").exists()
    again = CliRunner().invoke(cli, ["demo", "--max-tokens", "4", "-q", "What is the capital of France?"])
    assert "up to date" in again.output and "could not find anything" in again.output
