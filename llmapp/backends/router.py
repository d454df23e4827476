"""The tool router: for ``tool_choice="auto"``, does this request need a tool, and which one?

Left free to choose, SmolLM2-135M never calls a tool (0 of 4 in a trial, few-shot examples or not),
so llmapp decides before decoding: MiniLM embeds each clause of the user's last message and each
tool's name and description, and the best-matching tool is called when its cosine similarity
reaches :data:`THRESHOLD`; otherwise the model answers in free text. The decoded call then follows
the tool-call grammar.

In an agent loop the router is asked again after each tool result: the tools already called since
the user's message are set aside, so a two-part request ("look X up, then multiply it by 3") calls
the second tool next, and a request whose tools have all answered gets a text reply.

The threshold is calibrated on the dev split of ``eval/data/tool-routing.jsonl`` and checked on its
test split: ``python -m eval.calibrate_router``.

    route([HumanMessage("What's the weather in Oslo?")], specs)     # 'get_weather'
"""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np

from llmapp.backends.tools import calls_since_user

# Calibrated: ``python -m eval.calibrate_router`` (dev split); see that script for the measured accuracy.
THRESHOLD = 0.35
EMBEDDINGS = "minilm-l6"  # the bundled sentence embeddings: 90 MB, a few milliseconds a query on CPU
_CLAUSES = re.compile(r"[.?!;\n]+|,?\s+(?:and then|then|and also|after that)\s+", re.IGNORECASE)


def clauses(text: str) -> list[str]:
    """The request and its parts, so that one tool's match is not diluted by another part's words."""
    parts = [p.strip() for p in _CLAUSES.split(text) if len(p.strip()) > 2]
    return list(dict.fromkeys([text.strip(), *parts]))


def tool_text(spec: dict[str, Any]) -> str:
    """What a tool is matched by: its name in words and the first sentence of its description."""
    about = " ".join(spec.get("description", "").split())
    first = re.split(r"(?<=[.!?])\s", about, maxsplit=1)[0]
    return f"{spec['name'].replace('_', ' ')}: {first}"


@functools.lru_cache(maxsize=256)
def _vector(text: str) -> np.ndarray:
    from llmapp.models.embeddings import load_sentence_transformer

    model = load_sentence_transformer(EMBEDDINGS)
    return model.encode([text], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)[0]


def scores(request: str, specs: list[dict[str, Any]]) -> dict[str, float]:
    """Each tool's best cosine similarity with any clause of ``request``."""
    parts = np.stack([_vector(c) for c in clauses(request)])
    return {s["name"]: float((parts @ _vector(tool_text(s))).max()) for s in specs}


def route(messages: list[Any], specs: list[dict[str, Any]], threshold: float = THRESHOLD) -> str | None:
    """The tool to call for the conversation's next reply, or None for a text reply.

    Args:
        messages: the conversation (LangChain messages); the last human message is the request.
        specs: the bound tools (OpenAI function specs).
        threshold: the similarity a tool needs to be called.
    """
    if not messages or messages[-1].type not in ("human", "tool"):
        return None
    request = next((m for m in reversed(messages) if m.type == "human"), None)
    if request is None:
        return None
    done = set(calls_since_user(messages))
    candidates = [s for s in specs if s["name"] not in done]
    text = request.content if isinstance(request.content, str) else request.text
    if not candidates or not str(text).strip():
        return None
    ranked = scores(str(text), candidates)
    best = max(ranked, key=ranked.__getitem__)
    return best if ranked[best] >= threshold else None
