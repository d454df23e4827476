"""Token budgets against one chat model's context window, counted by the model's own tokenizer.

A prompt is measured with the chat model's tokenizer and chat template (``get_num_tokens_from_messages``)
before it is sent, and a reply of ``max_tokens`` shares the window, so a chain built on
:class:`Budget` never sends a prompt that does not fit, however long its text.

    from chains.budget import Budget
    budget = Budget(chat_model)                   # or Budget(chat_model, context_window=1024)
    room = budget.space(prompt, existing_summary="")   # tokens left for {text}
    chunks = budget.split(text, room)
"""

from __future__ import annotations

from typing import Any

from llmapp.core.errors import LLMAppError, PromptTooLong

SLACK = 8  # tokens kept free: a chunk tokenized alone can differ by a token or two inside the template


class Budget:
    """Token counting against one chat model's window, with its own tokenizer and chat template.

    Args:
        chat_model: a LangChain chat model with ``get_num_tokens_from_messages``; its ``max_tokens``
            is the room kept for every reply.
        context_window: budget against this instead of the model's window (tests, a safety margin).
    """

    def __init__(self, chat_model: Any, context_window: int | None = None) -> None:
        self.chat_model = chat_model
        window = context_window or getattr(chat_model, "context_window", None)
        if not window:
            raise LLMAppError("the chat model does not say its context window; set SummarizeConfig.context_window")
        self.reply = int(getattr(chat_model, "max_tokens", None) or 256)
        self.room = window - self.reply  # what a prompt may take: the reply shares the window
        self.window = window
        if self.room < 4 * SLACK:
            raise PromptTooLong(f"max_tokens={self.reply} leaves no room in the {window}-token window; lower it")

    def prompt_tokens(self, prompt: Any, **values: str) -> int:
        """Tokens of ``prompt`` filled with ``values``, chat template included."""
        return int(self.chat_model.get_num_tokens_from_messages(prompt.format_messages(**values)))

    def text_tokens(self, text: str) -> int:
        """Tokens of bare ``text``."""
        return int(self.chat_model.get_num_tokens(text))

    def fits(self, prompt: Any, **values: str) -> bool:
        """Whether ``prompt`` with ``values`` leaves room for the reply."""
        return self.prompt_tokens(prompt, **values) <= self.room

    def space(self, prompt: Any, **values: str) -> int:
        """Tokens left for ``text`` in ``prompt`` once the other values are filled in."""
        return self.room - self.prompt_tokens(prompt, text="", **values) - SLACK

    def split(self, text: str, size: int) -> list[str]:
        """Cut ``text`` into pieces of at most ``size`` tokens, at paragraph/line/word boundaries."""
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        if size < 16:
            raise PromptTooLong(f"only {size} tokens are left for text in the {self.window}-token window; "
                                "lower max_tokens or use a model with a longer window")
        tok = getattr(getattr(self.chat_model, "lm", None), "tokenizer", None)
        if tok is not None:
            splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(tok, chunk_size=size, chunk_overlap=0)
        else:
            splitter = RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=0, length_function=self.text_tokens)
        return [c for c in splitter.split_text(text) if c.strip()]


__all__ = ["SLACK", "Budget"]
