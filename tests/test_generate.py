"""chains.generate: prompt | model | parser, streamed, with variables checked."""

from __future__ import annotations

import pytest

from chains.generate import generate_chain
from prompts import TemplateError


def test_stream_pieces_join_to_the_invoke_output(chat_model):
    chain = generate_chain(chat_model)
    pieces = list(chain.stream({"prompt": "Name a primary colour."}))
    assert len(pieces) > 1 and all(isinstance(p, str) for p in pieces)
    assert "".join(pieces) == chain.invoke("Name a primary colour.")  # greedy: the same text both ways


def test_template_variables_are_checked(chat_model):
    chain = generate_chain(chat_model, "code_assistant")
    with pytest.raises(TemplateError, match="missing: task"):
        chain.invoke({"language": "Go"})
    with pytest.raises(TemplateError, match="unexpected: colour"):
        chain.invoke({"task": "add two numbers", "colour": "red"})
    assert chain.invoke({"task": "add two numbers", "language": "Python"}).strip()
