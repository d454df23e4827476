"""The training loop for the minimal GPT, on accelerate.

nanoGPT's loop with a production trainer's guard rails: AdamW with a cosine schedule and warmup,
gradient accumulation and clipping, mixed precision where it helps (bf16 on GPUs; fp32 on CPUs,
where bf16 is slower), periodic evaluation, atomic checkpoints (``last`` and ``best``), exact resume,
a NaN/inf guard, a progress bar with loss, tokens/s and ETA, and a loss-curve PNG beside the
checkpoints. ``accelerate launch`` runs the same code on several GPUs.

    llmapp train --data ../shared/data/tinyshakespeare.txt --preset shakespeare-char-cpu --out runs/shakespeare
    llmapp train --data ... --out runs/shakespeare --resume          # continue exactly where it stopped
    accelerate launch -m llmapp.cli train --data ... --preset shakespeare-char
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmapp.core.errors import LLMAppError
from llmapp.core.files import write_text
from llmapp.train import checkpoint
from llmapp.train.checks import check_train_config

log = logging.getLogger(__name__)

EVAL_TOKENS_PER_PASS = 8192  # evaluation batches are stacked up to this many tokens per forward pass


@dataclass
class TrainConfig:
    """Everything about one training run; saved with every checkpoint."""

    data: str = ""  # a text/JSONL file (tokenized into OUT/data) or a folder prepared by llmapp.train.data
    out_dir: str = "runs/gpt"
    tokenizer: str = "char"  # "char", or a registry name / path of a Hugging Face tokenizer
    model_type: str = "gpt"  # "gpt"; or the baselines "lstm" and "markov" (llmapp.train.baselines)
    # model shape (see GPTConfig)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0  # 0 with few iterations; 0.2 when a long run on a small corpus overfits
    bias: bool = True  # GPT-2 layout, needed by `llmapp export`
    # optimisation
    batch_size: int = 12
    grad_accum: int = 1  # micro-batches per step: a bigger effective batch in the same memory
    max_iters: int = 2000
    lr: float = 1e-3  # small models tolerate a high peak learning rate
    min_lr: float = 1e-4  # the cosine decays to lr/10, as in Chinchilla
    warmup_iters: int = 100
    lr_decay_iters: int = 0  # 0 = max_iters
    weight_decay: float = 0.1  # on matrices only; never on biases, norms or embeddings' positions
    beta1: float = 0.9
    beta2: float = 0.99  # a bit higher than 0.95 because batches are small (nanoGPT)
    grad_clip: float = 1.0  # 0 disables
    # evaluation, logging, checkpoints
    eval_interval: int = 250
    eval_iters: int = 20  # batches per split per evaluation
    log_interval: int = 10
    seed: int = 1337
    mixed_precision: str = "auto"  # auto: bf16 on CUDA, none on CPU (bf16 is slower on these CPUs)
    compile: bool = False  # torch.compile: worth it on GPUs; its compile time outweighs short CPU runs
    threads: int = 0  # CPU threads; 0 = torch's default (one per core)

    def __post_init__(self) -> None:
        check_train_config(self)  # every way in (presets, --set, --config, resume) is checked here


PRESETS: dict[str, dict[str, Any]] = {
    # nanoGPT's CPU recipe for shakespeare_char: val loss ~1.88 in a few minutes on a laptop.
    "shakespeare-char-cpu": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, max_iters=2000,
                                 lr_decay_iters=2000, dropout=0.0, lr=1e-3, eval_iters=20),
    # nanoGPT's GPU recipe: a "baby GPT" of 10.7M parameters, val loss ~1.47.
    "shakespeare-char": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64, max_iters=5000,
                             lr_decay_iters=5000, dropout=0.2, lr=1e-3, eval_iters=200, warmup_iters=100),
    # seconds, for smoke tests and CI
    "tiny": dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=8, max_iters=50, lr_decay_iters=50,
                 warmup_iters=5, eval_interval=25, eval_iters=4, log_interval=5),
}


def preset(name: str) -> TrainConfig:
    """A TrainConfig from a named preset; an unknown name lists the valid ones."""
    if name not in PRESETS:
        raise LLMAppError(f"unknown preset {name!r}; use one of: {', '.join(PRESETS)}")
    return TrainConfig(**PRESETS[name])


def lr_at(cfg: TrainConfig, it: int) -> float:
    """Linear warmup, then cosine decay to ``min_lr`` at ``lr_decay_iters``."""
    decay = cfg.lr_decay_iters or cfg.max_iters
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / (cfg.warmup_iters + 1)
    if it > decay:
        return cfg.min_lr
    ratio = (it - cfg.warmup_iters) / max(1, decay - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    best_val: float
    final_val: float
    seconds: float
    tokens_per_s: float
    history: dict = field(repr=False, default_factory=dict)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True,
          on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train a GPT as ``cfg`` says; checkpoints go to ``cfg.out_dir``/last and /best.

    Args:
        cfg: the run's configuration.
        resume: continue from ``out_dir/last`` (model, optimizer, RNG and step), exactly.
        progress: show a progress bar.
        on_step: called after each optimizer step with (step, loss); used by tests and benchmarks.

    Returns:
        A TrainResult. Ctrl-C saves ``last`` at the current step before re-raising.

    Raises:
        LLMAppError: bad data, an incompatible checkpoint, or a non-finite loss (the last good
            checkpoint is kept).
    """
    import torch
    from accelerate import Accelerator

    from llmapp.train.data import Dataset, get_batch, prepare

    out = Path(cfg.out_dir)
    if out.exists() and not out.is_dir():
        raise LLMAppError(f"--out {out} is a file; pick a folder for the run (nothing was written)")
    ds = _dataset(cfg, out, Dataset, prepare)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    mp = cfg.mixed_precision if cfg.mixed_precision != "auto" else ("bf16" if torch.cuda.is_available() else "no")
    acc = Accelerator(mixed_precision=mp, cpu=not torch.cuda.is_available())
    torch.manual_seed(cfg.seed)
    model, mcfg = build_model(cfg, ds.meta["vocab_size"])
    opt = _optimizer(model, cfg, acc.device)
    # Batch sampling only, so evaluation does not shift it; one stream per process under accelerate launch.
    gen = torch.Generator().manual_seed(cfg.seed + acc.process_index)
    step, best_val, history = 0, float("inf"), {"train_steps": [], "train_loss": [], "evals": []}
    if resume:
        step, best_val, history = _restore(out, model, opt, gen, mcfg)
        if step >= cfg.max_iters:
            raise LLMAppError(f"the run in {out} already finished at step {step}; to train on, raise max_iters "
                              f"(--set max_iters={2 * step} --set lr_decay_iters={2 * step})")
        if acc.process_index:  # the checkpoint holds the main process's stream; the others start fresh ones
            gen.manual_seed(cfg.seed + acc.process_index + 1_000_003 * step)
    model, opt = acc.prepare(model, opt)
    if cfg.compile:
        model = torch.compile(model)
    train_ids, val_ids = ds.split("train"), ds.split("val")
    for split, ids in (("train", train_ids), ("validation", val_ids)):
        if len(ids) <= cfg.block_size:
            raise LLMAppError(f"the {split} split has {len(ids)} tokens, fewer than one block of {cfg.block_size}+1; "
                              "use more data or a smaller block_size (--set block_size=...)")
    config = checkpoint.config_dict(cfg, mcfg, ds.meta["tokenizer"])
    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum

    def evaluate() -> dict:
        model.eval()
        eval_gen = torch.Generator().manual_seed(cfg.seed + 1)  # the same batches every time: comparable
        losses = {}
        chunk = max(1, EVAL_TOKENS_PER_PASS // (cfg.batch_size * cfg.block_size))  # batches per forward pass
        with torch.inference_mode():
            for name, ids in (("train", train_ids), ("val", val_ids)):
                total = 0.0
                # nanoGPT's estimate (the mean over eval_iters random batches), computed several batches
                # per forward pass: bigger matmuls and fewer calls make evaluation ~2x cheaper on CPUs.
                for start in range(0, cfg.eval_iters, chunk):
                    n = min(chunk, cfg.eval_iters - start)
                    xs, ys = zip(*(get_batch(ids, cfg.block_size, cfg.batch_size, eval_gen, acc.device)
                                   for _ in range(n)), strict=True)
                    with acc.autocast():
                        total += model(torch.cat(xs), torch.cat(ys))[1].item() * n  # (n*B, T) in one pass
                losses[name] = total / cfg.eval_iters
        model.train()
        return losses

    def save(tag: str) -> None:
        if not acc.is_main_process:  # the weights are the same in every process: one writer
            return
        state = {"optimizer": opt.state_dict(), "step": step, "best_val": best_val,
                 "torch_rng": torch.get_rng_state(), "batch_rng": gen.get_state()}
        checkpoint.save(out / tag, acc.unwrap_model(model), state, config, history)

    def evaluate_and_save() -> None:
        nonlocal best_val
        ev = evaluate()
        history["evals"].append({"step": step, "train": ev["train"], "val": ev["val"]})
        if ev["val"] < best_val:
            best_val = ev["val"]
            save("best")
        save("last")
        if acc.is_main_process:
            checkpoint.plot_losses(history, out / "loss.png")  # once per evaluation: a plot costs ~0.2 s

    bar = _progress(progress and acc.is_main_process, cfg.max_iters, step)
    t0, start_step, loss_value = time.perf_counter(), step, float("nan")
    model.train()
    stop = _StopRequest()
    try:
        while step < cfg.max_iters:
            if stop.requested:  # Ctrl-C, honoured between steps: the saved state is exactly a step's
                raise KeyboardInterrupt
            if step % cfg.eval_interval == 0 and step > start_step:
                evaluate_and_save()
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, step)
            for _ in range(cfg.grad_accum):
                x, y = get_batch(train_ids, cfg.block_size, cfg.batch_size, gen, acc.device)
                with acc.autocast():
                    loss = model(x, y)[1] / cfg.grad_accum
                acc.backward(loss)
            loss_value = loss.item() * cfg.grad_accum
            if not math.isfinite(loss_value):
                raise LLMAppError(f"loss became {loss_value} at step {step}: stopped; the last good checkpoint is in "
                                  f"{out / 'last'}; lower lr (now {cfg.lr}) or keep grad_clip on, then --resume")
            if cfg.grad_clip:
                acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            history["train_steps"].append(step)
            history["train_loss"].append(loss_value)
            step += 1
            if on_step:
                on_step(step, loss_value)
            if bar is not None and (step % cfg.log_interval == 0 or step == cfg.max_iters):
                rate = (step - start_step) * tokens_per_step / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{loss_value:.4f}", tok_s=f"{rate:,.0f}", refresh=False)
                bar.update(step - bar.n)
        evaluate_and_save()
    except KeyboardInterrupt:
        if step > start_step and not stop.forced:  # a second Ctrl-C may land mid-step: keep the older save
            save("last")  # every finished step is kept; --resume continues from here
            if acc.is_main_process:
                checkpoint.plot_losses(history, out / "loss.png")
            log.warning("interrupted at step %d; saved %s (resume with --resume)", step, out / "last")
        raise
    finally:
        stop.restore()
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    return TrainResult(out, step, best_val, history["evals"][-1]["val"], seconds,
                       (step - start_step) * tokens_per_step / max(seconds, 1e-9), history)


