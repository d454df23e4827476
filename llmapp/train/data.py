"""Training data: text or JSONL -> token ids -> memory-mapped ``.bin`` files, and random batches.

Tokenizers are either character-level (:class:`CharTokenizer`, nanoGPT's ``shakespeare_char``) or any
Hugging Face tokenizer (e.g. SmolLM2's BPE). The split is nanoGPT's: the first 90% of the *characters*
train, the last 10% validate, so validation losses compare with its published figures.

    python -m llmapp.train.data ../shared/data/tinyshakespeare.txt runs/shakespeare-data      # char-level
    python -m llmapp.train.data notes.txt runs/notes-data --tokenizer smollm2-135m-instruct    # BPE
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmapp.core.errors import LLMAppError
from llmapp.core.files import write_bytes, write_text

FORMAT = 1  # meta.json version


class CharTokenizer:
    """One token per character, vocabulary sorted by code point (nanoGPT's shakespeare_char)."""

    def __init__(self, chars: list[str]) -> None:
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def fit(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as exc:
            raise LLMAppError(f"character {exc.args[0]!r} is not in this model's vocabulary; "
                              "use only characters seen in training") from None

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_dict(self) -> dict:
        return {"type": "char", "chars": self.chars}

    def to_hf(self):
        """The same tokenizer as a ``PreTrainedTokenizerFast``, for exported Hugging Face models."""
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        # Unknown characters map to a space (or the first character): the vocabulary stays the model's.
        unk = " " if " " in self.stoi else self.chars[0]
        tok = Tokenizer(models.WordLevel(vocab=dict(self.stoi), unk_token=unk))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tok.decoder = decoders.Fuse()
        # Not declared as unk_token here: special tokens are skipped when decoding, and this one is a real character.
        return PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False)


class HFTokenizer:
    """A Hugging Face tokenizer behind the same small interface as :class:`CharTokenizer`."""

    def __init__(self, name: str) -> None:
        from transformers import AutoTokenizer

        from llmapp.models import resolve

        self.name = name
        self.tok = AutoTokenizer.from_pretrained(resolve(name))

    @property
    def vocab_size(self) -> int:
        return len(self.tok)

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)

    def to_dict(self) -> dict:
        return {"type": "hf", "name": self.name}

    def to_hf(self):
        return self.tok


def tokenizer_from_dict(d: dict) -> CharTokenizer | HFTokenizer:
    return CharTokenizer(d["chars"]) if d["type"] == "char" else HFTokenizer(d["name"])


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file, or the ``text`` fields of a JSONL file, joined by blank lines.

    Raises:
        LLMAppError: missing file, not UTF-8, or malformed JSONL (with its line number).
    """
    path = Path(path)
    if not path.is_file():
        raise LLMAppError(f"data file not found: {path}; check the path")
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LLMAppError(f"{path} is not UTF-8 text (byte {exc.start}); convert it, e.g. iconv -t utf-8") from None
    if path.suffix != ".jsonl":
        return raw
    texts = []
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            texts.append(json.loads(line)["text"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise LLMAppError(f"{path}:{n}: expected a JSON object with a \"text\" field") from None
    return "\n\n".join(texts)


@dataclass
class Dataset:
    """Token ids on disk: ``train.bin``, ``val.bin`` and ``meta.json`` in one folder."""

    folder: Path
    meta: dict

    @property
    def tokenizer(self) -> CharTokenizer | HFTokenizer:
        return tokenizer_from_dict(self.meta["tokenizer"])

    def split(self, name: str) -> np.memmap:
        """The ids of ``train`` or ``val``, memory-mapped (a new map each call: cheap, and fork-safe)."""
        file = self.folder / f"{name}.bin"
        if not file.is_file() or file.stat().st_size == 0:  # numpy cannot map an empty file
            raise LLMAppError(f"{file} is missing or empty: the {name} split has no tokens; prepare the data "
                              "again from a longer text")
        return np.memmap(file, dtype=self.meta["dtype"], mode="r")

    @classmethod
    def load(cls, folder: str | Path) -> Dataset:
        folder = Path(folder)
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, json.JSONDecodeError):
            raise LLMAppError(f"{folder} holds no prepared data (meta.json); run python -m llmapp.train.data first") from None
        return cls(folder, meta)


def prepare(source: str | Path, out_dir: str | Path, tokenizer: str = "char", val_fraction: float = 0.1) -> Dataset:
    """Tokenize ``source`` into ``out_dir``: train/val ``.bin`` files (uint16, or uint32 for big vocabularies).

    Args:
        source: a text file, or JSONL with a ``text`` field per line.
        out_dir: created if needed; files are written atomically.
        tokenizer: ``"char"`` or a registry name / path of a Hugging Face tokenizer.
        val_fraction: the tail of the text held out for validation (nanoGPT: 0.1).
    """
    text = read_text(source)
    if len(text.strip()) == 0:
        raise LLMAppError(f"{source} is empty; give it some text to train on")
    tok = CharTokenizer.fit(text) if tokenizer == "char" else HFTokenizer(tokenizer)
    cut = int(len(text) * (1 - val_fraction))
    train, val = tok.encode(text[:cut]), tok.encode(text[cut:])
    if len(train) < 2 or len(val) < 2:
        raise LLMAppError(f"{source} has only {len(text)} characters: too little to split into training and "
                          "validation text; give it at least a few thousand characters")
    dtype = "uint16" if tok.vocab_size < 2**16 else "uint32"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, ids in (("train", train), ("val", val)):
        write_bytes(out / f"{name}.bin", np.asarray(ids, dtype=dtype).tobytes())
    meta = {"format": FORMAT, "source": str(source), "dtype": dtype, "vocab_size": tok.vocab_size,
            "tokenizer": tok.to_dict(), "train_tokens": len(train), "val_tokens": len(val),
            "train_chars": cut, "val_chars": len(text) - cut}
    write_text(out / "meta.json", json.dumps(meta, indent=2))
    return Dataset(out, meta)


def get_batch(data: np.ndarray, block_size: int, batch_size: int, generator=None, device: str = "cpu"):
    """``batch_size`` random windows of ``block_size`` tokens and their next-token targets, as (B, T) tensors."""
    import torch

    if len(data) <= block_size:
        raise LLMAppError(f"only {len(data)} tokens, fewer than one block of {block_size}+1; "
                          "use more data or a smaller block_size (--set block_size=...)")
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator).tolist()
    x = torch.from_numpy(np.stack([np.asarray(data[i:i + block_size], dtype=np.int64) for i in ix]))
    y = torch.from_numpy(np.stack([np.asarray(data[i + 1:i + 1 + block_size], dtype=np.int64) for i in ix]))
    return x.to(device), y.to(device)


if __name__ == "__main__":
    ds = prepare(sys.argv[1], sys.argv[2], *(sys.argv[4:5] if "--tokenizer" in sys.argv else []))
    print(json.dumps(ds.meta, indent=2))
