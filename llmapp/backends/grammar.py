"""The grammar builder: JSON schemas and tool lists as llguidance grammars both local engines accept.

Constrained decoding is how a 135M model writes JSON that always parses: at every step the engine
may only pick tokens that keep the reply a valid prefix of the grammar. One builder serves both
local backends: it emits llguidance's Lark dialect (``%llguidance {}`` + ``start: %json {...}``),
which the ``hf`` backend runs through a logits processor and the ``llamacpp`` backend passes to
llama.cpp as its ``grammar`` (llama.cpp hands grammars that start with ``%llguidance`` to its own
built-in llguidance).

The builder first checks the schema against the supported subset and refuses anything else in one
line naming the keyword (an unsupported keyword, a recursive or external ``$ref``, an empty
``enum``, bounds out of order ...), because a keyword silently ignored would let invalid output
through. It then tightens a copy for generation only: free strings get ``maxLength`` (a small model
otherwise loops inside a string until the tokens run out), arrays ``maxItems``, and objects
``additionalProperties: false``. Output that fits the tightened copy also fits the original.

    from llmapp.backends.grammar import json_grammar, tool_grammar
    g = json_grammar({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    g.lark.splitlines()[0]          # '%llguidance {}'
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from llmapp.core.errors import LLMAppError

DEFAULT_MAX_STRING = 100  # characters of a string the schema leaves unbounded: enough for a name or a sentence
DEFAULT_MAX_ITEMS = 8  # items of an array the schema leaves unbounded: a small model repeats items forever
# Compact separators: fewer tokens than pretty-printing, and the layout json.dumps writes (as in the prompts).
LAYOUT = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}

TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
               "readOnly", "writeOnly"}  # carry no constraint: accepted and left to the prompt
KEYWORDS = {"type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum",
            "const", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
            "format", "anyOf", "$defs", "definitions", "$ref"} | ANNOTATIONS
FORMATS = {"date-time", "date", "time", "duration", "email", "uuid", "uri", "hostname", "ipv4", "ipv6"}
_REF = re.compile(r"#/(\$defs|definitions)/([^/]+)")


class SchemaError(LLMAppError):
    """A schema constrained decoding cannot honour; the message names the keyword."""

    def __init__(self, keyword: str, path: str, problem: str) -> None:
        super().__init__(f"schema keyword '{keyword}' at {path}: {problem}")
        self.keyword, self.path = keyword, path


@dataclass(frozen=True)
class Grammar:
    """The constraint on one reply.

    ``lark`` is what both engines decode under; ``schema`` is what the reply must satisfy (the
    user's schema, not the tightened copy), or None when any JSON object will do.
    """

    lark: str
    schema: dict[str, Any] | None = None
    kind: str = "json"  # "json": the reply is the object; "tool": {"name", "arguments"} of one tool call


# ------------------------------------------------------------------------------------------- checking

def check_schema(schema: Any, tool: bool = False) -> None:
    """Refuse a schema outside the supported subset, naming the first offending keyword.

    Args:
        schema: a JSON schema (a dict).
        tool: check it as a tool's parameters, which must be an object.

    Raises:
        SchemaError: the first problem found, in one line.
    """
    if not isinstance(schema, dict):
        raise SchemaError("type", "#", f"a schema must be a JSON object, not {type(schema).__name__}")
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if key in schema:
            if not isinstance(schema[key], dict):
                raise SchemaError(key, "#", f"{key} must be an object of named schemas")
            defs.update({f"#/{key}/{name}": sub for name, sub in schema[key].items()})
    for ref, sub in defs.items():
        _walk(sub, ref, defs, (ref,))
    _walk({k: v for k, v in schema.items() if k not in ("$defs", "definitions")}, "#", defs, ())
    if tool and schema.get("type", "object") != "object":
        raise SchemaError("type", "#", "a tool's parameters must be an object; wrap the value in a property")


def _walk(s: Any, path: str, defs: dict[str, Any], stack: tuple[str, ...]) -> None:
    """Check one sub-schema and everything under it (``stack``: the $refs being expanded, for cycles)."""
    if not isinstance(s, dict):
        raise SchemaError("type", path, "a schema must be a JSON object")
    for key in s:
        if key not in KEYWORDS:
            raise SchemaError(key, path, "not supported by constrained decoding; remove it")
    if "$ref" in s:
        _check_ref(s, path, defs, stack)
        return
    _check_type(s, path)
    _check_values(s, path)
    _check_bounds(s, path)
    if ("$defs" in s or "definitions" in s) and path != "#":
        raise SchemaError("$defs", path, "definitions are only supported at the top level")
    for i, sub in enumerate(_any_of(s, path)):
        _walk(sub, f"{path}/anyOf/{i}", defs, stack)
    _check_object(s, path, defs, stack)
    if "items" in s:
        if not isinstance(s["items"], dict):
            raise SchemaError("items", path, "items must be one schema (the tuple form is not supported)")
        _walk(s["items"], f"{path}/items", defs, stack)


def _check_ref(s: dict[str, Any], path: str, defs: dict[str, Any], stack: tuple[str, ...]) -> None:
    ref = s["$ref"]
    if not isinstance(ref, str) or not _REF.fullmatch(ref):
        raise SchemaError("$ref", path, f"{ref!r}: only local #/$defs/NAME references are supported")
    if ref not in defs:
        raise SchemaError("$ref", path, f"{ref!r} is not defined in $defs")
    if ref in stack:
        raise SchemaError("$ref", path, f"{ref!r} is recursive, so the grammar would be unbounded")
    if set(s) - {"$ref"} - ANNOTATIONS:
        raise SchemaError("$ref", path, "$ref cannot be combined with other keywords; move them into the definition")
    _walk(defs[ref], ref, defs, (*stack, ref))


def _types(s: dict[str, Any]) -> list[str]:
    t = s.get("type")
    return [] if t is None else [t] if isinstance(t, str) else list(t)


def _check_type(s: dict[str, Any], path: str) -> None:
    t = s.get("type")
    names = [t] if isinstance(t, str) else t if isinstance(t, list) else None
    if "type" in s and (not names or any(n not in TYPES for n in names)):
        raise SchemaError("type", path, f"{t!r} is not a JSON type; use one of {', '.join(TYPES)}")
    if "format" in s and s["format"] not in FORMATS:
        raise SchemaError("format", path, f"{s['format']!r} is not supported; use one of {', '.join(sorted(FORMATS))}")


def _fits(value: Any, types: list[str]) -> bool:
    checks = {"object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
              "string": lambda v: isinstance(v, str), "null": lambda v: v is None,
              "boolean": lambda v: isinstance(v, bool),
              "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)}
    return not types or any(checks[t](value) for t in types)


def _check_values(s: dict[str, Any], path: str) -> None:
    types = _types(s)
    if "enum" in s:
        values = s["enum"]
        if not isinstance(values, list) or not values:
            raise SchemaError("enum", path, "enum must be a non-empty list, or no value can satisfy it")
        if not all(_fits(v, types) for v in values):
            raise SchemaError("enum", path, f"enum values do not all match type {s.get('type')}")
    if "const" in s and not _fits(s["const"], types):
        raise SchemaError("const", path, f"const {s['const']!r} does not match type {s.get('type')}")


def _check_bounds(s: dict[str, Any], path: str) -> None:
    for lo, hi in (("minLength", "maxLength"), ("minItems", "maxItems")):
        for key in (lo, hi):
            if key in s and (not isinstance(s[key], int) or isinstance(s[key], bool) or s[key] < 0):
                raise SchemaError(key, path, f"{key} must be a whole number >= 0")
        if lo in s and hi in s and s[lo] > s[hi]:
            raise SchemaError(lo, path, f"{lo} {s[lo]} is greater than {hi} {s[hi]}, so nothing can satisfy it")
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if key in s and not _fits(s[key], ["number"]):
            raise SchemaError(key, path, f"{key} must be a number")
    low = max((s[k] for k in ("minimum", "exclusiveMinimum") if k in s), default=None)
    high = min((s[k] for k in ("maximum", "exclusiveMaximum") if k in s), default=None)
    if low is not None and high is not None and low > high:
        key = "minimum" if "minimum" in s else "exclusiveMinimum"
        raise SchemaError(key, path, f"{key} {low} is greater than the maximum {high}, so no number satisfies it")


def _any_of(s: dict[str, Any], path: str) -> list[Any]:
    if "anyOf" not in s:
        return []
    if not isinstance(s["anyOf"], list) or not s["anyOf"]:
        raise SchemaError("anyOf", path, "anyOf must be a non-empty list, or no value can satisfy it")
    return s["anyOf"]


def _check_object(s: dict[str, Any], path: str, defs: dict[str, Any], stack: tuple[str, ...]) -> None:
    props = s.get("properties", {})
    if not isinstance(props, dict):
        raise SchemaError("properties", path, "properties must be an object of named schemas")
    for name, sub in props.items():
        _walk(sub, f"{path}/properties/{name}", defs, stack)
    extra = s.get("additionalProperties", True)
    if not isinstance(extra, bool):
        raise SchemaError("additionalProperties", path, "only true or false is supported, not a schema")
    required = s.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise SchemaError("required", path, "required must be a list of property names")
    missing = [r for r in required if r not in props]
    if missing and extra is False:
        raise SchemaError("required", path, f"names {missing}, which are not in properties, so nothing satisfies it")


# ------------------------------------------------------------------------------------------- building

def generation_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A tightened copy of a checked schema for decoding: bounded strings and arrays, closed objects."""
    out = copy.deepcopy(schema)
    for key in ("$defs", "definitions"):
        for sub in out.get(key, {}).values():
            _tighten(sub)
    _tighten(out)
    return out


def _tighten(s: dict[str, Any]) -> None:
    for sub in s.get("anyOf", []):
        _tighten(sub)
    if "$ref" in s or "enum" in s or "const" in s:
        return
    types = _types(s)
    if "string" in types and "format" not in s:
        s.setdefault("maxLength", max(DEFAULT_MAX_STRING, s.get("minLength", 0)))
        s.setdefault("minLength", min(1, s["maxLength"]))  # an empty answer is valid but never what is asked for
    if "array" in types:
        s.setdefault("maxItems", max(DEFAULT_MAX_ITEMS, s.get("minItems", 0)))
        if isinstance(s.get("items"), dict):
            _tighten(s["items"])
    if "object" in types or "properties" in s:
        if s.get("properties") or "additionalProperties" not in s:
            s["additionalProperties"] = False  # extra keys let a small model ramble; the user's schema allows them
        for sub in s.get("properties", {}).values():
            _tighten(sub)


def _lark(schema: dict[str, Any]) -> str:
    body = {**schema, "x-guidance": LAYOUT}
    return "%llguidance {}\nstart: %json " + json.dumps(body, ensure_ascii=False)


def json_grammar(schema: dict[str, Any]) -> Grammar:
    """The grammar of replies that are one JSON value satisfying ``schema``.

    Raises:
        SchemaError: a schema outside the supported subset (naming the keyword).
    """
    check_schema(schema)
    return Grammar(_validated(_lark(generation_schema(schema))), schema, "json")


# Any JSON object with at least one key (JSON mode): the same bounds as a schema's free values.
_CHAR = r'([^"\\\x00-\x1F]|\\(["\\bfnrt]|u[0-9a-fA-F]{4}))'  # no escaped slash: "/" would end the Lark regex
JSON_OBJECT_LARK = "\n".join([
    "%llguidance {}",
    'start: "{" pair (", " pair)* "}"',
    'object: "{" (pair (", " pair)*)? "}"',
    'array: "[" (value (", " value)*)? "]"',
    'pair: KEY ": " value',
    'value: STRING | NUMBER | object | array | "true" | "false" | "null"',
    f'STRING: /"{_CHAR}{{0,{DEFAULT_MAX_STRING}}}"/',
    f'KEY: /"{_CHAR}{{1,40}}"/',
    r"NUMBER: /-?(0|[1-9][0-9]{0,15})(\.[0-9]{1,8})?([eE][+-]?[0-9]{1,3})?/",
])


def json_object_grammar() -> Grammar:
    """The grammar of replies that are any non-empty JSON object (OpenAI's JSON mode)."""
    return Grammar(_validated(JSON_OBJECT_LARK), None, "json")


def tool_schema(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON schema of one call to one of ``tools`` (OpenAI function specs): ``{"name", "arguments"}``."""
    calls = []
    for spec in tools:
        params = spec.get("parameters") or {"type": "object", "properties": {}}
        try:
            check_schema(params, tool=True)
        except SchemaError as exc:
            raise SchemaError(exc.keyword, exc.path, f"{str(exc).split(': ', 1)[1]} (tool {spec['name']!r})") from None
        calls.append({"type": "object", "properties": {"name": {"const": spec["name"]}, "arguments": params},
                      "required": ["name", "arguments"], "additionalProperties": False})
    return calls[0] if len(calls) == 1 else {"anyOf": calls}


def tool_grammar(tools: list[dict[str, Any]]) -> Grammar:
    """The grammar of a reply that is one call to one of ``tools`` (OpenAI function specs).

    Raises:
        SchemaError: a tool whose parameters are outside the supported subset.
        LLMAppError: no tools.
    """
    if not tools:
        raise LLMAppError("no tools to call; bind at least one tool")
    schema = tool_schema(tools)
    return Grammar(_validated(_lark(generation_schema(schema))), schema, "tool")


@functools.lru_cache(maxsize=256)
def _validated(lark: str) -> str:
    """``lark``, once llguidance has compiled it (a grammar it refuses would fail inside the engine)."""
    import llguidance

    problem = llguidance.LLMatcher.validate_grammar(llguidance.LLMatcher.grammar_from_lark(lark))
    if problem:
        raise LLMAppError(f"the schema cannot be compiled into a grammar: {problem.splitlines()[0]}")
    return lark


def validate(value: Any, schema: dict[str, Any] | None) -> None:
    """Check a parsed reply against the user's schema (a second line of defence behind the grammar).

    Raises:
        LLMAppError: the value does not satisfy the schema, naming where.
    """
    if schema is None:
        return
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise LLMAppError(f"the reply does not satisfy the schema at {where}: {error.message}")


def response_format_grammar(fmt: dict[str, Any]) -> Grammar:
    """The grammar of OpenAI's ``response_format``: ``{"type": "json_object"}`` or
    ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}``.

    Raises:
        LLMAppError: another type, or a ``json_schema`` without its schema.
        SchemaError: a schema outside the supported subset.
    """
    kind = fmt.get("type")
    if kind == "json_object":
        return json_object_grammar()
    if kind == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise LLMAppError("response_format json_schema needs {'json_schema': {'name': ..., 'schema': {...}}}")
        return json_grammar(schema)
    raise LLMAppError(f"response_format type {kind!r} is not supported; use 'text', 'json_object' or 'json_schema'")