def build_model(cfg: TrainConfig, vocab_size: int) -> tuple[Any, Any]:
    """The model a run trains, and its config: the GPT, or the character LSTM baseline."""
    if cfg.model_type == "gpt":
        from llmapp.train.gpt import GPT, GPTConfig

        mcfg = GPTConfig(vocab_size=vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer,
                         n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=cfg.dropout, bias=cfg.bias)
        return GPT(mcfg), mcfg
    if cfg.model_type == "lstm":
        from llmapp.train.baselines import CharLSTM, LSTMConfig

        mcfg = LSTMConfig(vocab_size=vocab_size, block_size=cfg.block_size, n_layer=min(cfg.n_layer, 2),
                          n_embd=2 * cfg.n_embd, dropout=cfg.dropout)
        return CharLSTM(mcfg), mcfg
    raise LLMAppError(f"model_type {cfg.model_type!r} is not trained by gradient descent here; use gpt or lstm "
                      "(markov is fitted by `llmapp train --set model_type=markov`)")


def _dataset(cfg: TrainConfig, out: Path, Dataset: Any, prepare: Any) -> Any:
    """The prepared data for a run: reuse ``OUT/data`` when it was made from the same file and tokenizer."""
    src = Path(cfg.data)
    if not cfg.data:
        raise LLMAppError("no training data given; pass --data FILE (text or JSONL)")
    if src.is_dir():
        return Dataset.load(src)
    folder = out / "data"
    try:
        ds = Dataset.load(folder)
        tok = ds.meta["tokenizer"]
        same_tok = tok.get("type") == "char" if cfg.tokenizer == "char" else tok.get("name") == cfg.tokenizer
        if ds.meta["source"] == str(src) and same_tok and ds.meta.get("mtime") == src.stat().st_mtime:
            return ds
    except (LLMAppError, OSError, KeyError):
        pass
    ds = prepare(src, folder, cfg.tokenizer)
    ds.meta["mtime"] = src.stat().st_mtime
    write_text(folder / "meta.json", json.dumps(ds.meta, indent=2))
    return ds


