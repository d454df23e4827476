"""The loop guard: end a reply once it starts repeating itself, before the repeat is shown.

Small models decoding greedily fall into loops ("I'm a friendly AI, and I'm here to help." fifteen
times). The guard watches the reply as it streams, cut into units at sentence and clause ends
(``. ! ? ; , :`` followed by a space, or a line break). When a unit of at least :data:`MIN_WORDS`
words repeats an earlier one word for word (case and spacing aside), the reply ends where the repeat
began. While the unit being written still matches the start of an earlier one, it is held back, so
the repeat is never shown. Text before the first repeat is exactly what the model wrote: greedy
output stays reproducible, and nothing is penalised (a repetition penalty would also penalise
copying the prompt, which retrieval-augmented answers need).

:class:`~llmapp.backends.base.TextStream` runs it on every backend when ``GenerationConfig.stop_loops``
is on (the default).

    guard = LoopGuard()
    guard.check("I like tea. I like tea. ")     # (12, 0): end at 12, where the repeat starts
    guard.check("I like tea. I like")           # (None, 6): hold back "I like" until it diverges
"""

from __future__ import annotations

import re

MIN_WORDS = 3  # shorter units ("Yes.", "1.", "I see.") repeat legitimately
_BOUNDARY = re.compile(r"[.!?;,:]+[\"')\]]*\s+|\n+")
_NORMAL = re.compile(r"[^\w\s]")


def _normal(unit: str) -> str:
    return " ".join(_NORMAL.sub(" ", unit.lower()).split())


class LoopGuard:
    """Finds where a streamed reply starts to repeat one of its own sentences or clauses."""

    def __init__(self, min_words: int = MIN_WORDS) -> None:
        self.min_words = min_words

    def units(self, text: str) -> tuple[list[tuple[int, str]], tuple[int, str]]:
        """The complete units as ``(start, normalised text)``, and the unfinished tail the same way."""
        done, start = [], 0
        for m in _BOUNDARY.finditer(text):
            done.append((start, _normal(text[start:m.end()])))
            start = m.end()
        return done, (start, _normal(text[start:]))

    def check(self, text: str) -> tuple[int | None, int]:
        """Look at the whole reply so far.

        Returns:
            ``(cut, hold)``: ``cut`` is where the reply should end (the start of a unit that repeats an
            earlier one), or None; ``hold`` is how many characters at the end to hold back because the
            unfinished unit so far matches the start of an earlier one.
        """
        done, (tail_start, tail) = self.units(text)
        seen: set[str] = set()
        for start, unit in done:
            if len(unit.split()) >= self.min_words:
                if unit in seen:
                    return start, 0
                seen.add(unit)
        if tail and any(u.startswith(tail) for u in seen):
            return None, len(text) - tail_start
        return None, 0


def max_copies(text: str, min_words: int = MIN_WORDS) -> int:
    """The most times one sentence occurs in ``text`` (sentences of at least ``min_words`` words; 0 if none).

    The metric the generation eval reports: a reply with one sentence 3 or more times has looped.
    """
    counts: dict[str, int] = {}
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text):
        norm = _normal(sentence)
        if len(norm.split()) >= min_words:
            counts[norm] = counts.get(norm, 0) + 1
    return max(counts.values(), default=0)
