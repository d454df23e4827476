"""Check ``eval/data/structured.jsonl`` and ``eval/data/structured-bad-schemas.jsonl``.

    python eval/data/check_structured.py          # prints a summary; exit code 1 on any problem

For every item of ``structured.jsonl``:

- the line has exactly the fields ``id``, ``category``, ``prompt``, ``schema``, ``gold``, ``split``;
- the schema uses only the supported subset of JSON Schema and is well formed (the rules the
  grammar builder is expected to apply: known keywords and types, a non-empty ``enum``/``anyOf``,
  bounds in order, local non-recursive ``$ref`` ...);
- the schema follows the suite's style rules: an object at the top, every object lists ``required``
  and sets ``additionalProperties: false`` with at most 8 properties, objects nest at most 3 deep,
  every free string has ``maxLength`` <= 80 and every array ``maxItems`` <= 8;
- ``gold`` (when not null) validates against the schema, and every free string in it (one not fixed
  by ``enum``/``const``) occurs verbatim in the prompt;
- the prompt is at most 120 words; a ``unicode`` item's prompt holds non-ASCII text;
- within each category the splits alternate dev, test, dev ... in id order.

For every line of ``structured-bad-schemas.jsonl``: the same subset rules refuse the schema, and
every refusal names the line's ``keyword`` (``if`` may come with ``then``/``else``). A line with
``"context": "tool"`` is checked as a tool's parameters, which must be an object.

The checker needs only the standard library. When ``jsonschema`` is installed, gold objects are
also validated with it as a second opinion.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ITEMS = HERE / "structured.jsonl"
BAD = HERE / "structured-bad-schemas.jsonl"

CATEGORIES = ("extraction", "classification", "nested", "arrays", "enums", "unicode")
ID_PREFIX = {"extraction": "extract", "classification": "classify", "nested": "nested", "arrays": "arrays",
             "enums": "enums", "unicode": "unicode"}
FIELDS = {"id", "category", "prompt", "schema", "gold", "split"}
BAD_FIELDS = {"id", "schema", "keyword", "why"}
KEYWORDS = {"type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum",
            "const", "minLength", "maxLength", "minimum", "maximum", "description", "anyOf", "$defs", "$ref"}
TYPES = {"object", "array", "string", "integer", "number", "boolean", "null"}
COMPANIONS = {"if": {"then", "else"}}
MAX_STRING, MAX_ITEMS, MAX_PROPS, MAX_DEPTH, MAX_WORDS = 80, 8, 8, 3, 120
MIN_GOLD, MIN_ITEMS, MIN_BAD = 40, 64, 12


# ------------------------------------------------------------------ the supported subset (builder rules)

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _type_ok(value, t: str) -> bool:
    return {"object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
            "string": lambda v: isinstance(v, str), "integer": lambda v: _is_int(v) or (
                isinstance(v, float) and v.is_integer()), "number": _is_num,
            "boolean": lambda v: isinstance(v, bool), "null": lambda v: v is None}[t](value)


def builder_errors(root, tool: bool = False) -> list[tuple[str, str, str]]:
    """(keyword, path, message) for each reason the grammar builder must refuse ``root``."""
    errors: list[tuple[str, str, str]] = []
    defs = root.get("$defs", {}) if isinstance(root, dict) else {}

    def err(kw: str, path: str, msg: str) -> None:
        errors.append((kw, path, msg))

    def walk(s, path: str, stack: tuple[str, ...]) -> None:
        if not isinstance(s, dict):
            err("schema", path, "a schema must be an object")
            return
        unknown = [k for k in s if k not in KEYWORDS]
        for k in unknown:
            err(k, path, f"unsupported keyword '{k}'")
        if unknown:
            return
        if "$ref" in s:
            ref = s["$ref"]
            m = re.fullmatch(r"#/\$defs/([^/]+)", ref) if isinstance(ref, str) else None
            if not m:
                err("$ref", path, f"$ref {ref!r}: only local #/$defs/NAME references are supported")
            elif m.group(1) not in defs:
                err("$ref", path, f"$ref {ref!r}: no such definition")
            elif m.group(1) in stack:
                err("$ref", path, f"$ref {ref!r} is recursive")
            else:
                walk(defs[m.group(1)], f"#/$defs/{m.group(1)}", stack + (m.group(1),))
            if set(s) - {"$ref", "description"}:
                err("$ref", path, "$ref cannot be combined with other keywords")
            return
        t = s.get("type")
        if "type" in s and (not isinstance(t, str) or t not in TYPES):
            err("type", path, f"type {t!r} is not one of {sorted(TYPES)}")
            return
        if "enum" in s:
            e = s["enum"]
            if not isinstance(e, list) or not e:
                err("enum", path, "enum must be a non-empty list")
            elif t and not all(_type_ok(v, t) for v in e):
                err("enum", path, f"enum values do not match type {t}")
            elif len({json.dumps(v, sort_keys=True) for v in e}) != len(e):
                err("enum", path, "enum values repeat")
        if "const" in s and t and not _type_ok(s["const"], t):
            err("const", path, f"const {s['const']!r} does not match type {t}")
        if "anyOf" in s:
            a = s["anyOf"]
            if not isinstance(a, list) or not a:
                err("anyOf", path, "anyOf must be a non-empty list")
            else:
                for i, sub in enumerate(a):
                    walk(sub, f"{path}/anyOf/{i}", stack)
        for lo, hi in (("minLength", "maxLength"), ("minItems", "maxItems")):
            for k in (lo, hi):
                if k in s and (not _is_int(s[k]) or s[k] < 0):
                    err(k, path, f"{k} must be a non-negative integer")
            if _is_int(s.get(lo)) and _is_int(s.get(hi)) and s[lo] > s[hi]:
                err(lo, path, f"{lo} {s[lo]} is greater than {hi} {s[hi]}")
        for k in ("minimum", "maximum"):
            if k in s and not _is_num(s[k]):
                err(k, path, f"{k} must be a number")
        if _is_num(s.get("minimum")) and _is_num(s.get("maximum")) and s["minimum"] > s["maximum"]:
            err("minimum", path, f"minimum {s['minimum']} is greater than maximum {s['maximum']}")
        if "description" in s and not isinstance(s["description"], str):
            err("description", path, "description must be a string")
        if "$defs" in s and path != "#":
            err("$defs", path, "$defs is only supported at the top level")
        props = s.get("properties", {})
        if "properties" in s:
            if not isinstance(props, dict):
                err("properties", path, "properties must be an object")
                props = {}
            for name, sub in props.items():
                walk(sub, f"{path}/properties/{name}", stack)
        if "required" in s:
            r = s["required"]
            if not isinstance(r, list) or not all(isinstance(x, str) for x in r):
                err("required", path, "required must be a list of names")
            else:
                missing = [x for x in r if x not in props]
                if missing and s.get("additionalProperties") is False:
                    err("required", path, f"required names {missing}, which are not in properties")
        if "additionalProperties" in s and not isinstance(s["additionalProperties"], bool):
            err("additionalProperties", path, "additionalProperties must be true or false, not a schema")
        if "items" in s:
            if not isinstance(s["items"], dict):
                err("items", path, "items must be one schema (the tuple form is not supported)")
            else:
                walk(s["items"], f"{path}/items", stack)

    if isinstance(root, dict) and isinstance(defs, dict):
        for name, sub in defs.items():
            walk(sub, f"#/$defs/{name}", (name,))
    elif isinstance(root, dict):
        err("$defs", "#", "$defs must be an object")
    if isinstance(root, dict):
        walk({k: v for k, v in root.items() if k != "$defs"}, "#", ())
    if tool and (not isinstance(root, dict) or root.get("type") != "object"):
        err("type", "#", "a tool's parameters must be an object")
    return errors


# ------------------------------------------------------------------ style rules of this suite

def _resolve(s, root):
    if isinstance(s, dict) and "$ref" in s:
        return root["$defs"][s["$ref"].split("/")[-1]]
    return s


def style_errors(root) -> list[str]:
    out: list[str] = []
    if root.get("type") != "object":
        out.append("#: the top level must be an object")

    def walk(s, path: str, depth: int) -> None:
        s = _resolve(s, root)
        for i, sub in enumerate(s.get("anyOf", [])):
            walk(sub, f"{path}/anyOf/{i}", depth)
        t = s.get("type")
        if t == "object":
            depth += 1
            props = s.get("properties", {})
            if depth > MAX_DEPTH:
                out.append(f"{path}: objects nest deeper than {MAX_DEPTH}")
            if not props or len(props) > MAX_PROPS:
                out.append(f"{path}: {len(props)} properties (want 1..{MAX_PROPS})")
            if "required" not in s:
                out.append(f"{path}: no required list")
            if s.get("additionalProperties") is not False:
                out.append(f"{path}: additionalProperties is not false")
            for name, sub in props.items():
                walk(sub, f"{path}/properties/{name}", depth)
        elif t == "array":
            if "items" not in s:
                out.append(f"{path}: array without items")
            else:
                walk(s["items"], f"{path}/items", depth)
            if not _is_int(s.get("maxItems")) or s["maxItems"] > MAX_ITEMS:
                out.append(f"{path}: array needs maxItems <= {MAX_ITEMS}")
        elif t == "string" and "enum" not in s and "const" not in s:
            if not _is_int(s.get("maxLength")) or s["maxLength"] > MAX_STRING:
                out.append(f"{path}: string needs maxLength <= {MAX_STRING}")
        elif t is None and not {"enum", "const", "anyOf"} & set(s):
            out.append(f"{path}: no type")

    walk(root, "#", 0)
    return out


def count_keyword(s, kw: str) -> int:
    if isinstance(s, dict):
        return (kw in s) + sum(count_keyword(v, kw) for v in s.values())
    if isinstance(s, list):
        return sum(count_keyword(v, kw) for v in s)
    return 0


# ------------------------------------------------------------------ validating gold against a schema

def validate(v, s, root, path: str = "$") -> list[str]:
    s = _resolve(s, root)
    if "anyOf" in s:
        if not any(not validate(v, sub, root, path) for sub in s["anyOf"]):
            return [f"{path}: matches no anyOf branch"]
        return []
    out: list[str] = []
    t = s.get("type")
    if t and not _type_ok(v, t):
        return [f"{path}: {v!r} is not {t}"]
    if "enum" in s and v not in s["enum"]:
        out.append(f"{path}: {v!r} not in enum")
    if "const" in s and v != s["const"]:
        out.append(f"{path}: {v!r} is not the const")
    if isinstance(v, str):
        if len(v) > s.get("maxLength", len(v)) or len(v) < s.get("minLength", 0):
            out.append(f"{path}: length {len(v)} out of bounds")
    if _is_num(v):
        if ("minimum" in s and v < s["minimum"]) or ("maximum" in s and v > s["maximum"]):
            out.append(f"{path}: {v} out of bounds")
    if isinstance(v, list):
        if len(v) > s.get("maxItems", len(v)) or len(v) < s.get("minItems", 0):
            out.append(f"{path}: {len(v)} items out of bounds")
        for i, x in enumerate(v):
            out += validate(x, s.get("items", {}), root, f"{path}[{i}]")
    if isinstance(v, dict):
        props = s.get("properties", {})
        out += [f"{path}: missing {k}" for k in s.get("required", []) if k not in v]
        if s.get("additionalProperties") is False:
            out += [f"{path}: extra key {k}" for k in v if k not in props]
        for k, x in v.items():
            if k in props:
                out += validate(x, props[k], root, f"{path}.{k}")
    return out


def free_strings(v, s, root):
    """The strings of ``v`` whose schema does not fix them with enum or const."""
    s = _resolve(s, root)
    if "anyOf" in s:
        for sub in s["anyOf"]:
            if not validate(v, sub, root):
                yield from free_strings(v, sub, root)
                return
    elif isinstance(v, str):
        if "enum" not in s and "const" not in s:
            yield v
    elif isinstance(v, list):
        for x in v:
            yield from free_strings(x, s.get("items", {}), root)
    elif isinstance(v, dict):
        for k, x in v.items():
            yield from free_strings(x, s.get("properties", {}).get(k, {}), root)


# ------------------------------------------------------------------ main

def load(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            sys.exit(f"{path.name}:{n}: not JSON: {e}")
    return rows


def main() -> int:
    problems: list[str] = []
    try:
        import jsonschema  # optional second opinion
    except ImportError:
        jsonschema = None

    items = load(ITEMS)
    ids = Counter(it.get("id") for it in items)
    problems += [f"duplicate id {i}" for i, c in ids.items() if c > 1]
    by_cat: dict[str, list[dict]] = defaultdict(list)
    for it in items:
        iid = it.get("id")
        where = f"{ITEMS.name} {iid}"
        if set(it) != FIELDS:
            problems.append(f"{where}: fields {sorted(it)}, want {sorted(FIELDS)}")
            continue
        cat = it["category"]
        if cat not in CATEGORIES:
            problems.append(f"{where}: unknown category {cat!r}")
            continue
        if not re.fullmatch(rf"{ID_PREFIX[cat]}-\d\d", iid):
            problems.append(f"{where}: id should look like {ID_PREFIX[cat]}-NN")
        by_cat[cat].append(it)
        schema, gold, prompt = it["schema"], it["gold"], it["prompt"]
        problems += [f"{where}: {p}: {m}" for _, p, m in builder_errors(schema)]
        if builder_errors(schema):
            continue
        problems += [f"{where}: {m}" for m in style_errors(schema)]
        if len(prompt.split()) > MAX_WORDS or len(prompt) > 8 * MAX_WORDS:
            problems.append(f"{where}: prompt too long ({len(prompt.split())} words, {len(prompt)} chars)")
        if cat == "unicode" and prompt.isascii():
            problems.append(f"{where}: a unicode item's prompt should hold non-ASCII text")
        if gold is not None:
            problems += [f"{where}: gold {m}" for m in validate(gold, schema, schema)]
            if jsonschema is not None:
                problems += [f"{where}: gold (jsonschema) {e.message}"
                             for e in jsonschema.Draft202012Validator(schema).iter_errors(gold)]
            problems += [f"{where}: gold string {x!r} is not in the prompt"
                         for x in free_strings(gold, schema, schema) if x not in prompt]

    for cat in CATEGORIES:
        rows = sorted(by_cat[cat], key=lambda it: it["id"])
        want = ["dev" if i % 2 == 0 else "test" for i in range(len(rows))]
        if [it["split"] for it in rows] != want:
            problems.append(f"{cat}: splits do not alternate dev, test, ... in id order")
        if not 10 <= len(rows) <= 12:
            problems.append(f"{cat}: {len(rows)} items (want 10..12)")
    n_gold = sum(it.get("gold") is not None for it in items)
    if len(items) < MIN_ITEMS:
        problems.append(f"{len(items)} items (want at least {MIN_ITEMS})")
    if n_gold < MIN_GOLD:
        problems.append(f"{n_gold} items with gold (want at least {MIN_GOLD})")

    bad = load(BAD)
    bad_ids = Counter(b.get("id") for b in bad)
    problems += [f"duplicate bad id {i}" for i, c in bad_ids.items() if c > 1]
    for b in bad:
        where = f"{BAD.name} {b.get('id')}"
        if not BAD_FIELDS <= set(b) <= BAD_FIELDS | {"context"} or b.get("context", "tool") != "tool":
            problems.append(f"{where}: fields {sorted(b)}, want {sorted(BAD_FIELDS)} (+ context: tool)")
            continue
        errs = builder_errors(b["schema"], tool=b.get("context") == "tool")
        kws = {k for k, _, _ in errs}
        if b["keyword"] not in kws:
            problems.append(f"{where}: not refused for {b['keyword']!r} (refusals: {errs or 'none'})")
        elif kws - {b["keyword"]} - COMPANIONS.get(b["keyword"], set()):
            problems.append(f"{where}: refused for other keywords too: {errs}")
        if b.get("context") == "tool" and builder_errors(b["schema"]):
            problems.append(f"{where}: refused outside the tool context too")
    if len(bad) < MIN_BAD:
        problems.append(f"{len(bad)} bad schemas (want at least {MIN_BAD})")

    # summary
    print(f"{ITEMS.name}: {len(items)} items, {n_gold} with gold"
          + ("" if jsonschema else " (jsonschema not installed: own validator only)"))
    print(f"  {'category':<15}{'dev':>5}{'test':>6}{'gold':>6}")
    for cat in CATEGORIES:
        rows = by_cat[cat]
        sp = Counter(it["split"] for it in rows)
        print(f"  {cat:<15}{sp['dev']:>5}{sp['test']:>6}{sum(it['gold'] is not None for it in rows):>6}")
    print(f"  $ref in {sum(count_keyword(it['schema'], '$ref') > 0 for it in items)} items, "
          f"anyOf in {sum(count_keyword(it['schema'], 'anyOf') > 0 for it in items)} items")
    print(f"{BAD.name}: {len(bad)} schemas; keywords: "
          + ", ".join(f"{k} x{c}" if c > 1 else k for k, c in Counter(b.get("keyword") for b in bad).items()))
    for p in problems:
        print("PROBLEM", p)
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
