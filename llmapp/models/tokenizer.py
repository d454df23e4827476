"""A light tokenizer with the model's chat template: the ``tokenizers`` library plus sandboxed Jinja.

The llama.cpp backend counts tokens, checks the window and renders chat templates without torch or
transformers (which cost ~4 s and ~250 MB to import). This reads a saved Hugging Face tokenizer
folder (``tokenizer.json``, ``tokenizer_config.json``, ``chat_template.jinja``) and renders the
template the way ``transformers.apply_chat_template`` does, so both backends see the same tokens.

    from llmapp.models.tokenizer import ChatTokenizer
    tok = ChatTokenizer.from_dir(folder)          # or gguf_tokenizer(path_to_gguf)
    ids = tok.chat_ids([{"role": "user", "content": "Hi"}])
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from llmapp.core.errors import LLMAppError


class ChatTokenizer:
    """Encode, decode and render chat messages with a model's own template.

    Args:
        tokenizer: a ``tokenizers.Tokenizer``.
        template: the Jinja chat template ('' for a model without one: a plain transcript is used).
        special: ``bos_token``, ``eos_token`` and the like, passed to the template.
    """

    def __init__(self, tokenizer: Any, template: str, special: dict[str, str]) -> None:
        self.tokenizer, self.template_text, self.special = tokenizer, template, special
        self._template: Any = None

    @classmethod
    def from_dir(cls, folder: str | Path) -> ChatTokenizer:
        """Read a tokenizer folder saved by ``transformers`` (``save_pretrained``)."""
        from tokenizers import Tokenizer

        folder = Path(folder)
        try:
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, Exception) as exc:  # tokenizers raises its own Exception type
            raise LLMAppError(f"cannot read the tokenizer in {folder} ({exc}); delete that folder to rebuild it") from None
        template = config.get("chat_template") or ""
        if not template and (folder / "chat_template.jinja").exists():
            template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        special = {k: _token_text(v) for k, v in config.items() if k.endswith("_token") and v}
        return cls(tokenizer, template, special)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **extra: Any) -> str:
        """``messages`` as the prompt text the model was trained on."""
        if not self.template_text:
            text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages)
            return text + ("Assistant:" if add_generation_prompt else "")
        if self._template is None:
            self._template = _environment().from_string(self.template_text)
        return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                     **self.special, **extra)

    def chat_ids(self, messages: list[dict[str, Any]], **extra: Any) -> list[int]:
        """Token ids of the rendered chat, ready for the reply (no extra special tokens, as HF does)."""
        return self.encode(self.render(messages, **extra), add_special_tokens=False)


@functools.lru_cache(maxsize=8)
def gguf_tokenizer(gguf: str | Path) -> ChatTokenizer:
    """The tokenizer of a ``.gguf`` file (from its cached tokenizer folder), loaded once per process."""
    from llmapp.models.bundled import gguf_tokenizer_dir

    return ChatTokenizer.from_dir(gguf_tokenizer_dir(Path(gguf)))


def _token_text(value: Any) -> str:
    return value.get("content", "") if isinstance(value, dict) else str(value)


def _environment() -> Any:
    """Jinja as transformers configures it for chat templates: sandboxed, trimmed, with its helpers."""
    from jinja2.exceptions import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env
