"""The one training loop, on accelerate: pretraining, full and LoRA fine-tuning, and the MLM head.

An :class:`Objective` brings its model, its batches, its loss and its evaluation; the loop brings the
rest, the same for all of them: AdamW with the one warmup + cosine schedule (``lr_at``), gradient
accumulation and clipping, mixed precision where it helps (bf16 on GPUs; fp32 on CPUs, where bf16 is
slower), periodic evaluation, atomic checkpoints (``last`` and ``best``), exact resume, Ctrl-C that
saves the current step, a NaN/inf guard, a progress bar with loss and tokens/s, and a loss-curve PNG
beside the checkpoints. ``accelerate launch`` runs the same code on several GPUs.

The objectives: pretraining a model type of ``llmapp.train.registry`` (``llmapp.train.pretrain``,
through :func:`train`), fine-tuning a Hugging Face causal LM (``llmapp.train.finetune``) and the MLM
head of the bundled MiniLM (``llmapp.train.mlm``).

    llmapp train --data ../shared/data/tinyshakespeare.txt --preset shakespeare-char-cpu --out runs/shakespeare
    llmapp train --data ... --out runs/shakespeare --resume          # continue exactly where it stopped
    llmapp finetune --data eval/data/chat-sample.jsonl --out runs/ft --lora --resume
    accelerate launch -m llmapp.cli train --data ... --preset shakespeare-char
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llmapp.core.errors import LLMAppError
from llmapp.train import checkpoint, pretrain, registry
from llmapp.train.checks import DAMAGED_FIX
from llmapp.train.config import PRESETS, LoopConfig, TrainConfig, lr_at, preset

__all__ = ["PRESETS", "LoopConfig", "Objective", "TrainConfig", "TrainResult", "estimate_mfu", "lr_at", "preset",
           "run", "train"]

log = logging.getLogger(__name__)


class Objective(Protocol):
    """What the loop trains. Only the model's parameters with ``requires_grad`` are optimized."""

    name: str  # "pretrain", "finetune", "mlm": recorded in config.json, so resume refuses another's checkpoint

    def build(self) -> Any:
        """Load data and build the model (an ``nn.Module``); called after the loop seeds torch."""

    def batch(self, generator: Any, device: Any) -> Any:
        """One micro-batch, drawn with the loop's generator (whose state checkpoints keep)."""

    def loss(self, model: Any, batch: Any) -> Any:
        """The mean loss of a micro-batch, a scalar tensor; ``model`` is the one accelerate prepared."""

    def tokens(self, batch: Any) -> int:
        """Tokens (or positions) the micro-batch trains on, for tokens/s."""

    def evaluate(self, model: Any, device: Any) -> dict[str, float]:
        """``{"val": loss}`` (and ``"train"`` where it helps), the same batches every call; no gradients."""

    def config(self) -> dict:
        """What config.json holds: ``train`` (the run's config), ``model`` (compared on resume), ..."""

    def save_weights(self, model: Any, folder: Path) -> None:
        """Write the trained weights into a checkpoint folder being built."""

    def load_weights(self, model: Any, folder: Path) -> None:
        """Load the weights :meth:`save_weights` wrote into the freshly built model."""


@dataclass
class TrainResult:
    """What a run did. ``tokens_per_s`` counts training steps only (evaluations and checkpoints excluded)."""

    out_dir: Path
    steps: int
    best_val: float
    final_val: float
    seconds: float  # the whole loop, evaluations and checkpoints included
    tokens_per_s: float
    history: dict = field(repr=False, default_factory=dict)
    model: Any = field(repr=False, default=None)  # the trained model (unwrapped), for the objective to export

    def summary(self) -> str:
        """One line for the command line."""
        if not self.steps:
            return f"fitted; val loss {self.final_val:.4f}; checkpoint: {self.out_dir}/last"
        return (f"done: {self.steps} steps in {self.seconds:.1f} s ({self.tokens_per_s:,.0f} tokens/s); "
                f"val loss {self.final_val:.4f} (best {self.best_val:.4f})")


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True,
          on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Pretrain the model type ``cfg.model_type`` as ``cfg`` says; checkpoints go to ``cfg.out_dir``/last and /best.

    Args:
        cfg: the run's configuration.
        resume: continue from ``out_dir/last`` (model, optimizer, RNG and step), exactly.
        progress: show a progress bar.
        on_step: called after each optimizer step with (step, loss); used by tests and benchmarks.

    Returns:
        A TrainResult. Ctrl-C saves ``last`` at the current step before re-raising.

    Raises:
        LLMAppError: bad data, an unknown model type, an incompatible checkpoint, or a non-finite loss
            (the last good checkpoint is kept).
    """
    mtype = registry.get(cfg.model_type)
    ds = pretrain.prepared_dataset(cfg)
    if mtype.fitted:  # counted, not trained: no loop
        t0 = time.perf_counter()
        folder, val = pretrain.fit(cfg, ds, mtype)
        history = checkpoint.load_history(folder)
        return TrainResult(folder.parent, 0, val, val, time.perf_counter() - t0, 0.0, history)
    return run(pretrain.LanguageModelling(cfg, ds, mtype), cfg, resume, progress, on_step)


def run(objective: Objective, cfg: LoopConfig, resume: bool = False, progress: bool = True,
        on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train ``objective`` with the loop settings of ``cfg``; checkpoints go to ``cfg.out_dir``/last and /best.

    Args:
        objective: the model, batches, loss and evaluation.
        cfg: the schedule, evaluation cadence and precision (any objective's config).
        resume: continue from ``out_dir/last`` (weights, optimizer, RNG and step), exactly.
        progress: show a progress bar.
        on_step: called after each optimizer step with (step, loss).

    Returns:
        A TrainResult holding the trained model. Ctrl-C saves ``last`` at the current step, then re-raises.
    """
    return _Run(objective, cfg, progress, on_step).fit(resume)


