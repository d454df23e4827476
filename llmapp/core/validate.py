"""Validation at the boundary: files llmapp reads back (stores, chat files, run configs) are checked here.

Everything that comes from disk or the network is untrusted: a docstore row that is valid JSON but
the wrong shape, a chat file whose settings are a string, a run's ``config.json`` with an unknown key.
Each is checked once, where it is read, against a small declared shape, and refused with one line
naming the file, the field and the fix (an :class:`~llmapp.core.errors.LLMAppError`), never a
traceback three calls later.

    from llmapp.core.validate import Invalid, check_record, dataclass_from
    check_record(row, {"source": str, "start": int, "end": int, "text": str})   # raises Invalid
    cfg = dataclass_from(GPTConfig, raw["model"], where="run/last/config.json: model", fix="retrain")
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from llmapp.core.errors import ConfigError, LLMAppError


class Invalid(ValueError):
    """A value of the wrong shape; the caller adds the file and the fix (see :func:`refuse`)."""


def refuse(where: str, problem: Any, fix: str) -> LLMAppError:
    """The one-line error for a bad file: ``WHERE: PROBLEM; FIX`` (the problem cut to one short line)."""
    text = " ".join(str(problem).split())
    return LLMAppError(f"{where}: {text[:300]}; {fix}")


def _type_name(kind: Any) -> str:
    if isinstance(kind, tuple):
        return " or ".join(_type_name(k) for k in kind)
    return {str: "a string", int: "a whole number", float: "a number", bool: "true or false", list: "a list",
            dict: "an object", type(None): "null"}.get(kind, getattr(kind, "__name__", str(kind)))


def check_value(name: str, value: Any, kind: Any) -> Any:
    """``value`` if it is of ``kind`` (a type or tuple of types; ``bool`` is not an ``int`` here and
    numbers must be finite), else raise :class:`Invalid` naming ``name``."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = False
    for k in kinds:
        if k in (int, float) and isinstance(value, bool):
            continue
        if k is float and isinstance(value, (int, float)):
            ok = math.isfinite(value)
        elif isinstance(value, k):
            ok = True
        if ok:
            break
    if not ok:
        raise Invalid(f"{name!r} must be {_type_name(kind)}, not {_short(value)}")
    if isinstance(value, str):
        check_text(name, value)
    return value


def check_text(name: str, value: str) -> str:
    """``value`` if it is valid Unicode; a lone surrogate (JSON ``"\\ud800"``) is not text and would fail
    later, wherever the string is encoded (a tokenizer, an autosave), so it is refused where it enters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Invalid(f"{name!r} is not valid Unicode text (a lone surrogate at character {exc.start})") from None
    return value


def check_record(record: Any, fields: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check that ``record`` is a JSON object with ``fields`` (name -> type) and, if present, ``optional``.

    Extra keys are allowed (files from a newer llmapp may carry more). Returns ``record``.

    Raises:
        Invalid: not an object, a field missing, or a field of the wrong type.
    """
    if not isinstance(record, dict):
        raise Invalid(f"expected a JSON object, not {_short(record)}")
    for name, kind in fields.items():
        if name not in record:
            raise Invalid(f"field {name!r} is missing")
        check_value(name, record[name], kind)
    for name, kind in (optional or {}).items():
        if name in record and record[name] is not None:
            check_value(name, record[name], kind)
    return record


def check_path(name: str, value: Any) -> str:
    """``value`` if it can name a file: a string without NUL (which every filesystem call refuses)."""
    check_value(name, value, str)
    if "\x00" in value:
        raise Invalid(f"{name!r} holds a NUL character, which no file name can")
    return value


def dataclass_from(cls: Any, raw: Any, where: str, fix: str) -> Any:
    """Build dataclass ``cls`` from a JSON object read from a file, refusing unknown keys and bad types.

    Raises:
        LLMAppError: one line naming ``where`` (the file and section), the key, and ``fix``.
    """
    if not isinstance(raw, dict):
        raise refuse(where, f"expected a JSON object, not {_short(raw)}", fix)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise refuse(where, f"unknown key {unknown[0]!r} (valid keys: {', '.join(sorted(names))})", fix)
    hints = typing.get_type_hints(cls)
    for name, value in raw.items():
        kind = _runtime_type(hints[name])
        if kind is not None:
            try:
                check_value(name, value, kind)
            except Invalid as exc:
                raise refuse(where, exc, fix) from None
    try:
        return cls(**raw)
    except (ConfigError, ValueError, TypeError, AssertionError) as exc:
        raise refuse(where, exc, fix) from None


def _runtime_type(hint: Any) -> Any:
    """The isinstance-able form of a simple annotation (``int``, ``float | None``), or None to skip."""
    args = typing.get_args(hint)
    if args:
        simple = tuple(a for a in args if a in (int, float, str, bool, type(None)))
        return simple if len(simple) == len(args) else None
    if hint is float:
        return float
    return hint if hint in (int, str, bool) else None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
