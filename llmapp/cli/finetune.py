"""``llmapp finetune``: fine-tune a Hugging Face causal LM (full or LoRA) on text or chat JSONL, or
train the MLM head of the bundled MiniLM (``--objective mlm``). Both run the one training loop, with
its evaluation, checkpoints, Ctrl-C and ``--resume``.

    llmapp finetune --model smollm2-135m-instruct --data eval/data/chat-sample.jsonl --out runs/ft --lora
    llmapp finetune --objective mlm --out runs/mlm --set max_iters=200
"""

from __future__ import annotations

import click

OBJECTIVES = ("causal", "mlm")  # next-token loss on a causal LM; the masked-LM head of MiniLM


@click.command()
@click.option("--objective", type=click.Choice(OBJECTIVES), default="causal", show_default=True,
              help="causal: a causal LM on your data; mlm: the MLM head of the bundled MiniLM (minilm-l6-mlm).")
@click.option("--model", default=None, show_default="smollm2-135m-instruct",
              help="Registry name, local HF directory, .gguf file or hub id (causal only).")
@click.option("--data", default=None, type=click.Path(),
              help="Text, JSONL with 'text', or chat JSONL with 'messages' (mlm: optional, text only).")
@click.option("--out", required=True, type=click.Path(), help="Folder for the trained model (a plain HF directory).")
@click.option("--lora", is_flag=True, help="Train LoRA adapters (peft) and merge them on save (causal only).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="A config field, e.g. --set max_iters=200 --set lr=1e-4 --set lora_targets=q_proj,v_proj "
                   "(mlm: --set unfreeze_layers=1).")
@click.option("--resume", is_flag=True, help="Continue exactly from OUT/last (weights, optimizer, RNG, step).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def finetune(objective: str, model: str | None, data: str | None, out: str, lora: bool, overrides: tuple[str, ...],
             resume: bool, quiet: bool) -> None:
    """Fine-tune a Hugging Face causal LM (full or LoRA) on text or chat JSONL, or train the MLM head.

    Chat JSONL uses the model's chat template with loss on assistant tokens only. The output loads
    anywhere a model name does. Evaluation on held-out examples saves OUT/last and OUT/best every
    eval_interval steps; Ctrl-C saves the current step, and --resume continues it exactly.

    \b
    Examples:
      llmapp finetune --model smollm2-135m-instruct --data eval/data/chat-sample.jsonl --out runs/ft --lora
      llmapp finetune --data notes.txt --out runs/ft-full --set max_iters=50 --set batch_size=2
      llmapp finetune --data notes.txt --out runs/ft-full --set max_iters=50 --resume
      llmapp chat --model runs/ft
      llmapp finetune --objective mlm --out runs/mlm --set max_iters=200 --set unfreeze_layers=1
    """
    from llmapp.core.errors import LLMAppError

    if objective == "mlm":
        if lora or model:
            raise LLMAppError(f"{'--lora' if lora else '--model'} is for --objective causal; the MLM objective "
                              "trains the head of the bundled MiniLM")
        _mlm(data, out, overrides, resume, quiet)
        return
    if not data:
        raise LLMAppError("no training data; pass --data FILE (text, JSONL with 'text', or chat JSONL)")
    import dataclasses

    from llmapp.train.finetune import FinetuneConfig
    from llmapp.train.finetune import finetune as run

    cfg = FinetuneConfig(data=data, out_dir=out, lora=lora)
    cfg = _configured(dataclasses.replace(cfg, model=model) if model else cfg, overrides)
    r = run(cfg, progress=not quiet, resume=resume)
    click.echo(f"done: {r.steps} steps in {r.seconds:.1f} s ({r.tokens_per_s:,.0f} tokens/s); loss {r.first_loss:.3f} -> "
               f"{r.last_loss:.3f}, held-out {r.val_loss:.3f}; trained {r.trainable_params:,} of {r.total_params:,} "
               f"parameters\nsaved {r.out_dir}; try: llmapp chat --model {r.out_dir}")


def _mlm(data: str | None, out: str, overrides: tuple[str, ...], resume: bool, quiet: bool) -> None:
    from llmapp.train.mlm import MLMConfig, train_masked_lm

    report = train_masked_lm(_configured(MLMConfig(out_dir=out, data=data or ""), overrides), not quiet, resume)
    acc = report["accuracy"]
    click.echo(f"done: {report['config']['max_iters']} steps in {report['head_train_seconds']:.1f} s; held-out top-5 "
               f"{acc['trained_head']['top5']:.3f} (random head {acc['random_head']['top5']:.3f}); trained "
               f"{report['params']:,} parameters\nsaved {out} and its head {report['head']}; try: "
               f"python -c \"from llmapp import load_masked_lm; print(load_masked_lm('{out}').fill_mask('Hello [MASK].'))\"")


def _configured(cfg, overrides: tuple[str, ...]):
    """``cfg`` with the ``--set`` overrides applied; a bad one is a one-line error."""
    from llmapp.core.config import apply_overrides
    from llmapp.core.errors import LLMAppError

    try:
        return apply_overrides(cfg, list(overrides))
    except ValueError as exc:
        raise LLMAppError(str(exc)) from None