class _Run:
    """One run of the loop: its accelerator, optimizer, generator, step and history."""

    def __init__(self, objective: Objective, cfg: LoopConfig, progress: bool,
                 on_step: Callable[[int, float], None] | None) -> None:
        import torch
        from accelerate import Accelerator

        self.objective, self.cfg, self.on_step = objective, cfg, on_step
        self.out = Path(cfg.out_dir)
        if self.out.exists() and not self.out.is_dir():
            raise LLMAppError(f"--out {self.out} is a file; pick a folder for the run (nothing was written)")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        mp = cfg.mixed_precision if cfg.mixed_precision != "auto" else ("bf16" if torch.cuda.is_available() else "no")
        self.acc = Accelerator(mixed_precision=mp, cpu=not torch.cuda.is_available())
        torch.manual_seed(cfg.seed)
        self.model = objective.build()
        self.opt = _optimizer(self.model, cfg)
        # Batch sampling only, so evaluation does not shift it; one stream per process under accelerate launch.
        self.gen = torch.Generator().manual_seed(cfg.seed + self.acc.process_index)
        self.step, self.best_val = 0, float("inf")
        self.history: dict = {"train_steps": [], "train_loss": [], "evals": []}
        self.config = {"objective": objective.name, **objective.config()}
        self.progress = progress and self.acc.is_main_process
        self.train_seconds = 0.0  # time in optimizer steps, for tokens/s
        self.tokens = 0

    def fit(self, resume: bool) -> TrainResult:
        import torch

        if resume:
            self._restore()
        self.model, self.opt = self.acc.prepare(self.model, self.opt)
        if self.cfg.compile:
            self.model = torch.compile(self.model)
        bar = _progress(self.progress, self.cfg.max_iters, self.step, self.objective.name)
        t0, start_step = time.perf_counter(), self.step
        self.model.train()
        stop = _StopRequest()
        try:
            while self.step < self.cfg.max_iters:
                if stop.requested:  # Ctrl-C, honoured between steps: the saved state is exactly a step's
                    raise KeyboardInterrupt
                if self.cfg.eval_interval and self.step % self.cfg.eval_interval == 0 and self.step > start_step:
                    self._evaluate_and_save()
                loss = self._train_step()
                if bar is not None and (self.step % self.cfg.log_interval == 0 or self.step == self.cfg.max_iters):
                    rate = self.tokens / max(self.train_seconds, 1e-9)
                    bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{rate:,.0f}", refresh=False)
                    bar.update(self.step - bar.n)
            self._evaluate_and_save()
        except KeyboardInterrupt:
            if self.step > start_step and not stop.forced:  # a second Ctrl-C may land mid-step: keep the older save
                self._save("last")  # every finished step is kept; --resume continues from here
                self._plot()
                log.warning("interrupted at step %d; saved %s (resume with --resume)", self.step, self.out / "last")
            raise
        finally:
            stop.restore()
            if bar is not None:
                bar.close()
        return TrainResult(self.out, self.step, self.best_val, self.history["evals"][-1]["val"],
                           time.perf_counter() - t0, self.tokens / max(self.train_seconds, 1e-9), self.history,
                           self.acc.unwrap_model(self.model))

    def _train_step(self) -> float:
        """One optimizer step over ``grad_accum`` micro-batches; returns its loss."""
        cfg, t0 = self.cfg, time.perf_counter()
        for group in self.opt.param_groups:
            group["lr"] = lr_at(cfg, self.step)
        for _ in range(cfg.grad_accum):
            batch = self.objective.batch(self.gen, self.acc.device)
            with self.acc.autocast():
                loss = self.objective.loss(self.model, batch) / cfg.grad_accum
            self.acc.backward(loss)
            self.tokens += self.objective.tokens(batch)
        value = loss.item() * cfg.grad_accum
        if not math.isfinite(value):
            raise LLMAppError(f"loss became {value} at step {self.step}: stopped; the last good checkpoint is in "
                              f"{self.out / 'last'}; lower lr (now {cfg.lr:g}) or keep grad_clip on, then --resume")
        if cfg.grad_clip:
            self.acc.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], cfg.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.train_seconds += time.perf_counter() - t0
        self.history["train_steps"].append(self.step)
        self.history["train_loss"].append(value)
        self.step += 1
        if self.on_step:
            self.on_step(self.step, value)
        return value

    def _evaluate_and_save(self) -> None:
        import torch

        self.model.eval()
        with torch.inference_mode(), self.acc.autocast():
            losses = self.objective.evaluate(self.model, self.acc.device)
        self.model.train()
        self.history["evals"].append({"step": self.step, **losses})
        improved = losses["val"] < self.best_val
        self.best_val = min(self.best_val, losses["val"])
        self._save("last")
        if improved and self.acc.is_main_process:
            checkpoint.duplicate(self.out / "last", self.out / "best")  # the same step: links, not a second write
        self._plot()  # once per evaluation: a plot costs ~0.2 s

    def _save(self, tag: str) -> None:
        import torch

        if not self.acc.is_main_process:  # the weights are the same in every process: one writer
            return
        state = {"optimizer": self.opt.state_dict(), "step": self.step, "best_val": self.best_val,
                 "torch_rng": torch.get_rng_state(), "batch_rng": self.gen.get_state()}
        model = self.acc.unwrap_model(self.model)
        checkpoint.save(self.out / tag, lambda folder: self.objective.save_weights(model, folder), state,
                        self.config, self.history)

    def _plot(self) -> None:
        if self.acc.is_main_process:
            checkpoint.plot_losses(self.history, self.out / "loss.png")

    def _restore(self) -> None:
        """Load ``out/last`` into the fresh model, optimizer and generator; refuse a different model or objective."""
        import torch

        last = self.out / "last"
        saved = checkpoint.read_config(last)
        kind = saved.get("objective", checkpoint.PRETRAIN)
        if kind != self.objective.name:
            raise LLMAppError(f"{checkpoint.find(last)} is a {kind} checkpoint, not {self.objective.name}; "
                              "use a new --out")
        now = self.config["model"]
        if saved["model"] != now:
            diff = {k: (v, now.get(k)) for k, v in saved["model"].items() if now.get(k) != v}
            raise LLMAppError(f"checkpoint in {last} is from a different model config {diff} (saved, now); "
                              "use the same --preset/--set, or a new --out")
        state = checkpoint.load_state(last)
        folder = checkpoint.find(last)
        self.objective.load_weights(self.model, folder)
        try:
            self.opt.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            self.gen.set_state(state["batch_rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise LLMAppError(f"{folder / 'state.pt'}: the optimizer or RNG state does not fit this model ({exc}); "
                              f"{DAMAGED_FIX}") from None
        self.step, self.best_val = int(state["step"]), float(state["best_val"])
        self.history = checkpoint.load_history(last)
        if self.step >= self.cfg.max_iters:
            raise LLMAppError(f"the run in {self.out} already finished at step {self.step}; to train on, raise "
                              f"max_iters (--set max_iters={2 * self.step} --set lr_decay_iters={2 * self.step})")
        if self.acc.process_index:  # the checkpoint holds the main process's stream; the others start fresh ones
            self.gen.manual_seed(self.cfg.seed + self.acc.process_index + 1_000_003 * self.step)


def _optimizer(model: Any, cfg: LoopConfig) -> Any:
    """AdamW over the trainable parameters, weight decay on matrices only; the fused kernel where torch has one."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


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


def _progress(enabled: bool, total: int, initial: int, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)


def estimate_mfu(model_cfg: Any, params: int, tokens_per_s: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: (6N + 12·L·d·T) FLOPs per token (PaLM appendix B) over the peak."""
    flops_per_token = 6 * params + 12 * model_cfg.n_layer * model_cfg.n_embd * model_cfg.block_size
    return flops_per_token * tokens_per_s / peak_flops
