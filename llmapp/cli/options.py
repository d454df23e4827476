"""Command-line options shared by the commands that run a chat model, derived from the configs.

``@model_options`` adds ``--model`` and ``--backend``; ``@generation_options`` adds one option per
:class:`~llmapp.core.config.GenerationConfig` field (``--max-tokens``, ``--temperature``, ``--top-p``,
``--top-k``, ``--repetition-penalty``, ``--seed``, ``--stop``, ``--truncate``) with the field's own
help text, so a new decoding setting appears on every command by itself. The command receives them
gathered and validated as ``settings`` (a dict for ``load_chat_model``).

    @click.command()
    @model_options()
    @generation_options(max_tokens=160)
    def summarize(model, backend, settings): ...
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable
from typing import Any

import click

from llmapp.core.config import GENERATION_FIELDS, GenerationConfig


def model_options(default: str | None = None, help: str = "Chat model") -> Callable[[Callable], Callable]:
    """``--model/-m`` and ``--backend``."""
    from llmapp.backends import BACKENDS
    from llmapp.models.registry import DEFAULT_CHAT

    def decorate(f: Callable) -> Callable:
        f = click.option("--backend", type=click.Choice(list(BACKENDS)), default=None,
                         help="What runs the chat model: llamacpp (GGUF, fast), hf (transformers), openai (a remote "
                              "OpenAI-compatible server). Default: chosen from the model.")(f)
        return click.option("--model", "-m", default=default or DEFAULT_CHAT, show_default=True,
                            help=f"{help}: registry name, HF directory, .gguf file, or openai:URL#MODEL.")(f)

    return decorate


def generation_options(**defaults: Any) -> Callable[[Callable], Callable]:
    """One option per GenerationConfig field; ``defaults`` overrides the config's default for this command."""

    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def run(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in GENERATION_FIELDS}
            values["stop"] = list(values["stop"])
            GenerationConfig(**values)  # ConfigError: one line naming the option, exit 2
            return f(*args, settings=values, **kwargs)

        for name, field in reversed(GENERATION_FIELDS.items()):
            run = _option(name, field, defaults.get(name, _default(field)))(run)
        return run

    return decorate


def _default(field: dataclasses.Field) -> Any:
    return field.default_factory() if field.default is dataclasses.MISSING else field.default  # type: ignore[misc]


def _option(name: str, field: dataclasses.Field, default: Any) -> Callable[[Callable], Callable]:
    flag = "--" + name.replace("_", "-")
    why = field.metadata["why"][0].upper() + field.metadata["why"][1:]
    hint = typing.get_type_hints(GenerationConfig)[name]
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    if base is bool:
        return click.option(f"{flag}/--no-{name.replace('_', '-')}", name, default=default, show_default=True, help=why)
    if typing.get_origin(base) is list:
        return click.option(flag, name, multiple=True, default=default, metavar="TEXT", help=f"{why} (repeatable)")
    return click.option(flag, name, type=base, default=default, show_default=default is not None, help=why)
