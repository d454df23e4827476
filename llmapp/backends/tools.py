"""Tools on local chat models: specs, the tool preamble, tool histories in the prompt, and parsing calls.

SmolLM2's chat template knows nothing of tools, so llmapp writes the tool protocol itself, the same
on every local backend:

- the tools are listed in a system message (:func:`preamble`), each as a signature and its description,
  with the one reply format allowed for a call: ``{"name": ..., "arguments": {...}}``;
- an ``AIMessage`` with ``tool_calls`` is rendered as that JSON, one call a line, after its text;
- a ``ToolMessage`` is rendered as a user turn that says which tool returned what.

A call is decoded under :func:`~llmapp.backends.grammar.tool_grammar`, so :func:`parse_call` only
turns the JSON into LangChain's ``tool_calls`` (a fresh ``call_...`` id, typed arguments).

    specs = tool_specs([get_weather])                  # LangChain tools, functions, pydantic models or dicts
    preamble(specs).splitlines()[1]                    # '- get_weather(location: string): Get the weather ...'
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from llmapp.core.errors import LLMAppError

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

_DESCRIPTION_CHARS = 240  # of a tool's description in the preamble: a 135M model's context is precious


def tool_specs(tools: list[Any]) -> list[dict[str, Any]]:
    """OpenAI function specs (``name``, ``description``, ``parameters``) for LangChain tools, functions,
    pydantic models, TypedDicts or OpenAI tool dicts.

    Raises:
        LLMAppError: a tool LangChain cannot describe, or two tools with the same name.
    """
    from langchain_core.utils.function_calling import convert_to_openai_tool

    specs = []
    for tool in tools:
        try:
            spec = convert_to_openai_tool(tool)["function"]
        except (ValueError, TypeError) as exc:
            raise LLMAppError(f"cannot use {tool!r} as a tool ({exc}); pass a LangChain tool, a function with a "
                              "docstring, a pydantic model or an OpenAI tool dict") from None
        params = spec.get("parameters") or {"type": "object", "properties": {}}
        twin = next((s for s in specs if s["name"] == spec["name"]), None)
        if twin is None:
            specs.append({"name": spec["name"], "description": spec.get("description", ""), "parameters": params})
        elif _shape(twin["parameters"]) != _shape(params):  # the same tool twice (a model and its schema) is fine
            raise LLMAppError(f"two different tools are named {spec['name']!r}; give each tool its own name")
    return specs


def _shape(params: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(params.get("properties", {})), tuple(sorted(params.get("required", [])))


def choice(tool_choice: Any, specs: list[dict[str, Any]]) -> str:
    """LangChain's or OpenAI's ``tool_choice`` as ``"auto"``, ``"none"``, ``"any"`` or a tool's name.

    Raises:
        LLMAppError: a name that is not one of the tools, or a value of the wrong shape.
    """
    if tool_choice in (None, "auto"):
        return "auto"
    if tool_choice in ("none", False):
        return "none"
    if tool_choice in ("any", "required", True):
        return "any"
    name = tool_choice
    if isinstance(tool_choice, dict):  # OpenAI: {"type": "function", "function": {"name": ...}}
        name = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
    names = [s["name"] for s in specs]
    if isinstance(name, str) and name in names:
        return name
    raise LLMAppError(f"tool_choice {tool_choice!r} names no bound tool; use 'auto', 'any', 'none' or one of: "
                      f"{', '.join(names)}")


def _type_of(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " | ".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"], ensure_ascii=False)
    if "anyOf" in schema:
        return " | ".join(_type_of(s) for s in schema["anyOf"])
    if "$ref" in schema:
        return "object"
    t = schema.get("type", "any")
    if t == "array":
        return f"list of {_type_of(schema.get('items', {}))}"
    return " | ".join(t) if isinstance(t, list) else t


def signature(spec: dict[str, Any]) -> str:
    """A tool as a one-line signature, e.g. ``get_weather(location: string)``; optional arguments end in ``?``."""
    params = spec["parameters"]
    required = set(params.get("required", []))
    args = [f"{name}{'' if name in required else '?'}: {_type_of(sub)}"
            for name, sub in params.get("properties", {}).items()]
    return f"{spec['name']}({', '.join(args)})"


def preamble(specs: list[dict[str, Any]]) -> str:
    """The system text that lists the tools and the reply format of a call."""
    lines = ["You can call these tools:"]
    for spec in specs:
        about = " ".join(spec.get("description", "").split())
        if len(about) > _DESCRIPTION_CHARS:
            about = about[:_DESCRIPTION_CHARS].rsplit(" ", 1)[0] + " ..."
        lines.append(f"- {signature(spec)}: {about}" if about else f"- {signature(spec)}")
    lines.append('To call a tool, reply with only this JSON: {"name": "<tool name>", "arguments": {<arguments>}}')
    return "\n".join(lines)


def schema_hint(schema: dict[str, Any] | None) -> str:
    """The system text that asks for a JSON reply and names its fields (the grammar enforces them;
    the names and descriptions tell a small model what to put in them)."""
    if not schema or not schema.get("properties"):
        return "Reply with only a JSON object."
    fields = []
    for name, sub in schema["properties"].items():
        about = " ".join(str(sub.get("description", "")).split())
        fields.append(f"- {name} ({_type_of(sub)})" + (f": {about}" if about else ""))
    return "\n".join(["Reply with only a JSON object with these fields:", *fields])


def with_preamble(chat: list[dict[str, str]], specs: list[dict[str, Any]] | None = None,
                  text: str = "") -> list[dict[str, str]]:
    """``chat`` with the tool preamble (or ``text``) added to its system message (or as a new first one)."""
    text = text or preamble(specs or [])
    if chat and chat[0]["role"] == "system":
        return [{"role": "system", "content": f"{chat[0]['content']}\n\n{text}"}, *chat[1:]]
    return [{"role": "system", "content": text}, *chat]


def call_text(name: str, args: dict[str, Any]) -> str:
    """One call as the reply text the grammar allows."""
    return json.dumps({"name": name, "arguments": args}, ensure_ascii=False)


def message_dict(message: Any, text: str) -> dict[str, str] | None:
    """The chat-template dict of a tool message or an AI message with tool calls; None for any other.

    Args:
        message: a LangChain message.
        text: its text content (content blocks already joined).
    """
    if message.type == "tool":
        name = getattr(message, "name", None) or "The tool"
        verb = "failed" if getattr(message, "status", "success") == "error" else "returned"
        return {"role": "user", "content": f"{name} {verb}: {text}"}
    calls = getattr(message, "tool_calls", None)
    if message.type == "ai" and calls:
        lines = [text.strip()] if text.strip() else []
        lines += [call_text(c["name"], c.get("args") or {}) for c in calls]
        return {"role": "assistant", "content": "\n".join(lines)}
    return None


def answer_from_results(messages: list[Any], chat: list[dict[str, str]]) -> list[dict[str, str]]:
    """``chat`` for a text reply after this turn's tool results: the calls and results are folded into
    the system message as context, ending at the user's request (a small model that sees JSON calls
    in the history answers with another one).

    Args:
        messages: the LangChain messages; ``chat``: the same, rendered one dict each.
    """
    last_user = max((i for i, m in enumerate(messages) if m.type == "human"), default=-1)
    results = [m["content"] for m, orig in zip(chat[last_user + 1:], messages[last_user + 1:], strict=True) if orig.type == "tool"]
    if last_user < 0 or not results:
        return chat
    context = "\n".join(["Facts:", *results])  # measured: SmolLM2 answers "The answer is 42." from this
    return with_preamble(chat[: last_user + 1], text=context)


def focused(messages: list[Any], chat: list[dict[str, str]], clause: str) -> list[dict[str, str]]:
    """``chat`` for a routed call: up to the user's last message, which becomes ``clause`` (the part the
    router matched), so that a small model copies the call's arguments from the right words."""
    last_user = max((i for i, m in enumerate(messages) if m.type == "human"), default=-1)
    if last_user < 0:
        return chat
    return [*chat[:last_user], {"role": "user", "content": clause}]


