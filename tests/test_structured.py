"""Structured output and tool calls: the grammar builder, closing cut-short replies, the tool protocol,
the router, and both local backends decoding under one grammar.

Fast checks use the scripted ``fake`` backend and llguidance alone; the backend checks run the real
bundled SmolLM2 on llama.cpp and on transformers.

    python -m pytest tests/test_structured.py -q
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from llmapp.backends import load_chat_model
from llmapp.backends.constrained import closing
from llmapp.backends.grammar import (
    LAYOUT,
    SchemaError,
    generation_schema,
    json_grammar,
    tool_grammar,
    validate,
)
from llmapp.backends.router import route
from llmapp.backends.tools import preamble, to_chat_dict, tool_specs
from llmapp.core.errors import LLMAppError

DATA = Path(__file__).resolve().parent.parent / "eval" / "data"
ITEMS = [json.loads(line) for line in (DATA / "structured.jsonl").read_text(encoding="utf-8").splitlines()]
BAD = [json.loads(line) for line in (DATA / "structured-bad-schemas.jsonl").read_text(encoding="utf-8").splitlines()]


class Joke(BaseModel):
    """Joke to tell user."""

    setup: str = Field(description="question to set up a joke")
    punchline: str = Field(description="answer to resolve the joke")


class JokeDict(TypedDict):
    """Joke to tell user."""

    setup: Annotated[str, ..., "question to set up a joke"]
    punchline: Annotated[str, ..., "answer to resolve the joke"]


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return "Sunny."


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as 2 * (3 + 4)."""
    return "14"


def _fake(*replies: str, **settings):
    return load_chat_model("scripted", backend="fake", replies=list(replies), **settings)


# ------------------------------------------------------------------------------ the grammar builder

@pytest.mark.parametrize("bad", BAD, ids=[b["id"] for b in BAD])
def test_bad_schemas_are_refused_in_one_line_naming_the_keyword(bad):
    with pytest.raises(SchemaError) as info:
        if bad.get("context") == "tool":
            json_grammar(bad["schema"])  # fine as structured output; refused only as a tool's parameters
            tool_grammar([{"name": "t", "parameters": bad["schema"]}])
        else:
            json_grammar(bad["schema"])
    assert info.value.keyword == bad["keyword"] and f"'{bad['keyword']}'" in str(info.value)
    assert "\n" not in str(info.value)


def test_every_suite_schema_compiles_and_tightens_only():
    for item in ITEMS:
        grammar = json_grammar(item["schema"])
        assert grammar.lark.startswith("%llguidance {}\nstart: %json ") and grammar.schema == item["schema"]
    loose = generation_schema({"type": "object", "properties": {"a": {"type": "string"},
                                                                "b": {"type": "array", "items": {"type": "integer"}}}})
    assert loose["properties"]["a"]["maxLength"] > 0 and loose["properties"]["b"]["maxItems"] > 0
    assert loose["additionalProperties"] is False


def _dump(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(LAYOUT["item_separator"], LAYOUT["key_separator"]))


def test_closing_completes_every_prefix_of_every_gold_answer():
    """Cut each gold object anywhere: the closing always makes JSON that satisfies the schema."""
    for item in [i for i in ITEMS if i["gold"] is not None][::3]:
        lark, text = json_grammar(item["schema"]).lark, _dump(item["gold"])
        assert closing(lark, text) == ""
        for cut in range(0, len(text), 3):
            value = json.loads(text[:cut] + closing(lark, text[:cut]))
            validate(value, item["schema"])


def test_a_closed_empty_reply_satisfies_pydantic_for_common_field_types():
    import datetime
    import enum
    from typing import Literal

    class Colour(str, enum.Enum):
        red = "red"
        blue = "blue"

    class Place(BaseModel):
        city: str

    class Record(BaseModel):
        colour: Colour
        kind: Literal["a", "b"]
        home: Place
        other: Place | None = None
        when: datetime.date
        at: datetime.datetime
        score: float = Field(ge=0, le=1)
        count: int = Field(gt=-5, lt=1)
        tags: list[str] = Field(min_length=2)

    Record.model_validate_json(closing(json_grammar(Record.model_json_schema()).lark, ""))


