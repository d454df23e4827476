"""The bundled masked LM: an MLM head trained by llmapp on top of the frozen all-MiniLM-L6-v2 encoder.

No PyPI package ships a masked LM with its head: ``AutoModelForMaskedLM`` on the bundled MiniLM leaves
``cls.predictions.*`` random, and fill-mask returns noise. This module trains that head with the
BERT objective (15% of tokens chosen; 80% become [MASK], 10% a random token, 10% stay) while the
encoder stays frozen and the decoder stays tied to the word embeddings, so only ~0.18M parameters
learn (``--unfreeze-layers N`` trains the top N encoder layers too, and saves them with the head:
~7 MB a layer). The result ships as ``llmapp/weights/minilm_l6_mlm_head.safetensors`` (+ a JSON of its
training config and measured accuracy) and is registered as ``minilm-l6-mlm``.

    python -m llmapp.train.mlm                       # retrain the shipped head (a few minutes on 2 cores)
    python -m llmapp.train.mlm --steps 100 --out /tmp/head.safetensors
    python -m llmapp.train.mlm --unfreeze-layers 1 --out /tmp/head-top1.safetensors    # + the top layer

    from llmapp import load_masked_lm
    load_masked_lm("minilm-l6-mlm").fill_mask("The capital of France is [MASK].")
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmapp.core.files import write_bytes, write_text
from llmapp.models.masked import HEAD_PATH, base_model, head_params

log = logging.getLogger(__name__)

@dataclass
class MLMConfig:
    """How the head is trained; saved beside the weights."""

    steps: int = 400  # head updates; the head is small and its loss flattens after a few hundred
    batch_size: int = 32  # rows per encoder pass
    encode_batches: int = 40  # encoder passes whose hidden states are cached (~25k masked tokens)
    positions_per_step: int = 1024  # masked positions per head update
    seq_len: int = 128  # tokens per example; MiniLM was trained on 128-token inputs
    lr: float = 2e-3  # high, because only the small head learns
    mask_prob: float = 0.15  # BERT: 15% of tokens are prediction targets
    held_out: float = 0.05  # the last 5% of chunks evaluate
    eval_batches: int = 20
    seed: int = 0
    unfreeze_layers: int = 0  # top encoder layers trained with the head; 0 keeps the shipped file at 0.7 MB


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


def _chunks(tokenizer: Any, seq_len: int) -> Any:
    """Tiny Shakespeare and the genai notes as (N, seq_len) token ids, each row [CLS] ... [SEP]."""
    import torch

    from llmapp.corpora import GENAI_NOTES as DEMO_DATA
    from llmapp.corpora import TINY_SHAKESPEARE

    texts = [TINY_SHAKESPEARE.read_text()]
    texts += [p.read_text(errors="replace") for p in sorted(Path(DEMO_DATA).glob("*.txt"))]
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
        for i in range(0, min(len(rows), cfg.eval_batches * cfg.batch_size), cfg.batch_size):
            inputs, labels = mask_tokens(rows[i:i + cfg.batch_size], tokenizer, cfg.mask_prob, gen)
            logits = model(input_ids=inputs).logits
            where = labels != -100
            top5 = logits[where].topk(5, dim=-1).indices
            gold = labels[where][:, None]
            hit1 += (top5[:, :1] == gold).sum().item()
            hit5 += (top5 == gold).any(-1).sum().item()
            total += gold.numel()
    return {"top1": hit1 / max(total, 1), "top5": hit5 / max(total, 1), "masked_tokens": total}


def train_head(cfg: MLMConfig, out: str | Path = HEAD_PATH, progress: bool = True) -> dict[str, Any]:
    """Train the head, save it (atomically) with a JSON report, and return that report."""
    import torch
    from safetensors.torch import save
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    model, tokenizer = base_model()
    rows = _chunks(tokenizer, cfg.seq_len)
    rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(cfg.seed))]
    n_eval = max(cfg.batch_size, int(len(rows) * cfg.held_out))
    train_rows, eval_rows = rows[:-n_eval], rows[-n_eval:]
    random_head = accuracy(model, tokenizer, eval_rows, cfg)
    # The frozen part of the encoder runs once: its hidden states are cached, and the trained part
    # (the head, and any unfrozen top layers) learns on them for many steps at a fraction of the cost.
    # Head only: the final states at masked positions, (N, C). With k unfrozen layers: whole rows at
    # the input of layer L-k, (R, T, C), since attention in the top layers sees every position.
    n_layers, k = len(model.bert.encoder.layer), cfg.unfreeze_layers
    gen = torch.Generator().manual_seed(cfg.seed)
    hidden, labels = [], []
    with torch.inference_mode():
        for _ in tqdm(range(cfg.encode_batches), desc="encode", disable=not progress):
            idx = torch.randint(len(train_rows), (cfg.batch_size,), generator=gen)
            inputs, lab = mask_tokens(train_rows[idx], tokenizer, cfg.mask_prob, gen)
            if k:
                hidden.append(model.bert(input_ids=inputs, output_hidden_states=True).hidden_states[n_layers - k])
                labels.append(lab)
            else:
                where = lab != -100
                hidden.append(model.bert(input_ids=inputs).last_hidden_state[where])
                labels.append(lab[where])
    hidden, labels = torch.cat(hidden).clone(), torch.cat(labels)  # clone: out of inference mode
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(head_params(model, k).values())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    rows_per_step = max(1, round(cfg.positions_per_step / (cfg.seq_len * cfg.mask_prob)))
    if k:
        model.train()  # dropout in the unfrozen layers, as in BERT's pretraining
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="mlm head", disable=not progress)
    for step in bar:
        for g in opt.param_groups:  # warmup, then linear decay to 10%
            g["lr"] = cfg.lr * min(1.0, (step + 1) / 20) * (0.1 + 0.9 * (1 - step / cfg.steps))
        if k:
            idx = torch.randint(len(hidden), (rows_per_step,), generator=gen)
            h, lab = hidden[idx], labels[idx]  # (R, T, C), (R, T)
            for layer in model.bert.encoder.layer[n_layers - k:]:
                h = layer(h)  # no padding in these rows: no attention mask needed
            where = lab != -100
            logits, target = model.cls(h[where][None])[0], lab[where]  # (P, vocab), (P,)
        else:
            idx = torch.randint(len(labels), (cfg.positions_per_step,), generator=gen)
            logits, target = model.cls(hidden[idx][None])[0], labels[idx]  # (P, vocab), (P,)
        loss = torch.nn.functional.cross_entropy(logits, target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    trained = accuracy(model.eval(), tokenizer, eval_rows, cfg)
    report = {"format": 1, "config": asdict(cfg), "head_train_seconds": round(time.perf_counter() - t0, 1),
              "cached_masked_tokens": int((labels != -100).sum()),
              "params": sum(p.numel() for p in params), "held_out_rows": len(eval_rows),
              "accuracy": {"trained_head": trained, "random_head": random_head}}
    out = Path(out)
    write_bytes(out, save({n: p.detach().contiguous() for n, p in head_params(model, k).items()}))
    write_text(out.with_suffix(".json"), json.dumps(report, indent=2))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description="Train the MLM head of the bundled MiniLM (minilm-l6-mlm).")
    parser.add_argument("--steps", type=int, default=MLMConfig.steps)
    parser.add_argument("--out", default=str(HEAD_PATH))
    parser.add_argument("--unfreeze-layers", type=int, default=0,
                        help="also train the top N encoder layers (saved with the head, ~7 MB each)")
    args = parser.parse_args()
    report = train_head(MLMConfig(steps=args.steps, unfreeze_layers=args.unfreeze_layers), args.out)
    print(json.dumps(report["accuracy"], indent=2))


if __name__ == "__main__":
    main()
