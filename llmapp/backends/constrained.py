"""Decoding under a grammar: the ``hf`` logits processor, and closing a reply the token budget cut short.

The grammar itself comes from :mod:`llmapp.backends.grammar`. The ``llamacpp`` engine hands it to
llama.cpp; the ``hf`` engine applies it here, with :class:`GrammarLogitsProcessor`: before each
token, llguidance computes the bitmask of allowed tokens and every other logit becomes -inf (with
numpy and torch's own ``masked_fill``: ``llguidance.torch`` would run ``torch.compile`` on first use).

A reply may still end early: ``max_tokens`` runs out in the middle of a string. So a constrained
reply is decoded with a small reserve held back (:func:`reserve`), and when it ends unfinished
:func:`closing` appends the shortest valid completion that llguidance allows, found byte by byte
(closing quotes and brackets first, then the fewest filler characters). The completed reply always
parses and satisfies the grammar, on every engine.

    from llmapp.backends.constrained import closing
    closing(json_grammar(schema).lark, '{"city": "Par')       # '"}'
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from llmapp.core.errors import LLMAppError

_STRUCTURE = b'n"}],'  # closing moves first: null, end the string/object/array; else the next item
_FILLER = b"1023456789" + bytes(range(97, 123)) + b"[{" + bytes(range(65, 91))  # 1 first: no year 0 in a date
_IN_STRING = b"\"" + bytes(range(97, 123)) + b"1023456789"
_MAX_CLOSING = 4096  # bytes; a grammar that needs more than this to close is not one the builder makes


@functools.lru_cache(maxsize=8)
def llg_tokenizer(tokenizer_json: str, eos: tuple[int, ...]) -> Any:
    """llguidance's view of a ``tokenizers`` tokenizer (built once: it takes about a second)."""
    import llguidance

    return llguidance.LLTokenizer(tokenizer_json, eos_token=list(eos))


class _Bytes:
    """A tokenizer whose tokens are the 256 bytes (and an end token): lets llguidance reason about text."""

    eos_token_id, bos_token_id, special_token_ids = 256, None, [256]
    tokens = [bytes([i]) for i in range(256)] + [b"<end>"]

    def __call__(self, text: str | bytes) -> list[int]:
        return list(text.encode() if isinstance(text, str) else text)


@functools.lru_cache(maxsize=1)
def _byte_tokenizer() -> Any:
    import llguidance

    return llguidance.LLTokenizer(llguidance.TokenizerWrapper(_Bytes()))


@functools.lru_cache(maxsize=64)
def _compiled(lark: str) -> str:
    import llguidance

    return llguidance.LLMatcher.grammar_from_lark(lark)


def matcher(lark: str, tokenizer: Any) -> Any:
    """A fresh llguidance matcher for ``lark`` over ``tokenizer`` (an ``LLTokenizer``)."""
    import llguidance

    m = llguidance.LLMatcher(tokenizer, _compiled(lark), log_level=0)
    if m.is_error():
        raise LLMAppError(f"the grammar did not compile: {m.get_error()}")
    return m


def closing(lark: str, text: str) -> str:
    """The text to append to ``text`` (a valid prefix under ``lark``) so that the grammar is satisfied.

    Returns:
        '' when ``text`` is already complete.

    Raises:
        LLMAppError: ``text`` is not a prefix the grammar allows (the engine did not follow it).
    """
    m = matcher(lark, _byte_tokenizer())
    if not m.consume_tokens(list(text.encode())):
        raise LLMAppError(f"the reply left the grammar ({m.get_error()}); please report this")
    out = bytearray()
    while not m.is_accepting():
        if len(out) > _MAX_CLOSING:
            raise LLMAppError("the reply could not be closed within 4 KB; please report this")
        forced = m.compute_ff_bytes()
        inside = _inside_string(text.encode() + out)
        step = forced or bytes([_pick(m.compute_bitmask(), _IN_STRING if inside else _STRUCTURE + _FILLER)])
        if not m.consume_tokens(list(step)):
            raise LLMAppError(f"closing the reply failed ({m.get_error()}); please report this")
        out += step
    return out.decode("utf-8", errors="strict")


