"""``llmapp finetune``: fine-tune a Hugging Face causal LM (full or LoRA) on text or chat JSONL.

    llmapp finetune --model smollm2-135m-instruct --data eval/data/chat-sample.jsonl --out runs/ft --lora
"""

from __future__ import annotations

import click


@click.command()
@click.option("--model", default="smollm2-135m-instruct", show_default=True,
              help="Registry name, local HF directory, .gguf file or hub id.")
@click.option("--data", required=True, type=click.Path(), help="Text, JSONL with 'text', or chat JSONL with 'messages'.")
@click.option("--out", required=True, type=click.Path(), help="Folder for the fine-tuned model (a plain HF directory).")
@click.option("--lora", is_flag=True, help="Train LoRA adapters (peft) and merge them on save.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="FinetuneConfig field, e.g. --set max_iters=200 --set lr=1e-4 --set lora_targets=q_proj,v_proj.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def finetune(model: str, data: str, out: str, lora: bool, overrides: tuple[str, ...], quiet: bool) -> None:
    """Fine-tune a Hugging Face causal LM (full or LoRA) on text or chat JSONL.

    Chat JSONL uses the model's chat template with loss on assistant tokens only. The output loads
    anywhere a model name does.

    \b
    Examples:
      llmapp finetune --model smollm2-135m-instruct --data eval/data/chat-sample.jsonl --out runs/ft --lora
      llmapp finetune --data notes.txt --out runs/ft-full --set max_iters=50 --set batch_size=2
      llmapp chat --model runs/ft
    """
    from llmapp.core.config import apply_overrides
    from llmapp.core.errors import LLMAppError
    from llmapp.train.finetune import FinetuneConfig
    from llmapp.train.finetune import finetune as run

    try:
        cfg = apply_overrides(FinetuneConfig(model=model, data=data, out_dir=out, lora=lora), list(overrides))
    except ValueError as exc:
        raise LLMAppError(str(exc)) from None
    r = run(cfg, progress=not quiet)
    click.echo(f"done: {r.steps} steps in {r.seconds:.1f} s ({r.tokens_per_s:,.0f} tokens/s); loss {r.first_loss:.3f} -> "
               f"{r.last_loss:.3f}; trained {r.trainable_params:,} of {r.total_params:,} parameters\n"
               f"saved {r.out_dir}; try: llmapp chat --model {r.out_dir}")
