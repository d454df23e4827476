"""The trainable model types: one entry per type, with its constructor, checkpoint loader and scorer.

``llmapp train --set model_type=NAME`` builds (or fits) the type ``NAME``; ``llmapp sample``,
``llmapp export``, ``llmapp eval perplexity`` and :func:`llmapp.train.checkpoint.bits_per_char` load
a checkpoint through the type recorded in it and use that type's :meth:`ModelType.rolling_nll` and
:meth:`ModelType.sample`. No other module compares type names.

- :class:`NetworkType`: an ``nn.Module`` with the GPT's interface (``forward(idx, targets) ->
  (logits, loss, caches)`` and ``generate(...)``), trained by gradient descent in the one loop of
  ``llmapp.train.trainer``: the GPT, the character LSTM.
- :class:`NGramType`: a model fitted by counting (the character Markov chain).

Adding a type is a module with the model and one entry in :data:`MODEL_TYPES` (see docs/training.md).

    from llmapp.train.registry import MODEL_TYPES, get
    get("lstm").build(cfg, vocab_size=65)        # (CharLSTM, LSTMConfig)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmapp.core.errors import LLMAppError


@dataclass(frozen=True)
class ModelType:
    """One trainable model type. Subclasses say how it is made, loaded, scored and sampled."""

    name: str
    summary: str  # one line for listings and error messages

    def build(self, cfg: Any, vocab_size: int) -> tuple[Any, Any]:
        """A fresh model for ``cfg`` (a TrainConfig) and its shape config; gradient-trained types only."""
        raise LLMAppError(f"model_type {self.name!r} is fitted, not trained by gradient descent")

    def fit(self, text: str, tokenizer: Any, cfg: Any) -> tuple[Any, dict]:
        """A model fitted on ``text`` (tokenized by ``tokenizer``) and its shape config; counting types only."""
        raise LLMAppError(f"model_type {self.name!r} is trained by gradient descent, not fitted")

    @property
    def fitted(self) -> bool:
        """True when :meth:`fit` (counting) makes this type, not the training loop."""
        return type(self).fit is not ModelType.fit

    def save(self, model: Any, folder: Path) -> None:
        """Write the model's weights into a checkpoint folder being built."""
        raise NotImplementedError

    def load(self, folder: Path, config: dict, device: str = "cpu") -> Any:
        """The model of the checkpoint in ``folder``, whose ``config.json`` is ``config``."""
        raise NotImplementedError

    def rolling_nll(self, model: Any, tokenizer: Any, text: str, window: int | None = None,
                    stride: int | None = None) -> tuple[float, int]:
        """Summed negative log-likelihood of ``text`` in nats, and the number of tokens scored.

        Every token is paid for, the first at a uniform ``log(vocab)`` (a character model has no
        boundary token to condition on), the rest given the text before them, within ``window``
        tokens advancing by ``stride`` where the model's context is limited.
        """
        raise NotImplementedError

    def sample(self, model: Any, tokenizer: Any, prompt: str, max_tokens: int, temperature: float = 1.0,
               top_k: int = 0, top_p: float = 1.0, seed: int | None = None, n: int = 1) -> Iterator[str]:
        """``n`` continuations of ``prompt`` (each including the prompt), the same for the same seed."""
        raise NotImplementedError