def _pick(mask: bytes, preference: bytes) -> int:
    """The first byte of ``preference`` the mask allows, else the lowest allowed byte."""
    allowed = np.unpackbits(np.frombuffer(mask, dtype=np.uint8), bitorder="little")
    for b in preference:
        if allowed[b]:
            return b
    hits = np.flatnonzero(allowed[:256])
    if not len(hits):
        raise LLMAppError("the grammar allows no way to close the reply; please report this")
    return int(hits[0])


def _inside_string(data: bytes) -> bool:
    """Whether JSON text ends inside a string (so a filler byte extends the string, not the structure)."""
    inside = escaped = False
    for b in data:
        if escaped:
            escaped = False
        elif inside and b == 0x5C:  # backslash
            escaped = True
        elif b == 0x22:  # quote
            inside = not inside
    return inside


def reserve(lark: str, encode: Any, max_tokens: int) -> int:
    """Tokens to hold back from ``max_tokens`` so that :func:`closing` fits in the budget.

    The shortest complete reply, as tokens, plus two for the string or number being written when
    the budget runs out; at most half the budget, so the model always writes something.
    """
    return min(len(encode(closing(lark, ""))) + 2, max_tokens // 2)


class GrammarLogitsProcessor:
    """A ``transformers`` logits processor that allows only the tokens ``lark`` allows.

    Args:
        lark: the grammar (llguidance Lark).
        tokenizer: the model's ``LLTokenizer``.
        warpers: top-k / top-p warpers to apply after the mask (applying them before it could
            leave no token at all), for sampled decoding.
    """

    def __init__(self, lark: str, tokenizer: Any, warpers: list[Any] | None = None) -> None:
        self.matcher = matcher(lark, tokenizer)
        self.warpers = warpers or []
        self.vocab = tokenizer.vocab_size
        self._mask = np.zeros((1, (self.vocab + 31) // 32), dtype=np.int32)
        self._started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch
        from llguidance.numpy import fill_next_token_bitmask

        if self._started and not self.matcher.is_stopped():
            if not self.matcher.consume_token(int(input_ids[0, -1])):
                raise LLMAppError(f"the model left the grammar ({self.matcher.get_error()}); please report this")
        self._started = True
        fill_next_token_bitmask(self.matcher, self._mask)
        allowed = np.unpackbits(self._mask.view(np.uint8), bitorder="little")[: scores.shape[-1]]
        if len(allowed) < scores.shape[-1]:  # padded vocabulary rows beyond the tokenizer's: never allowed
            allowed = np.pad(allowed, (0, scores.shape[-1] - len(allowed)))
        blocked = torch.from_numpy(allowed == 0).to(scores.device)
        scores = scores.masked_fill(blocked.unsqueeze(0), float("-inf"))
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        return scores


_HF_TOKENIZERS: dict[int, tuple[Any, Any]] = {}  # id(hf tokenizer) -> (it, its LLTokenizer); models are cached too


def hf_logits_processor(lm: Any, lark: str, kwargs: dict[str, Any]) -> GrammarLogitsProcessor:
    """The processor that holds a ``transformers.generate`` call to ``lark``; edits ``kwargs`` in place.

    Sampled decoding moves top-k and top-p from ``generate`` into the processor, after the mask.
    """
    from transformers import TopKLogitsWarper, TopPLogitsWarper

    tok = lm.tokenizer
    if id(tok) not in _HF_TOKENIZERS:
        from llguidance.hf import from_tokenizer

        eos = lm.model.generation_config.eos_token_id
        eos = eos if eos is not None else tok.eos_token_id
        _HF_TOKENIZERS[id(tok)] = (tok, from_tokenizer(tok, eos_token=eos))
    warpers: list[Any] = []
    if kwargs.get("do_sample"):
        top_k = kwargs.get("top_k") or 0  # 0: off, as in GenerationConfig
        top_p = kwargs.get("top_p") or 1.0
        if top_k:
            warpers.append(TopKLogitsWarper(top_k=int(top_k)))
        if top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p=float(top_p)))
        kwargs.update(top_k=0, top_p=1.0)
    return GrammarLogitsProcessor(lark, _HF_TOKENIZERS[id(tok)][1], warpers)
