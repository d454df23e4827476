"""The hallucination guard: generated text in, only the sentences its source supports out, streamed.

Feed the model's text piece by piece; each sentence is judged by :class:`chains.grounding.Grounding`
as soon as it is complete, and is then

- kept, when a source passage supports it and it names no name, number or link the source lacks;
- dropped (``mode="drop"``) or kept with a ``[unsupported: ...]`` mark (``mode="flag"``) otherwise.

Whatever the mode, a sentence that only repeats an earlier one or loops within itself, a lead-in
that ends in a colon ("Here is a summary:") and a last sentence cut off by the token limit are dropped: they are
artefacts of generation, not claims. The guard remembers what it did (:attr:`SentenceGuard.verdicts`).

    from chains.grounding import Grounding
    from chains.guard import SentenceGuard
    guard = SentenceGuard(Grounding(source, embeddings))
    for piece in chat_model.stream(messages):
        print(guard.feed(piece.content), end="")
    print(guard.flush())
"""

from __future__ import annotations

import re
from typing import Any

from chains.grounding import Verdict, join_sentences, split_sentences

GUARD_MODES = ("drop", "flag", "off")
_END = re.compile(r"[.!?][\"')\]]*$")


class SentenceGuard:
    """A streaming filter over generated text, one complete sentence at a time.

    Args:
        grounding: the prepared source (:class:`~chains.grounding.Grounding`).
        mode: ``drop`` unsupported sentences, ``flag`` them, or ``off`` (only the artefacts above go).
    """

    def __init__(self, grounding: Any, mode: str = "drop") -> None:
        if mode not in GUARD_MODES:
            from llmapp.core.errors import LLMAppError

            raise LLMAppError(f"unknown guard mode {mode!r}; use one of: {', '.join(GUARD_MODES)}")
        self.grounding, self.mode = grounding, mode
        self.text = ""  # everything fed so far
        self.done = 0  # sentences of self.text already judged
        self.kept: list[str] = []
        self.verdicts: list[Verdict] = []  # every judged sentence, kept or not
        self.dropped: list[tuple[str, str]] = []  # (sentence, why)
        self._seen: set[str] = set()

    def feed(self, piece: str) -> str:
        """Add generated text; returns the text of newly completed sentences that pass (may be '')."""
        self.text += piece
        sentences = split_sentences(self.text, lines=True)
        # The last sentence may still grow; a sentence is complete once another one has begun.
        ready = sentences[self.done:len(sentences) - 1]
        self.done += len(ready)
        return self._judge(ready)

    def flush(self, truncated: bool = False) -> str:
        """The end of generation: judge what is left; returns the text that passes.

        Args:
            truncated: the reply hit its token limit, so a last sentence without an end mark was cut off.
        """
        rest = split_sentences(self.text, lines=True)[self.done:]
        self.done += len(rest)
        if rest and (truncated or self.kept) and not _END.search(rest[-1]):
            self.dropped.append((rest.pop(), "cut off"))
        return self._judge(rest)

    def _judge(self, sentences: list[str]) -> str:
        out = []
        for sentence in sentences:
            norm = " ".join(re.findall(r"\w+", sentence.lower()))
            if not norm:
                continue
            if norm in self._seen:
                self.dropped.append((sentence, "repeated"))
                continue
            if sentence.rstrip().endswith(":"):
                self.dropped.append((sentence, "lead-in"))
                continue
            if _looped(norm):
                self.dropped.append((sentence, "looped"))
                continue
            self._seen.add(norm)
            verdict = self.grounding.check([sentence])[0]
            self.verdicts.append(verdict)
            if verdict.supported or self.mode == "off":
                out.append(sentence)
            elif self.mode == "flag":
                why = ", ".join(verdict.foreign) or f"closest passage {verdict.score:.2f}"
                out.append(f"{sentence} [unsupported: {why}]")
            else:
                self.dropped.append((sentence, ", ".join(verdict.foreign) or f"support {verdict.score:.2f}"))
                continue
        text = join_sentences(out, self.kept[-1] if self.kept else "")
        self.kept += out
        return text


def _looped(words: str, n: int = 3, limit: float = 0.25) -> bool:
    """Whether a sentence repeats itself: over ``limit`` of its word n-grams occur earlier in it."""
    tokens = words.split()
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) >= 10 and 1 - len(set(grams)) / len(grams) > limit


__all__ = ["GUARD_MODES", "SentenceGuard"]
