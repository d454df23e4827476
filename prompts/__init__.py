"""Prompt templates as data: YAML (or Jinja) files turned into LangChain ``ChatPromptTemplate`` objects.

A YAML template declares its variables and its messages (Jinja2 syntax); the loader checks at load
time that the declared variables are exactly the ones the messages use, and raises
:class:`TemplateError` naming the missing and unexpected ones. A ``.jinja`` file is a single user
message whose variables are read from the template itself.

    name: summarize_map
    variables: [text]
    defaults: {}              # optional: values for variables the caller may leave out
    messages:
      - {role: system, content: "You write short summaries."}
      - {role: user, content: "Summarize:\\n\\n{{ text }}"}

Built-in templates live beside this file; users add their own from folders given by ``--templates
DIR`` or ``$LLMAPP_TEMPLATES`` (``os.pathsep``-separated). A user template shadows a built-in one.

    from prompts import load_prompt, available
    prompt = load_prompt("rag_answer")
    print(sorted(available()))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llmapp.core.errors import LLMAppError

BUILTIN_DIR = Path(__file__).parent
SUFFIXES = (".yaml", ".yml", ".jinja")
ROLES = {"system": "system", "user": "human", "human": "human", "assistant": "ai", "ai": "ai"}


class TemplateError(LLMAppError):
    """A template whose declared variables do not match its text, or a render with wrong variables."""


def template_dirs(extra: list[str | Path] | str | Path | None = None) -> list[Path]:
    """Folders searched for templates, highest priority first: ``extra``, ``$LLMAPP_TEMPLATES``, built-ins."""
    if isinstance(extra, (str, Path)):
        extra = [extra]
    env = [p for p in os.environ.get("LLMAPP_TEMPLATES", "").split(os.pathsep) if p]
    dirs = [Path(p).expanduser() for p in [*(extra or []), *env]]
    for d in dirs:
        if not d.is_dir():
            raise LLMAppError(f"template folder {d} does not exist; check --templates / $LLMAPP_TEMPLATES")
    return [*dirs, BUILTIN_DIR]


def available(extra: list[str | Path] | str | Path | None = None) -> dict[str, Path]:
    """The template registry: name -> file, user folders shadowing the built-ins."""
    found: dict[str, Path] = {}
    for folder in reversed(template_dirs(extra)):
        for path in sorted(folder.iterdir()):
            if path.suffix in SUFFIXES and path.is_file():
                found[path.stem] = path
    return found


def load_prompt(name: str | Path, extra_dirs: list[str | Path] | str | Path | None = None) -> Any:
    """A ``ChatPromptTemplate`` for a registry name or a template file path.

    Raises:
        LLMAppError: an unknown name (listing the valid ones) or an unreadable file.
        TemplateError: declared variables that do not match the messages.
    """
    path = Path(name).expanduser()
    if not (path.suffix in SUFFIXES and path.is_file()):
        registry = available(extra_dirs)
        if str(name) not in registry:
            raise LLMAppError(f"unknown template {str(name)!r}; use one of: {', '.join(sorted(registry))}, "
                              "or a .yaml/.jinja file")
        path = registry[str(name)]
    spec = read_spec(path)
    return build_prompt(spec, path.stem)


def read_spec(path: Path) -> dict[str, Any]:
    """A template file as ``{"variables", "defaults", "messages"}``."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jinja":
        return {"variables": sorted(jinja_variables(text)), "defaults": {}, "messages": [{"role": "user", "content": text}]}
    import yaml

    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LLMAppError(f"template {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("messages"), list) or not spec["messages"]:
        raise LLMAppError(f"template {path} needs a 'messages' list of {{role, content}} entries")
    for m in spec["messages"]:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise LLMAppError(f"template {path}: each message needs a role ({', '.join(ROLES)}) and a content string")
    spec.setdefault("defaults", {})
    spec.setdefault("variables", sorted(set().union(*(jinja_variables(m["content"]) for m in spec["messages"]))))
    return spec


def build_prompt(spec: dict[str, Any], name: str = "template") -> Any:
    """Check a spec's variables and build its ``ChatPromptTemplate`` (Jinja2 syntax, sandboxed)."""
    from langchain_core.prompts import ChatPromptTemplate

    used = set().union(*(jinja_variables(m["content"]) for m in spec["messages"]))
    declared = set(spec.get("variables") or [])
    missing, unexpected = sorted(used - declared), sorted(declared - used)
    if missing or unexpected:
        parts = [f"missing from 'variables': {', '.join(missing)}" if missing else "",
                 f"declared but unused: {', '.join(unexpected)}" if unexpected else ""]
        raise TemplateError(f"template {name!r}: {'; '.join(p for p in parts if p)}; make 'variables' match the messages")
    bad_defaults = sorted(set(spec["defaults"]) - declared)
    if bad_defaults:
        raise TemplateError(f"template {name!r}: defaults for undeclared variables: {', '.join(bad_defaults)}")
    prompt = ChatPromptTemplate.from_messages([(ROLES[m["role"]], m["content"]) for m in spec["messages"]],
                                              template_format="jinja2")
    return prompt.partial(**spec["defaults"]) if spec["defaults"] else prompt


def check_variables(prompt: Any, values: dict[str, Any], name: str = "template") -> None:
    """Raise :class:`TemplateError` if ``values`` leaves out a required variable or adds an unknown one."""
    required = set(prompt.input_variables)
    optional = set(getattr(prompt, "partial_variables", {}) or {})
    missing, unexpected = sorted(required - set(values)), sorted(set(values) - required - optional)
    if missing or unexpected:
        parts = [f"missing: {', '.join(missing)}" if missing else "",
                 f"unexpected: {', '.join(unexpected)}" if unexpected else ""]
        raise TemplateError(f"template {name!r} variables: {'; '.join(p for p in parts if p)}; "
                            f"it takes {', '.join(sorted(required | optional))}")


def jinja_variables(text: str) -> set[str]:
    """The undeclared (i.e. caller-supplied) variables a Jinja2 template uses."""
    from jinja2 import TemplateSyntaxError, meta
    from jinja2.sandbox import SandboxedEnvironment

    try:
        return set(meta.find_undeclared_variables(SandboxedEnvironment().parse(text)))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message} (line {exc.lineno})") from None
