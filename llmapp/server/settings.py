"""A request's decoding settings, mapped onto :class:`~llmapp.core.config.GenerationConfig` by its fields.

Every GenerationConfig field that has an ``openai`` wire name is read from the request under that
name (OpenAI's own fields, plus vLLM's names for the rest, such as ``top_k`` and
``repetition_penalty``), so a new decoding setting reaches the API without touching the server.
Settings are validated here, before a job is queued: a bad one is a 400 naming the field. A valid
``max_tokens`` above the server's cap (``llmapp serve --max-tokens``) is cut to the cap.
"""

from __future__ import annotations

from typing import Any

from llmapp.core.config import GENERATION_FIELDS, GenerationConfig
from llmapp.core.errors import ConfigError
from llmapp.server.schemas import APIError

WIRE_NAMES = {name: f.metadata["engines"]["openai"] for name, f in GENERATION_FIELDS.items()
              if "openai" in f.metadata["engines"]}


def generation_settings(body: Any, config: Any) -> dict[str, Any]:
    """The request's settings as ``with_generation`` keywords; unset fields keep the model's defaults.

    Raises:
        APIError: 400 for a setting out of range (``param`` names it).
    """
    settings: dict[str, Any] = {}
    for name, wire in WIRE_NAMES.items():
        value = getattr(body, wire, None)
        if value is not None:
            settings[name] = value
    settings["max_tokens"] = body.token_limit() or config.default_max_tokens
    settings["stop"] = body.stop or []
    try:
        GenerationConfig(**settings)
    except ConfigError as exc:
        name = str(exc).split("=", 1)[0].split(":", 1)[0].strip()
        raise APIError(400, str(exc), param=WIRE_NAMES.get(name, name), code="invalid_value") from None
    # The server's cap (llmapp serve --max-tokens): a larger ask is cut to it, not refused, as OpenAI
    # clients send generous defaults; the reply's finish_reason "length" says when it bit.
    settings["max_tokens"] = min(settings["max_tokens"], config.max_tokens)
    return settings
