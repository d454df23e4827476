"""The tool router: for ``tool_choice="auto"``, does this request need a tool, and which one?

Left free to choose, SmolLM2-135M never calls a tool (0 of 4 in a trial, few-shot examples or not),
so llmapp decides before decoding: MiniLM embeds each clause of the user's last message and each
tool's name and description; a tool is called when some clause reaches :data:`THRESHOLD` in cosine
similarity (the tool the request asks for first, if several), otherwise the model answers in free
text. The call then follows the tool-call grammar, and the prompt names the clause it serves, so
that a small model copies its arguments from the right part of the request.

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
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmapp.backends.tools import calls_since_user

# Calibrated by ``python -m eval.calibrate_router``: the middle of the best dev plateau (0.22-0.25), routing
# accuracy 96.7% on dev and 86.7% on test (30 requests each; every test error a missed call, no false call).
THRESHOLD = 0.24
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


@dataclass(frozen=True)
class Route:
    """The router's decision: call ``tool`` for ``clause``, the part of the request its arguments come from."""

    tool: str
    clause: str


def similarities(request: str, specs: list[dict[str, Any]]) -> tuple[list[str], np.ndarray]:
    """The request's clauses (the whole first) and their cosine similarity with each tool: (clauses, tools)."""
    parts = clauses(request)
    vectors = np.stack([_vector(c) for c in parts])
    return parts, vectors @ np.stack([_vector(tool_text(s)) for s in specs]).T


def choose(parts: list[str], sims: np.ndarray, names: list[str], threshold: float = THRESHOLD) -> Route | None:
    """Among the tools some clause matches at ``threshold`` or more, the one the request asks for first
    (ties: the best match); None when no tool matches."""
    best: tuple[int, float, int, int] | None = None  # (position, -score, tool, clause)
    for t in range(len(names)):
        column = sims[:, t]
        if column.max() < threshold:
            continue
        hits = [i for i in range(1, len(parts)) if column[i] >= threshold]
        position = hits[0] if hits else len(parts)  # only the whole request matches: after the named parts
        clause = max(hits, key=lambda i: column[i]) if hits else 0
        candidate = (position, -float(column.max()), t, clause)
        best = candidate if best is None or candidate < best else best
    return None if best is None else Route(names[best[2]], parts[best[3]])


def scores(request: str, specs: list[dict[str, Any]]) -> dict[str, float]:
    """Each tool's best cosine similarity with any clause of ``request``."""
    _, sims = similarities(request, specs)
    return {s["name"]: float(sims[:, i].max()) for i, s in enumerate(specs)}


def route_for(messages: list[Any], specs: list[dict[str, Any]], threshold: float = THRESHOLD) -> Route | None:
    """The tool to call for the conversation's next reply and the clause it serves, or None for text.

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
    text = str(request.content if isinstance(request.content, str) else request.text)
    if not candidates or not text.strip():
        return None
    parts, sims = similarities(text, candidates)
    return choose(parts, sims, [s["name"] for s in candidates], threshold)


def route(messages: list[Any], specs: list[dict[str, Any]], threshold: float = THRESHOLD) -> str | None:
    """The name of the tool to call next, or None for a text reply (see :func:`route_for`)."""
    decision = route_for(messages, specs, threshold)
    return decision.tool if decision else None
