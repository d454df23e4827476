"""Fine-tuning examples: text or chat JSONL -> token ids with labels, and padded batches.

Plain text (``.txt``, or JSONL with a ``text`` field) becomes blocks of ``block_size`` tokens that
carry loss everywhere. Chat JSONL (``{"messages": [{"role", "content"}, ...]}`` per line) is
rendered with the model's chat template, and only the assistant turns (with their end-of-turn
token) carry loss: the model learns to answer, not to write the user's questions.

    from llmapp.train.examples import load_examples, collate
    examples = load_examples("eval/data/chat-sample.jsonl", tokenizer, block_size=512)
    x, y, mask = collate(examples[:4], pad=0, device="cpu")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmapp.core.errors import LLMAppError

IGNORE = -100  # the label of a token that carries no loss (transformers' and torch's convention)


def load_examples(path: str | Path, tokenizer: Any, block_size: int) -> list[dict[str, list[int]]]:
    """Tokenized examples: ``input_ids`` and ``labels`` (-100 where no loss is taken).

    Args:
        path: a .txt file, JSONL with ``text``, or chat JSONL with ``messages``.
        tokenizer: the model's Hugging Face tokenizer (with a chat template for chat data).
        block_size: the longest example in tokens; longer chats are cut, text is cut into blocks.

    Returns:
        One dict per example, in file order.

    Raises:
        LLMAppError: missing file, malformed JSONL (with its line number), no usable example.
    """
    from llmapp.train.data import read_text

    path = Path(path)
    if path.suffix == ".jsonl" and path.is_file():
        first = next((ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()), "")
        if '"messages"' in first:
            return _chat_examples(path, tokenizer, block_size)
    text = read_text(path)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < 2:
        raise LLMAppError(f"{path} is too short to train on; give it some text")
    return [{"input_ids": ids[i:i + block_size], "labels": ids[i:i + block_size]}
            for i in range(0, len(ids), block_size) if len(ids[i:i + block_size]) > 1]


def _chat_examples(path: Path, tokenizer: Any, block_size: int) -> list[dict[str, list[int]]]:
    if not getattr(tokenizer, "chat_template", None):
        raise LLMAppError(f"{path} is chat JSONL but the model has no chat template; use plain text data")

    def render(msgs: list[dict], prompt: bool) -> list[int]:
        out = tokenizer.apply_chat_template(msgs, add_generation_prompt=prompt, tokenize=True)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    examples = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            msgs = json.loads(line)["messages"]
            assert isinstance(msgs, list) and all(m["role"] in ("system", "user", "assistant") for m in msgs)
        except (json.JSONDecodeError, KeyError, TypeError, AssertionError):
            raise LLMAppError(f"{path}:{n}: expected {{\"messages\": [{{\"role\": system|user|assistant, "
                              f"\"content\": ...}}, ...]}}") from None
        ids = render(msgs, False)
        labels = [IGNORE] * len(ids)
        for j, m in enumerate(msgs):  # loss on each assistant turn: its tokens and its end-of-turn token
            if m["role"] == "assistant":
                start, end = len(render(msgs[:j], True)), len(render(msgs[: j + 1], False))
                labels[start:end] = ids[start:end]
        if any(t != IGNORE for t in labels[:block_size]):
            examples.append({"input_ids": ids[:block_size], "labels": labels[:block_size]})
    if not examples:
        raise LLMAppError(f"{path}: no example has an assistant reply within {block_size} tokens")
    return examples


def collate(batch: list[dict], pad: int, device: Any) -> tuple[Any, Any, Any]:
    """Right-pad a batch: ids padded with ``pad``, labels with -100, and the attention mask; each (B, T)."""
    import torch

    T = max(len(e["input_ids"]) for e in batch)
    x = torch.full((len(batch), T), pad, dtype=torch.long)
    y = torch.full((len(batch), T), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), T), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e["input_ids"])
        x[i, :n], y[i, :n], mask[i, :n] = torch.tensor(e["input_ids"]), torch.tensor(e["labels"]), 1
    return x.to(device), y.to(device), mask.to(device)