@dataclass(frozen=True)
class NetworkType(ModelType):
    """A network trained by the loop. ``classes`` imports (model class, config class) lazily, so the
    registry costs no torch import; ``shape`` maps a TrainConfig and vocabulary size to config fields;
    ``context`` is the longest window a checkpoint's model config allows (None: unlimited, recurrent)."""

    classes: Callable[[], tuple[type, type]] = None  # type: ignore[assignment]
    shape: Callable[[Any, int], dict] = None  # type: ignore[assignment]
    context: Callable[[dict], int | None] = lambda model_cfg: None
    exportable: bool = False  # its model has to_hf(), a transformers model for `llmapp export`

    def build(self, cfg: Any, vocab_size: int) -> tuple[Any, Any]:
        model_cls, config_cls = self.classes()
        mcfg = config_cls(**self.shape(cfg, vocab_size))
        return model_cls(mcfg), mcfg

    def save(self, model: Any, folder: Path) -> None:
        from safetensors.torch import save_model

        save_model(model, str(folder / "model.safetensors"))  # tied weights stored once

    def load(self, folder: Path, config: dict, device: str = "cpu") -> Any:
        from llmapp.train.checks import model_config

        model_cls, config_cls = self.classes()
        model = model_cls(model_config(config_cls, config["model"], folder / "config.json"))
        self.load_weights(model, folder, device)
        return model.to(device).eval()

    def load_weights(self, model: Any, folder: Path, device: str = "cpu") -> None:
        """Load the weights :meth:`save` wrote into ``model`` (built with the same config); a damaged or
        mismatched file is one line naming it."""
        from safetensors.torch import load_model

        from llmapp.core.validate import refuse
        from llmapp.train.checks import DAMAGED_FIX

        file = folder / "model.safetensors"
        if not file.is_file():
            raise LLMAppError(f"{file} is missing; {DAMAGED_FIX}")
        try:
            load_model(model, str(file), device=device)
        except Exception as exc:  # noqa: BLE001 - SafetensorError, a shape mismatch, a truncated file: all one line
            raise refuse(str(file), f"damaged or not this model's weights ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})", DAMAGED_FIX) from None

    def rolling_nll(self, model: Any, tokenizer: Any, text: str, window: int | None = None,
                    stride: int | None = None) -> tuple[float, int]:
        ids = tokenizer.encode(text)
        limit = self.context(asdict(model.config))
        window = min(window or limit or len(ids), limit or len(ids))  # no limit: the whole text in one pass
        nll, scored = sliding_nll(ids, 1, window, stride or max(1, window // 2), lambda x: model(x)[0])
        return nll + math.log(tokenizer.vocab_size), scored + 1

    def sample(self, model: Any, tokenizer: Any, prompt: str, max_tokens: int, temperature: float = 1.0,
               top_k: int = 0, top_p: float = 1.0, seed: int | None = None, n: int = 1) -> Iterator[str]:
        import torch

        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        x = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long)
        for _ in range(n):
            out = model.generate(x, max_tokens, temperature=temperature, top_k=top_k or None, top_p=top_p,
                                 generator=gen)
            yield tokenizer.decode(out[0].tolist())


@dataclass(frozen=True)
class NGramType(ModelType):
    """The character n-gram Markov chain (``llmapp.train.baselines.CharNGram``), fitted by counting."""

    max_order: int = 5  # four characters of context: the sweet spot on Tiny Shakespeare-sized texts

    def fit(self, text: str, tokenizer: Any, cfg: Any) -> tuple[Any, dict]:
        from llmapp.train.baselines import CharNGram

        if not hasattr(tokenizer, "chars"):
            raise LLMAppError(f"the {self.name} baseline works on characters; drop --set tokenizer=... (use char)")
        order = min(self.max_order, cfg.block_size)
        return CharNGram(order).fit(text, vocab=set(tokenizer.chars)), {"order": order}

    def save(self, model: Any, folder: Path) -> None:
        model.save(folder / "ngram.json")

    def load(self, folder: Path, config: dict, device: str = "cpu") -> Any:
        from llmapp.train.baselines import CharNGram

        return CharNGram.load(folder / "ngram.json")

    def rolling_nll(self, model: Any, tokenizer: Any, text: str, window: int | None = None,
                    stride: int | None = None) -> tuple[float, int]:
        return model.nll(text), len(text)  # its window is its order: every character sees order-1 before it

    def sample(self, model: Any, tokenizer: Any, prompt: str, max_tokens: int, temperature: float = 1.0,
               top_k: int = 0, top_p: float = 1.0, seed: int | None = None, n: int = 1) -> Iterator[str]:
        for i in range(n):
            yield model.generate(prompt, max_tokens, temperature, top_k, None if seed is None else seed + i)


def _gpt() -> tuple[type, type]:
    from llmapp.train.gpt import GPT, GPTConfig

    return GPT, GPTConfig


def _lstm() -> tuple[type, type]:
    from llmapp.train.baselines import CharLSTM, LSTMConfig

    return CharLSTM, LSTMConfig


MODEL_TYPES: dict[str, ModelType] = {
    "gpt": NetworkType(
        "gpt", "the minimal GPT (llmapp.train.gpt)", classes=_gpt,
        shape=lambda c, vocab: dict(vocab_size=vocab, block_size=c.block_size, n_layer=c.n_layer, n_head=c.n_head,
                                    n_embd=c.n_embd, dropout=c.dropout, bias=c.bias),
        context=lambda m: m["block_size"],  # learned positions: no window longer than the training block
        exportable=True),
    "lstm": NetworkType(
        "lstm", "a character LSTM baseline (llmapp.train.baselines)", classes=_lstm,
        shape=lambda c, vocab: dict(vocab_size=vocab, block_size=c.block_size, n_layer=min(c.n_layer, 2),
                                    n_embd=2 * c.n_embd, dropout=c.dropout)),  # GPT-sized: 2 x the width
    "markov": NGramType("markov", "a character 5-gram Markov chain with Witten-Bell smoothing"),
}


def get(name: str) -> ModelType:
    """The model type called ``name``; an unknown name lists the valid ones."""
    if name not in MODEL_TYPES:
        raise LLMAppError(f"unknown model_type {name!r}; use one of: {', '.join(MODEL_TYPES)}")
    return MODEL_TYPES[name]


def sliding_nll(ids: list[int], first: int, window: int, stride: int, logits_fn: Any) -> tuple[float, int]:
    """Summed NLL (nats) of ``ids[first:]`` scored in windows of ``window`` tokens advancing by ``stride``.

    Each token is scored once, with as much context as its window gives (the Hugging Face recipe):
    at least ``window - stride`` tokens once the first window is past.

    Args:
        ids: the token ids of the text.
        first: the first position to score (1 when ``ids[0]`` has nothing to condition on).
        window: tokens per forward pass.
        stride: tokens the window advances by (capped at ``window - 1``).
        logits_fn: maps a (1, T) id tensor to (1, T, vocab) logits.

    Returns:
        ``(nll_nats, tokens_scored)``.
    """
    import torch

    window = max(2, window)
    stride = max(1, min(stride, window - 1))
    nll, scored, done = 0.0, 0, first  # done: tokens before this position are already scored
    with torch.inference_mode():
        for begin in range(0, len(ids), stride):
            end = min(begin + window, len(ids))
            if end <= done:
                break
            x = torch.tensor([ids[begin:end]])
            logp = torch.log_softmax(logits_fn(x)[0, :-1].float().cpu(), dim=-1)  # (T-1, V): predicts x[1:]
            lo = max(done, begin + 1)  # positions lo..end-1 are scored in this window
            targets = x[0, lo - begin:end - begin]
            nll -= logp[lo - begin - 1:end - begin - 1].gather(1, targets[:, None]).sum().item()
            scored += end - lo
            done = end
            if end == len(ids):
                break
    return nll, scored
