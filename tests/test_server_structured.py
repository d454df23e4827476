"""Structured output and tool calls through the server, driven by the official ``openai`` client.

A real ``llmapp serve`` app runs on an ephemeral 127.0.0.1 port (``llmapp.server.running``) with the
bundled SmolLM2 on llama.cpp: ``client.chat.completions.parse(response_format=Model)`` returns the
model instance, tool calls come back in OpenAI's shape (whole and streamed, finish reason
``tool_calls``), and a schema the grammar cannot honour is a 400 naming the keyword.

    python -m pytest tests/test_server_structured.py -q
"""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel, Field

from llmapp.server import ServeConfig, create_app, running

CHAT = "smollm2-135m-instruct"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}},
                   "required": ["city"], "additionalProperties": False}}}


class City(BaseModel):
    name: str = Field(max_length=30)
    country: str = Field(max_length=30)


class GetWeather(BaseModel):
    """Get the current weather in a city."""

    city: str


@pytest.fixture(scope="module")
def url():
    with running(create_app(ServeConfig(models=[CHAT]))) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)


def _ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_parse_returns_the_model_instance(client):
    reply = client.chat.completions.parse(model=CHAT, response_format=City, max_tokens=64,
                                          messages=_ask("Lyon is a city in France. Which city and country?"))
    choice = reply.choices[0]
    assert isinstance(choice.message.parsed, City) and choice.finish_reason == "stop"
    assert City.model_validate_json(choice.message.content) == choice.message.parsed


def test_json_schema_streams_piece_by_piece(client):
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": City.model_json_schema()}}
    chunks = list(client.chat.completions.create(model=CHAT, response_format=fmt, max_tokens=64, stream=True,
                                                 messages=_ask("Lyon is a city in France. Which city?")))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    City.model_validate_json(text)
    assert sum(bool(c.choices and c.choices[0].delta.content) for c in chunks) > 3
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_json_object_mode(client):
    reply = client.chat.completions.create(model=CHAT, response_format={"type": "json_object"}, max_tokens=40,
                                           messages=_ask("Describe a cat as JSON."))
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_a_cut_short_reply_still_parses(client):
    reply = client.chat.completions.create(model=CHAT, max_tokens=12, messages=_ask("Name a city."),
                                           response_format={"type": "json_schema", "json_schema": {
                                               "name": "city", "schema": City.model_json_schema()}})
    City.model_validate_json(reply.choices[0].message.content)
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens <= 14


def test_forced_tool_call(client):
    reply = client.chat.completions.create(model=CHAT, tools=[WEATHER], tool_choice="required", max_tokens=48,
                                           messages=_ask("What is the weather in Oslo?"))
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    assert json.loads(call.function.arguments) == {"city": "Oslo"}


def test_streamed_tool_call(client):
    chunks = list(client.chat.completions.create(
        model=CHAT, tools=[WEATHER], max_tokens=48, stream=True,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        messages=_ask("What is the weather in Oslo?")))
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert len(deltas) == 1 and deltas[0].function.name == "get_weather" and deltas[0].index == 0
    assert json.loads(deltas[0].function.arguments)["city"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_parse_with_pydantic_function_tool(client):
    reply = client.chat.completions.parse(model=CHAT, tools=[openai.pydantic_function_tool(GetWeather)],
                                          tool_choice="required", max_tokens=48,
                                          messages=_ask("What is the weather in Oslo?"))
    parsed = reply.choices[0].message.tool_calls[0].function.parsed_arguments
    assert isinstance(parsed, GetWeather) and parsed.city


def test_auto_routes_and_answers_tool_results(client):
    asked = _ask("What is the weather in Oslo today?")
    call = client.chat.completions.create(model=CHAT, tools=[WEATHER], max_tokens=48, messages=asked)
    assert call.choices[0].message.tool_calls, "the router should pick get_weather"
    tool_call = call.choices[0].message.tool_calls[0]
    history = asked + [call.choices[0].message.model_dump(exclude_none=True),
                       {"role": "tool", "tool_call_id": tool_call.id, "content": "Sunny, 21 C"}]
    answer = client.chat.completions.create(model=CHAT, tools=[WEATHER], max_tokens=24, messages=history)
    assert answer.choices[0].message.content and not answer.choices[0].message.tool_calls
    chat = client.chat.completions.create(model=CHAT, tools=[WEATHER], max_tokens=12, messages=_ask("Hello!"))
    assert chat.choices[0].message.content and chat.choices[0].finish_reason in ("stop", "length")


def test_bad_schemas_and_choices_are_400s(client):
    bad = {"type": "object", "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}}}
    cases = [({"response_format": {"type": "json_schema", "json_schema": {"name": "z", "schema": bad}}},
              "response_format", "pattern"),
             ({"tools": [{"type": "function", "function": {"name": "f", "parameters": bad}}]}, "tools", "pattern"),
             ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
              "tool_choice", "nope"),
             ({"response_format": {"type": "xml"}}, "response_format", "xml")]
    for extra, param, word in cases:
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model=CHAT, messages=_ask("hi"), max_tokens=8, **extra)
        body = info.value.body
        assert body["param"] == param and word in body["message"] and "\n" not in body["message"], body


def test_the_openai_backend_gets_structured_output_and_tools_through_the_server(url):
    from langchain_core.tools import tool

    from llmapp.backends import load_chat_model

    remote = load_chat_model(f"openai:{url}/v1#{CHAT}", max_tokens=64)
    city = remote.with_structured_output(City).invoke("Lyon is in France. Which city?")
    assert isinstance(city, City) and city.name

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return "Sunny."

    calls = remote.bind_tools([get_weather], tool_choice="any").invoke("What is the weather in Oslo?").tool_calls
    assert calls[0]["name"] == "get_weather" and calls[0]["args"] == {"city": "Oslo"}
