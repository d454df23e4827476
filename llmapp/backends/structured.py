"""Structured output and tool calling on the local chat models, by constrained decoding.

:class:`StructuredChat` is mixed into :class:`~llmapp.backends.base.LocalChatModel`, so every local
backend (``llamacpp``, ``hf``, ``fake``) gets LangChain's two entry points:

- ``with_structured_output(schema, method=..., include_raw=...)`` for pydantic (v2 and v1) models,
  TypedDicts and JSON schemas. ``json_schema`` (the default) and ``function_calling`` decode under
  the schema's grammar, as a JSON reply or as a tool call; ``json_mode`` decodes any JSON object
  (held to the schema when one is given, so that the result validates). Streaming yields the
  parsed object once, complete.
- ``bind_tools(tools, tool_choice=...)``: ``"any"``/``"required"``/a tool's name decode a call under
  the tool-call grammar; ``"auto"`` (the default) asks the router (:mod:`llmapp.backends.router`)
  whether the request needs a tool, then decodes a call or free text; ``"none"`` answers in text.

Bound settings travel as OpenAI's request fields (``tools``, ``tool_choice``, ``response_format``),
so the server passes a request's fields straight through.

    chat = load_chat_model(max_tokens=96)
    joke = chat.with_structured_output(Joke).invoke("Tell me a joke about cats.")
    call = chat.bind_tools([get_weather], tool_choice="any").invoke("Weather in Paris?").tool_calls[0]
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from operator import itemgetter
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk

from llmapp.backends.grammar import Grammar, check_schema, response_format_grammar, tool_grammar
from llmapp.backends.tools import (
    answer_from_results,
    choice,
    focused,
    parse_call,
    schema_hint,
    tool_specs,
    with_preamble,
)
from llmapp.core.errors import LLMAppError

METHODS = ("json_schema", "json_mode", "function_calling")


class GrammarEngine:
    """An engine whose every generation follows one grammar (the rest is the wrapped engine's)."""

    def __init__(self, engine: Any, lark: str) -> None:
        self.engine, self.lark = engine, lark

    def generate(self, ids: list[int], config: Any, cancel: Any) -> Any:
        return self.engine.generate(ids, config, cancel, grammar=self.lark)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


class StructuredChat:
    """``bind_tools``, ``with_structured_output`` and the constrained reply, for a local chat model."""

    def bind_tools(self, tools: list[Any], *, tool_choice: Any = None, strict: bool | None = None,
                   parallel_tool_calls: bool | None = None, **kwargs: Any) -> Any:
        """This model with ``tools`` bound (LangChain tools, functions, pydantic models or OpenAI dicts).

        Args:
            tools: the tools the model may call.
            tool_choice: ``"auto"``/None (the router decides), ``"any"``/``"required"``, a tool's name, or ``"none"``.
            strict: accepted for compatibility; calls always follow the schema exactly.
            parallel_tool_calls: accepted for compatibility; a reply holds at most one call.

        Raises:
            SchemaError: a tool's parameters outside the supported schema subset (naming the keyword).
        """
        specs = tool_specs(tools)
        for spec in specs:
            tool_grammar([spec])  # refuse a bad schema now, where it was written
        choice(tool_choice, specs)
        bound = {"tools": [{"type": "function", "function": s} for s in specs], **kwargs}
        if tool_choice is not None:
            bound["tool_choice"] = tool_choice
        return self.bind(**bound)  # type: ignore[attr-defined]

    def with_structured_output(self, schema: Any = None, *, method: str = "json_schema", include_raw: bool = False,
                               strict: bool | None = None, **kwargs: Any) -> Any:
        """A runnable that answers with an instance of ``schema`` (pydantic) or a dict that validates against it.

        Args:
            schema: a pydantic model (v2 or v1), a TypedDict, a JSON schema or an OpenAI tool dict;
                may be None only with ``method="json_mode"`` (any JSON object).
            method: ``json_schema`` (a JSON reply), ``function_calling`` (a tool call) or ``json_mode``.
            include_raw: answer ``{"raw": AIMessage, "parsed": ..., "parsing_error": ...}`` instead.
            strict: accepted for compatibility; constrained replies always follow the schema.

        Raises:
            SchemaError: a schema outside the supported subset (naming the keyword).
            ValueError: an unknown method, or unexpected keyword arguments.
        """
        from langchain_core.runnables import RunnableLambda, RunnableMap, RunnablePassthrough
        from langchain_core.utils.function_calling import convert_to_json_schema

        if kwargs:
            raise ValueError(f"unexpected arguments: {', '.join(kwargs)}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        if schema is None and method != "json_mode":
            raise ValueError(f"method={method!r} needs a schema; pass one, or use method='json_mode'")
        if _plain_schema(schema) and "title" not in schema:
            schema = {"title": "reply", **schema}  # LangChain names a tool or format by the title
        json_schema = convert_to_json_schema(schema) if schema is not None else None
        trace = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
        if method == "function_calling":
            name = tool_specs([schema])[0]["name"]
            llm = self.bind_tools([schema], tool_choice=name, ls_structured_output_format=trace)
        else:
            fmt = ({"type": "json_object"} if json_schema is None else
                   {"type": "json_schema", "json_schema": {"name": json_schema.get("title", "reply"),
                                                           "schema": json_schema}})
            response_format_grammar(fmt)  # refuse a bad schema now
            llm = self.bind(response_format=fmt, ls_structured_output_format=trace)  # type: ignore[attr-defined]
        parser = RunnableLambda(lambda message: parse_reply(message, schema, json_schema), name="parse_reply")
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([fallback], exception_key="parsing_error")

    # ------------------------------------------------------------------------- the reply itself

    def plan_reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> tuple[list[dict[str, str]],
                                                                                     Grammar | None]:
        """The chat to render and the grammar to decode under (None: free text), from the bound fields."""
        from llmapp.backends.tools import to_chat_dict

        chat = [to_chat_dict(m) for m in messages]
        fmt = kwargs.get("response_format")
        if fmt and fmt.get("type", "text") != "text":
            grammar = response_format_grammar(fmt)
            return with_preamble(chat, text=schema_hint(grammar.schema)), grammar
        if not kwargs.get("tools"):
            return chat, None
        specs = [t.get("function", t) for t in kwargs["tools"]]
        pick = choice(kwargs.get("tool_choice"), specs)
        if pick == "auto":
            from llmapp.backends.router import route_for

            decision = route_for(messages, specs)
            if decision is None:
                return answer_from_results(messages, chat), None
            chat, pick = focused(messages, chat, decision.clause), decision.tool
        if pick == "none":
            return answer_from_results(messages, chat), None
        chosen = specs if pick == "any" else [s for s in specs if s["name"] == pick]
        return with_preamble(chat, chosen), tool_grammar(chosen)  # only the callable tools: less to confuse

    def constrained_reply(self, chat: list[dict[str, str]], grammar: Grammar, run_manager: Any = None,
                          **kwargs: Any) -> ConstrainedReply:
        """A reply to ``chat`` decoded under ``grammar``: iterate it for text, then read ``.message``."""
        return ConstrainedReply(self, chat, grammar, run_manager, kwargs)


class ConstrainedReply:
    """One reply decoded under a grammar. Iterating yields its text pieces as they are decoded (and,
    when the token budget cut it short, the closing that completes it); ``message`` is then the
    ``AIMessage``: JSON content, or one tool call.
    """

    def __init__(self, model: Any, chat: list[dict[str, str]], grammar: Grammar, run_manager: Any,
                 kwargs: dict[str, Any]) -> None:
        from llmapp.backends.constrained import reserve
        from llmapp.backends.engine import TextStream, fit_prompt

        self.model, self.grammar, self.run_manager = model, grammar, run_manager
        self.engine = engine = model.engine
        config = model.generation_config([], **kwargs)  # no stop strings: one would cut the JSON
        self.ids = fit_prompt(engine.context_window, model.chat_ids(chat), config)
        held = reserve(grammar.lark, engine.encode, config.max_tokens)
        self.stream = TextStream(GrammarEngine(engine, grammar.lark), self.ids,
                                 config.replace(max_tokens=config.max_tokens - held), timeout=model.timeout)
        self.message: AIMessage | None = None

    def __iter__(self) -> Iterator[str]:
        from llmapp.backends.constrained import closing

        text = ""
        pieces = iter(self.stream)
        try:
            for piece in pieces:
                text += piece
                if self.run_manager:
                    self.run_manager.on_llm_new_token(piece)
                yield piece
        finally:
            pieces.close()  # an early close stops the engine within one token
        finish, produced = self.stream.usage["finish_reason"], self.stream.usage["output_tokens"]
        tail = closing(self.grammar.lark, text)
        if tail:
            yield tail
            text += tail
            produced += len(self.engine.encode(tail))
            finish = "length"
        self.message = self._message(text, finish, produced)

    def _message(self, text: str, finish: str, produced: int) -> AIMessage:
        from llmapp.backends.grammar import validate

        validate(json.loads(text), self.grammar.schema)
        n = len(self.ids)
        usage = {"input_tokens": n, "output_tokens": produced, "total_tokens": n + produced}
        metadata = {"model_name": self.model.model, "finish_reason": finish}
        if self.grammar.kind == "tool":
            metadata["finish_reason"] = "tool_calls" if finish == "stop" else finish
            return AIMessage(content="", tool_calls=[parse_call(text)], usage_metadata=usage,
                             response_metadata=metadata)
        return AIMessage(content=text, usage_metadata=usage, response_metadata=metadata)

    def result(self) -> AIMessage:
        """Decode to the end and return the message."""
        for _ in self:
            pass
        assert self.message is not None
        return self.message

    def chunks(self) -> Iterator[ChatGenerationChunk]:
        """The reply as stream chunks: JSON text piece by piece, or a tool call whole; then usage and metadata."""
        tool = self.grammar.kind == "tool"
        for piece in self:
            if not tool:
                yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        message = self.message
        assert message is not None
        if tool:
            calls = [{"name": c["name"], "args": json.dumps(c["args"], ensure_ascii=False), "id": c["id"],
                      "index": i, "type": "tool_call_chunk"} for i, c in enumerate(message.tool_calls)]
            yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=calls))
        yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=message.usage_metadata,
                                                         response_metadata=message.response_metadata,
                                                         chunk_position="last"))


