"""A worked agent on the bundled SmolLM2: LangChain's ``create_agent`` with two small tools.

The tools are a calculator (a safe arithmetic evaluator) and a lookup over the genai notes indexed
into a store. Asked to look something up and then calculate, the agent calls both tools in that
order with the right arguments (the router picks each tool, the tool-call grammar writes the call),
then answers in text from the results. The same code is in ``docs/structured.md``.

    python -m pytest tests/test_agent.py -q
"""

from __future__ import annotations

import ast
import operator

import pytest
from langchain.agents import create_agent
from langchain_core.tools import tool

from llmapp import load_chat_model, load_embeddings
from llmapp.corpora import GENAI_NOTES

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.USub: operator.neg}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.operand))
    raise ValueError("only numbers, + - * / and brackets")


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as 12 * (3 + 4)."""
    try:
        return str(_evaluate(ast.parse(expression, mode="eval").body))
    except (ValueError, SyntaxError, ZeroDivisionError) as exc:
        return f"error: {exc}"


@pytest.fixture(scope="module")
def search_notes(tmp_path_factory):
    from chains.index import build_index
    from chains.store import Store

    folder = tmp_path_factory.mktemp("notes-store")
    build_index([GENAI_NOTES], folder, embeddings=load_embeddings())
    store = Store.load(folder)

    @tool
    def search_notes(query: str) -> str:
        """Search the notes on generative AI and return the best passage."""
        hits = store.search(query, k=1)
        return hits[0].text[:400] if hits else "nothing found"

    return search_notes


def test_calculator_is_safe():
    assert calculator.invoke({"expression": "12 * (3 + 4)"}) == "84"
    assert calculator.invoke({"expression": "__import__('os')"}).startswith("error")


def test_agent_looks_up_then_calculates(search_notes):
    agent = create_agent(load_chat_model(max_tokens=64), [calculator, search_notes])
    out = agent.invoke({"messages": [("user", "Look up GANs in the notes and then calculate 15 + 27.")]})
    messages = out["messages"]
    calls = [c for m in messages if m.type == "ai" for c in m.tool_calls]
    assert [c["name"] for c in calls] == ["search_notes", "calculator"]
    assert "GAN" in calls[0]["args"]["query"] and calls[1]["args"] == {"expression": "15 + 27"}
    results = [m for m in messages if m.type == "tool"]
    assert "Generative Adversarial" in results[0].content and results[1].content == "42"
    final = messages[-1]
    assert final.type == "ai" and not final.tool_calls and final.content.strip()