def _optimizer(model: Any, cfg: TrainConfig, device: Any) -> Any:
    """AdamW with weight decay on matrices only; the fused kernel where torch has one."""
    import torch

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def _restore(out: Path, model: Any, opt: Any, gen: Any, mcfg: Any) -> tuple[int, float, dict]:
    """Load ``out/last`` into the fresh model, optimizer and generator; refuse a different model shape."""
    import torch

    saved = checkpoint.read_config(out / "last")
    if saved["model"] != asdict(mcfg):
        diff = {k: (v, asdict(mcfg).get(k)) for k, v in saved["model"].items() if asdict(mcfg).get(k) != v}
        raise LLMAppError(f"checkpoint in {out / 'last'} is from a different model config {diff} (saved, now); "
                          "use the same --preset/--set, or a new --out")
    state = checkpoint.load_state(out / "last")
    folder = checkpoint.find(out / "last")
    checkpoint.load_weights_into(model, folder / "model.safetensors")
    history = checkpoint.load_history(out / "last")
    try:
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        gen.set_state(state["batch_rng"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise LLMAppError(f"{folder / 'state.pt'}: the optimizer or RNG state does not fit this model ({exc}); "
                          f"{checkpoint.DAMAGED_FIX}") from None
    return int(state["step"]), float(state["best_val"]), history


class _StopRequest:
    """The first Ctrl-C asks the loop to stop after the current step (and save it); a second stops at once.

    Stopping between steps is what makes resume exact: a KeyboardInterrupt raised inside a step could
    land after the optimizer update and before the step counter, and the checkpoint would repeat it.
    """

    def __init__(self) -> None:
        import signal
        import threading

        self.requested = self.forced = False
        self._old = None
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            self._old = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stopping after this step and saving it (Ctrl-C again to stop at once)")

    def restore(self) -> None:
        import signal

        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


def _progress(enabled: bool, total: int, initial: int) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)


def estimate_mfu(model_cfg: Any, params: int, tokens_per_s: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: (6N + 12·L·d·T) FLOPs per token (PaLM appendix B) over the peak."""
    flops_per_token = 6 * params + 12 * model_cfg.n_layer * model_cfg.n_embd * model_cfg.block_size
    return flops_per_token * tokens_per_s / peak_flops