def _plain_schema(schema: Any) -> bool:
    """Whether ``schema`` is a JSON schema dict (not an OpenAI tool dict)."""
    return isinstance(schema, dict) and "function" not in schema and "parameters" not in schema and (
        "properties" in schema or "type" in schema)


def parse_reply(message: BaseMessage, schema: Any, json_schema: dict[str, Any] | None) -> Any:
    """A constrained reply as the caller's type: a pydantic instance, or a dict checked against the schema.

    Raises:
        LLMAppError: the reply is not JSON, or does not validate (the grammar makes both rare to impossible).
    """
    from llmapp.backends.grammar import validate

    calls = getattr(message, "tool_calls", None)
    if calls:
        value = calls[0]["args"]
    else:
        try:
            value = json.loads(message.text if isinstance(message.text, str) else message.text())
        except ValueError as exc:
            raise LLMAppError(f"the reply is not JSON ({exc}): {str(message.content)[:80]!r}") from None
    if isinstance(schema, type) and hasattr(schema, "model_validate"):
        return schema.model_validate(value)
    if isinstance(schema, type) and hasattr(schema, "parse_obj"):  # pydantic.v1
        return schema.parse_obj(value)
    if json_schema is not None:
        check_schema(json_schema)
        validate(value, json_schema)
    return value
