"""Token-by-token decoding for Hugging Face causal LMs, shared by the chat model, the LLM and the server.

``transformers.generate`` runs in a worker thread and hands each new token id to a queue; the caller
iterates text pieces as they are decoded. Stop strings end generation without ever emitting a
partial stop string, and a cancel event (Ctrl-C, a client that went away) stops the model within
one token.

    stream = TextStream(lm, lm.tokenizer("Once upon a time").input_ids, GenerationConfig(max_tokens=20))
    for piece in stream:
        print(piece, end="", flush=True)
    print(stream.usage)   # {'input_tokens': 4, 'output_tokens': 20, 'finish_reason': 'length'}
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from llmapp.config import GenerationConfig
from llmapp.errors import LLMAppError, PromptTooLong

if TYPE_CHECKING:
    from llmapp.models import LoadedLM

_SEED_LOCK = threading.Lock()  # torch's global RNG is shared: seeded runs must not interleave
_DONE = object()


def fit_prompt(lm: LoadedLM, input_ids: list[int], config: GenerationConfig) -> list[int]:
    """Check a prompt against the context window, leaving room for ``config.max_tokens``.

    Returns:
        ``input_ids``, or its last tokens when ``config.truncate`` is set and it is too long.

    Raises:
        LLMAppError: an empty prompt.
        PromptTooLong: the prompt does not fit and truncation was not asked for.
    """
    if not input_ids:
        raise LLMAppError("empty prompt: give the model some text to continue")
    room = lm.context_window - config.max_tokens
    if room <= 0:
        raise PromptTooLong(
            f"max_tokens={config.max_tokens} leaves no room in the {lm.context_window}-token context window; lower max_tokens"
        )
    if len(input_ids) <= room:
        return input_ids
    if config.truncate:
        return input_ids[-room:]
    raise PromptTooLong(
        f"prompt is {len(input_ids)} tokens but only {room} fit ({lm.context_window}-token window minus "
        f"max_tokens={config.max_tokens}); shorten it, lower max_tokens, or allow left-truncation (truncate=True)"
    )


class TextStream:
    """Iterate the text a model generates, piece by piece; ``usage`` is filled in when it ends.

    Args:
        lm: a loaded model (``llmapp.models.load_causal_lm``).
        input_ids: the prompt's token ids (already checked by :func:`fit_prompt`).
        config: decoding settings.
        cancel: set it from anywhere to stop generation within one token.
    """

    def __init__(self, lm: LoadedLM, input_ids: list[int], config: GenerationConfig,
                 cancel: threading.Event | None = None) -> None:
        self.lm, self.input_ids, self.config = lm, input_ids, config
        self.cancel = cancel or threading.Event()
        self.usage: dict[str, Any] = {"input_tokens": len(input_ids), "output_tokens": 0, "finish_reason": None}
        self._tokens: queue.Queue = queue.Queue()
        self.extra_generate_kwargs: dict[str, Any] = {}  # passed through to generate() (benchmarks, tests)

    def __iter__(self) -> Iterator[str]:
        worker = threading.Thread(target=self._run, daemon=True)
        worker.start()
        ids: list[int] = []
        emitted = ""
        stops = [s for s in self.config.stop if s]
        try:
            while True:
                item = self._tokens.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                ids.append(item)
                text = self.lm.tokenizer.decode(ids, skip_special_tokens=True)
                if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                    continue
                cut = _first_stop(text, stops, len(emitted))
                if cut is not None:
                    self.usage["finish_reason"] = "stop"
                    self.cancel.set()
                    if cut > len(emitted):
                        yield text[len(emitted):cut]
                    emitted = text[:cut]
                    break
                safe = len(text) - _held_back(text, stops)
                if safe > len(emitted):
                    yield text[len(emitted):safe]
                    emitted = text[:safe]
            if self.usage["finish_reason"] is None:
                tail = self.lm.tokenizer.decode(ids, skip_special_tokens=True)
                if len(tail) > len(emitted) and not self.cancel.is_set():
                    yield tail[len(emitted):]
                self.usage["finish_reason"] = (
                    "cancelled" if self.cancel.is_set() else "length" if len(ids) >= self.config.max_tokens else "stop"
                )
        finally:
            self.cancel.set()
            worker.join()
            self.usage["output_tokens"] = len(ids)

    def text(self) -> str:
        """Run to the end and return the whole text."""
        return "".join(self)

    def _run(self) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        cancel, out = self.cancel, self._tokens

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        class _Streamer:
            first = True

            def put(self, value: Any) -> None:
                if self.first:  # generate() first hands over the prompt
                    self.first = False
                    return
                for token in value.reshape(-1).tolist():
                    out.put(token)

            def end(self) -> None:
                pass

        cfg, lm = self.config, self.lm
        kwargs: dict[str, Any] = {"max_new_tokens": cfg.max_tokens, "do_sample": cfg.temperature > 0,
                                  **self.extra_generate_kwargs}
        if cfg.temperature > 0:
            kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k or None)
        if cfg.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = cfg.repetition_penalty
        ids = torch.tensor([self.input_ids], device=lm.device)
        seeded = cfg.seed is not None and cfg.temperature > 0
        try:
            with _SEED_LOCK if seeded else nullcontext(), torch.inference_mode():
                if seeded:
                    torch.manual_seed(cfg.seed)
                lm.model.generate(
                    ids, attention_mask=torch.ones_like(ids), streamer=_Streamer(),
                    stopping_criteria=StoppingCriteriaList([_Cancelled()]),
                    pad_token_id=lm.pad_token_id, **kwargs,
                )
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread, which re-raises
            out.put(exc)
        finally:
            out.put(_DONE)


def _first_stop(text: str, stops: list[str], emitted: int) -> int | None:
    """Index where the earliest stop string starts in ``text``, searching only new text."""
    hits = [i for s in stops if (i := text.find(s, max(0, emitted - len(s) + 1))) >= 0]
    return min(hits) if hits else None


def _held_back(text: str, stops: list[str]) -> int:
    """Length of the longest tail of ``text`` that could be the start of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if s.startswith(text[-n:]):
                best = n
                break
    return best
