"""The ``hf`` backend: any Hugging Face causal LM on torch, through ``transformers.generate``.

It runs every model transformers can load (local folders, cached hub ids, a ``.gguf`` dequantized
once into a cached folder), and it is the path for training, fine-tuning, LoRA, perplexity and
export. ``generate`` runs in a worker thread and hands each new token id to a queue; the consumer
decodes pieces as they come, so streaming is real and a cancel stops the model within one token.

    from llmapp.backends.hf import ChatLocal
    chat = ChatLocal(model="smollm2-135m-instruct", max_tokens=64)
    for chunk in chat.stream("Tell me a joke"):
        print(chunk.content, end="", flush=True)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any, ClassVar

from llmapp.backends.base import LocalChatModel, LocalModel, LocalTextModel
from llmapp.core.config import GenerationConfig
from llmapp.models.hf import LoadedLM, load_causal_lm

_SEED_LOCK = threading.Lock()  # torch's global RNG is shared: seeded runs must not interleave
_DONE = object()


class HFEngine:
    """A :class:`~llmapp.models.hf.LoadedLM` as an engine for the shared chat and text models."""

    def __init__(self, lm: LoadedLM) -> None:
        self.lm, self.name, self.context_window = lm, lm.name, lm.context_window

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.lm.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]

    def chat_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        tok = self.lm.tokenizer
        if getattr(tok, "chat_template", None):
            out = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            return list(out["input_ids"] if hasattr(out, "keys") else out)
        # A model without a chat template (e.g. a GPT trained by `llmapp train`): plain transcript.
        text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages) + "Assistant:"
        return self.encode(text)

    def generate(self, ids: list[int], config: GenerationConfig, cancel: threading.Event,
                 **options: Any) -> TokenGeneration:
        return TokenGeneration(self.lm, ids, config, cancel, options)

    def info(self) -> dict[str, Any]:
        import torch
        import transformers

        return {"backend": "hf", "version": f"transformers {transformers.__version__}, torch {torch.__version__}",
                "device": self.lm.device, "threads": torch.get_num_threads()}


class TokenGeneration:
    """``transformers.generate`` in a worker thread; iterating decodes the new tokens into text pieces."""

    def __init__(self, lm: LoadedLM, ids: list[int], config: GenerationConfig, cancel: threading.Event,
                 options: dict[str, Any] | None = None) -> None:
        self.lm, self.ids, self.config, self.cancel = lm, ids, config, cancel
        self.output_tokens = 0
        self.finish_reason: str | None = None
        self.extra_generate_kwargs = dict(options or {})  # passed through to generate() (benchmarks, grammars)
        # llguidance Lark text the tokens must follow (llmapp.backends.grammar), applied by a logits processor
        self.grammar: str | None = self.extra_generate_kwargs.pop("grammar", None)
        self._tokens: queue.Queue = queue.Queue()

    def __iter__(self) -> Iterator[str]:
        worker = threading.Thread(target=self._run, daemon=True, name="llmapp-hf-generate")
        worker.start()
        ids: list[int] = []
        emitted = ""
        try:
            while (item := self._tokens.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                ids.append(item)
                self.output_tokens = len(ids)
                text = self.lm.tokenizer.decode(ids, skip_special_tokens=True)
                if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                    continue
                if len(text) > len(emitted):
                    yield text[len(emitted):]
                    emitted = text
            if not self.cancel.is_set():
                self.finish_reason = "length" if len(ids) >= self.config.max_tokens else "stop"
        finally:
            self.cancel.set()
            worker.join()

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
        kwargs = generate_kwargs(cfg) | self.extra_generate_kwargs
        if self.grammar is not None:
            from transformers import LogitsProcessorList

            from llmapp.backends.constrained import hf_logits_processor

            kwargs["logits_processor"] = LogitsProcessorList([hf_logits_processor(lm, self.grammar, kwargs)])
        ids = torch.tensor([self.ids], device=lm.device)
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


def generate_kwargs(config: GenerationConfig) -> dict[str, Any]:
    """``config`` as ``transformers.generate`` keywords: greedy at temperature 0, sampling above it."""
    kwargs = config.engine_kwargs("hf")  # greedy: the sampling-only settings are already left out
    kwargs["do_sample"] = config.temperature > 0
    if not kwargs["do_sample"]:
        kwargs.pop("temperature", None)
    if kwargs.get("repetition_penalty") == 1.0:
        del kwargs["repetition_penalty"]  # the neutral value: skip the logits processor
    return kwargs


class HFModel(LocalModel):
    """The ``hf`` backend's own settings and its engine, shared by its chat and text models."""

    backend_name: ClassVar[str] = "hf"
    device: str | None = None  # cpu, cuda, mps; default: the best available
    dtype: str = "auto"  # auto = fp32 on CPU (bf16 decodes slower there), bf16/fp16 on GPUs

    @property
    def lm(self) -> LoadedLM:
        """The loaded model and tokenizer, shared through the registry's cache."""
        return load_causal_lm(self.model, device=self.device, dtype=self.dtype)

    @property
    def engine(self) -> HFEngine:
        return HFEngine(self.lm)


class ChatLocal(HFModel, LocalChatModel):
    """A chat model over a local Hugging Face causal LM, using the model's own chat template."""


class LocalLLM(HFModel, LocalTextModel):
    """A plain text-completion LLM over a local Hugging Face causal LM: the prompt is continued as is."""