def new_call_id() -> str:
    """A tool-call id in OpenAI's style."""
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_call(text: str) -> dict[str, Any]:
    """A reply decoded under the tool grammar as a LangChain tool call (with a new id).

    Raises:
        LLMAppError: the text is not a call (it did not come from the tool grammar).
    """
    try:
        data = json.loads(text)
        name, args = data["name"], data["arguments"]
    except (ValueError, KeyError, TypeError):
        raise LLMAppError(f"the reply is not a tool call: {text[:80]!r}") from None
    return {"name": name, "args": args, "id": new_call_id(), "type": "tool_call"}


def calls_since_user(messages: list[Any]) -> list[str]:
    """Names of the tools already called after the last human message (this turn's calls)."""
    names: list[str] = []
    for message in reversed(messages):
        if message.type == "human":
            break
        names += [c["name"] for c in getattr(message, "tool_calls", None) or []]
    return names


_ROLES = {"system": "system", "human": "user", "ai": "assistant", "chat": "user"}


def to_chat_dict(message: BaseMessage) -> dict[str, str]:
    """A LangChain message as a ``{"role", "content"}`` dict for a chat template (tool calls and tool
    results as :mod:`llmapp.backends.tools` writes them)."""
    content = message.content
    if isinstance(content, list):  # content blocks: keep the text ones
        content = "".join(b if isinstance(b, str) else b.get("text", "") if b.get("type") == "text" else ""
                          for b in content)
    tool_turn = message_dict(message, content)
    if tool_turn is not None:
        return tool_turn
    role = _ROLES.get(message.type)
    if role is None:
        raise LLMAppError(f"{message.type} messages are not supported by local chat models; "
                          "send system, human, AI and tool messages only")
    return {"role": role, "content": content}
