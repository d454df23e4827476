"""prompts: built-in templates load, variables are checked at load and call time, user folders shadow."""

from __future__ import annotations

import pytest

from llmapp.core.errors import LLMAppError
from prompts import TemplateError, available, check_variables, load_prompt

BUILTINS = {"generate": {"prompt"}, "summarize_map": {"text"}, "summarize_combine": {"text"},
            "summarize_refine": {"existing_summary", "text"}, "rag_answer": {"question", "context"},
            "code_assistant": {"task"}}


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_templates_load_with_their_variables(name):
    prompt = load_prompt(name)
    assert set(prompt.input_variables) == BUILTINS[name]
    values = {v: f"<{v}>" for v in BUILTINS[name]}
    text = " ".join(m.content for m in prompt.format_messages(**values))
    assert all(f"<{v}>" in text for v in BUILTINS[name])


def test_defaults_fill_optional_variables():
    prompt = load_prompt("code_assistant")
    assert "expert Python programmer" in prompt.format_messages(task="x")[0].content
    assert "expert Rust programmer" in prompt.format_messages(task="x", language="Rust")[0].content


def test_declared_variables_must_match_the_messages(tmp_path):
    (tmp_path / "bad.yaml").write_text("variables: [topic, tone]\nmessages:\n"
                                       "  - {role: user, content: 'Write about {{ topic }} for {{ audience }}'}\n")
    with pytest.raises(TemplateError, match="missing from 'variables': audience; declared but unused: tone"):
        load_prompt(tmp_path / "bad.yaml")


def test_user_folder_adds_and_shadows_templates(tmp_path, monkeypatch):
    (tmp_path / "generate.yaml").write_text("variables: [prompt]\nmessages:\n"
                                            "  - {role: user, content: 'MINE {{ prompt }}'}\n")
    (tmp_path / "poem.jinja").write_text("Write a poem about {{ subject }}.")
    monkeypatch.setenv("LLMAPP_TEMPLATES", str(tmp_path))
    assert {"poem", "generate", "rag_answer"} <= set(available())
    assert load_prompt("generate").format_messages(prompt="hi")[0].content == "MINE hi"
    assert load_prompt("poem").input_variables == ["subject"]


def test_unknown_names_and_bad_files_are_clear(tmp_path):
    with pytest.raises(LLMAppError, match="unknown template 'nope'; use one of: .*rag_answer"):
        load_prompt("nope")
    (tmp_path / "x.yaml").write_text("messages: [oops")
    with pytest.raises(LLMAppError, match="not valid YAML"):
        load_prompt(tmp_path / "x.yaml")
    (tmp_path / "y.yaml").write_text("messages:\n  - {role: robot, content: hi}\n")
    with pytest.raises(LLMAppError, match="role"):
        load_prompt(tmp_path / "y.yaml")
    with pytest.raises(LLMAppError, match="does not exist"):
        available(tmp_path / "missing")


def test_call_time_check_names_missing_and_unexpected():
    prompt = load_prompt("summarize_refine")
    with pytest.raises(TemplateError, match="missing: existing_summary; unexpected: txt"):
        check_variables(prompt, {"text": "a", "txt": "b"}, "summarize_refine")
    check_variables(load_prompt("code_assistant"), {"task": "t", "language": "Go"})