def test_closing_refuses_text_outside_the_grammar():
    with pytest.raises(LLMAppError, match="left the grammar"):
        closing(json_grammar(Joke.model_json_schema()).lark, '{"nope": 1')


# ------------------------------------------------------------------------------ fake backend: the plumbing

@pytest.mark.parametrize("schema", [Joke, JokeDict, Joke.model_json_schema()], ids=["pydantic", "typeddict", "json"])
def test_structured_output_parses_and_streams_once(schema):
    chat = _fake('{"setup": "Why?", "punchline": "Because."}')
    for method in ("json_schema", "json_mode", "function_calling"):
        reply = '{"name": "%s", "arguments": {"setup": "Why?", "punchline": "Because."}}' % (
            schema["title"] if isinstance(schema, dict) else schema.__name__)
        runnable = (_fake(reply) if method == "function_calling" else chat).with_structured_output(schema, method=method)
        value = runnable.invoke("joke")
        expected = {"setup": "Why?", "punchline": "Because."}
        assert (value.model_dump() if isinstance(value, BaseModel) else value) == expected
        assert len(list(runnable.stream("joke"))) == 1


def test_include_raw_and_the_schema_hint_in_the_prompt():
    chat = _fake('{"setup": "Why?", "punchline": "Because."}')
    out = chat.with_structured_output(Joke, include_raw=True).invoke("joke")
    assert isinstance(out["parsed"], Joke) and out["parsing_error"] is None and out["raw"].content.startswith("{")
    chat_dicts, grammar = chat.plan_reply([HumanMessage("joke")], {"response_format": {
        "type": "json_schema", "json_schema": {"name": "Joke", "schema": Joke.model_json_schema()}}})
    assert grammar.kind == "json" and "punchline (string): answer to resolve the joke" in chat_dicts[0]["content"]


def test_a_reply_cut_by_max_tokens_is_closed_and_says_length():
    chat = _fake('{"setup": "Why did the chicken cross the road to get to the other side", "punchline": "x"}',
                 max_tokens=12)
    message = chat.with_structured_output(Joke, include_raw=True).invoke("joke")["raw"]
    Joke.model_validate_json(message.content)
    assert message.response_metadata["finish_reason"] == "length"
    assert message.usage_metadata["output_tokens"] <= 12 + 2


def test_a_bad_schema_fails_where_it_is_written():
    with pytest.raises(SchemaError, match="'pattern'"):
        _fake("{}").with_structured_output({"type": "object", "properties": {"z": {"type": "string", "pattern": "x"}}})
    with pytest.raises(LLMAppError, match="names no bound tool"):
        _fake("{}").bind_tools([get_weather], tool_choice="nope")


def test_tool_calls_have_ids_typed_args_and_stream_whole():
    chat = _fake('{"name": "get_weather", "arguments": {"city": "Oslo"}}').bind_tools([get_weather], tool_choice="any")
    message = chat.invoke("weather in Oslo?")
    (call,) = message.tool_calls
    assert call["name"] == "get_weather" and call["args"] == {"city": "Oslo"} and call["id"].startswith("call_")
    assert message.response_metadata["finish_reason"] == "tool_calls"
    chunks = list(chat.stream("weather in Oslo?"))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert sum(bool(c.tool_call_chunks) for c in chunks) == 1 and merged.tool_calls[0]["args"] == {"city": "Oslo"}


def test_tool_histories_render_into_the_prompt():
    history = [SystemMessage("Be brief."), HumanMessage("Weather in Oslo?"),
               AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Oslo"}, "id": "c1"}]),
               ToolMessage("Sunny.", name="get_weather", tool_call_id="c1"),
               ToolMessage("boom", name="get_weather", tool_call_id="c2", status="error")]
    rendered = [to_chat_dict(m) for m in history]
    assert rendered[2] == {"role": "assistant", "content": '{"name": "get_weather", "arguments": {"city": "Oslo"}}'}
    assert rendered[3] == {"role": "user", "content": "get_weather returned: Sunny."}
    assert rendered[4]["content"] == "get_weather failed: boom"
    chat = _fake('{"name": "get_weather", "arguments": {"city": "Oslo"}}')
    chat_dicts, grammar = chat.plan_reply(history[:2], {"tools": [{"type": "function", "function": s} for s in
                                                                  tool_specs([get_weather])], "tool_choice": "any"})
    assert chat_dicts[0]["content"].startswith("Be brief.\n\nYou can call these tools:") and grammar.kind == "tool"


def test_tools_without_arguments_and_the_preamble():
    @tool
    def now() -> str:
        """The current time."""
        return "noon"

    specs = tool_specs([now, get_weather])
    assert "- now(): The current time." in preamble(specs)
    assert "- get_weather(city: string): Get the current weather in a city." in preamble(specs)
    message = _fake('{"name": "now", "arguments": {}}').bind_tools([now], tool_choice="now").invoke("time?")
    assert message.tool_calls[0]["args"] == {}


def test_the_router_calls_tools_for_requests_that_need_them():
    specs = tool_specs([get_weather, calculator])
    assert route([HumanMessage("What's the weather like in Paris today?")], specs) == "get_weather"
    assert route([HumanMessage("Please compute 17 * 23 for me.")], specs) == "calculator"
    assert route([HumanMessage("Write a short poem about the sea.")], specs) is None
    called = [HumanMessage("What's the weather in Paris?"),
              AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}]),
              ToolMessage("Sunny.", tool_call_id="c1")]
    assert route(called, specs) is None  # its tool has answered: reply in text


# ------------------------------------------------------------------------------ real model, both engines

@pytest.mark.parametrize("backend", ["llamacpp", "hf"])
def test_both_engines_decode_the_same_greedy_tool_call(backend):
    chat = load_chat_model(backend=backend, max_tokens=40).bind_tools([get_weather], tool_choice="any")
    (call,) = chat.invoke("What is the weather in Oslo?").tool_calls
    assert call["name"] == "get_weather" and call["args"] == {"city": "Oslo"}


def test_the_shipped_router_threshold_is_the_calibrated_one():
    from eval.calibrate_router import calibrate

    result = calibrate()
    low, high = result["plateau"]
    assert low <= result["shipped_threshold"] <= high and result["test_accuracy"] >= 0.8, result


def test_eval_task_scores_validity_accuracy_and_refusals():
    from eval.tasks import get_task
    from eval.tasks.base import EvalContext
    from eval.tasks.structured import _parse, field_accuracy

    task = get_task("structured")(ctx=EvalContext(models=["smollm2-135m-instruct"], limit=1))
    examples = task.examples()
    items, bad = [e for e in examples if e["kind"] == "item"], [e for e in examples if e["kind"] == "bad"]
    assert len(items) == 1 and items[0]["split"] == "test" and len(bad) == len(BAD)
    constrained, free = task.systems()
    record = task.run(constrained, items[0])
    assert record["valid"] and record["parsed"] and 0.0 <= record["field_accuracy"] <= 1.0
    refusals = [task.run(constrained, b) for b in bad] + [task.run(free, bad[0])]
    row = task.aggregate([record, *refusals])
    assert row["validity"] == 1.0 and row["bad_schemas_refused"] == 1.0
    assert field_accuracy({"a": "X  y", "b": [1, 2]}, {"a": "x y", "b": [1.0, 3]}) == 2 / 3
    assert _parse('Sure! ```json\n{"a": 1}\n``` done') == ({"a": 1}, True) and _parse("no") == (None, False)
