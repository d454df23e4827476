"""``llmapp train``, ``llmapp sample`` and ``llmapp export``: the minimal GPT from data to Hugging Face.

    llmapp train --data ../shared/data/tinyshakespeare.txt --preset shakespeare-char-cpu --out runs/shakespeare
    llmapp sample --ckpt runs/shakespeare --prompt "ROMEO:" --max-tokens 300
    llmapp export --ckpt runs/shakespeare/best --out runs/shakespeare-hf
    llmapp chat --model runs/shakespeare-hf
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.option("--data", required=True, type=click.Path(), help="Text or JSONL file (or a prepared data folder).")
@click.option("--preset", default=None, help="Named config: shakespeare-char-cpu, shakespeare-char, tiny.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON file of TrainConfig fields (applied after --preset).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one field, e.g. --set max_iters=500 --set lr=3e-4 (repeatable).")
@click.option("--out", default=None, help="Run folder for checkpoints, loss.png and data (default: runs/<preset>).")
@click.option("--resume", is_flag=True, help="Continue exactly from OUT/last (model, optimizer, RNG, step).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(data: str, preset: str | None, config_file: str | None, overrides: tuple[str, ...], out: str | None,
          resume: bool, quiet: bool) -> None:
    """Train the minimal GPT (or a baseline) on a text file.

    Checkpoints go to OUT/last and OUT/best (safetensors + JSON), with OUT/loss.png. Ctrl-C saves the
    current step; --resume continues it exactly. --set model_type=lstm or markov trains a baseline.

    \b
    Examples:
      llmapp train --data ../shared/data/tinyshakespeare.txt --preset shakespeare-char-cpu --out runs/shakespeare
      llmapp train --data notes.txt --preset tiny --set tokenizer=smollm2-135m-instruct --set max_iters=200
      llmapp train --data ../shared/data/tinyshakespeare.txt --out runs/shakespeare --resume
    """
    from llmapp.core.config import apply_overrides
    from llmapp.core.errors import LLMAppError
    from llmapp.train.trainer import TrainConfig
    from llmapp.train.trainer import preset as preset_config
    from llmapp.train.trainer import train as run

    cfg = preset_config(preset) if preset else TrainConfig()
    try:
        if config_file:
            values = json.loads(Path(config_file).read_text(encoding="utf-8"))
            if not isinstance(values, dict):
                raise LLMAppError(f"{config_file} must hold a JSON object of TrainConfig fields, e.g. "
                                  '{"max_iters": 500}')
            cfg = apply_overrides(cfg, values)
        run_dir = out or f"runs/{preset or 'gpt'}"
        cfg = apply_overrides(cfg, list(overrides) + [f"data={data}", f"out_dir={run_dir}"])
    except (ValueError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        where = f"{config_file}: " if config_file and not isinstance(exc, LLMAppError) else ""
        raise LLMAppError(f"{where}{' '.join(str(exc).split())[:300]}") from None
    result = run(cfg, resume=resume, progress=not quiet)
    click.echo(result.summary())
    if result.steps:
        click.echo(f"checkpoints: {result.out_dir}/best, {result.out_dir}/last; curve: {result.out_dir}/loss.png")


@click.command()
@click.option("--ckpt", required=True, type=click.Path(), help="Run folder or checkpoint folder.")
@click.option("--prompt", default="\n", show_default=True, help="Text to continue.")
@click.option("--max-tokens", default=300, show_default=True, help="Tokens to generate.")
@click.option("--temperature", default=0.8, show_default=True, help="0 = greedy.")
@click.option("--top-k", default=200, show_default=True, help="Sample among the k likeliest tokens (0 = all).")
@click.option("--top-p", default=1.0, show_default=True, help="Nucleus sampling mass.")
@click.option("--seed", default=None, type=int, help="The same seed gives the same text.")
@click.option("-n", "--num-samples", default=1, show_default=True, type=click.IntRange(1, 1000),
              help="Independent samples to print.")
def sample(ckpt: str, prompt: str, max_tokens: int, temperature: float, top_k: int, top_p: float,
           seed: int | None, num_samples: int) -> None:
    """Sample text from a training checkpoint (GPT or baseline).

    \b
    Examples:
      llmapp sample --ckpt runs/shakespeare --prompt "ROMEO:" --seed 1
      llmapp sample --ckpt runs/shakespeare/best -n 3 --max-tokens 100 --temperature 0.7
    """
    from llmapp.core.config import GenerationConfig
    from llmapp.core.errors import LLMAppError
    from llmapp.train import checkpoint

    # The same checks as every other decoding path: max_tokens >= 1, 0 <= temperature <= 5, a seed in range...
    GenerationConfig(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    if not prompt:
        raise LLMAppError("empty prompt; pass --prompt TEXT (the default is a newline)")
    model = checkpoint.load(ckpt)  # through the model type recorded in the checkpoint
    for text in model.sample(prompt, max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                             n=num_samples):
        click.echo(text + ("\n---------------" if num_samples > 1 else ""))


@click.command()
@click.option("--ckpt", required=True, type=click.Path(), help="Run folder or checkpoint folder (e.g. RUN/best).")
@click.option("--out", required=True, type=click.Path(), help="Folder for the Hugging Face model.")
def export(ckpt: str, out: str) -> None:
    """Export a GPT checkpoint as a Hugging Face model directory (GPT2LMHeadModel + tokenizer).

    Model types that have a Hugging Face form export (``exportable`` in llmapp.train.registry); the
    baselines are scored and sampled in place.

    The result works everywhere a model name does: load_chat_model(OUT), llmapp chat --model OUT,
    llmapp eval --model OUT, transformers' AutoModelForCausalLM.

    \b
    Example:
      llmapp export --ckpt runs/shakespeare/best --out runs/shakespeare-hf
      llmapp chat --model runs/shakespeare-hf
    """
    from llmapp.train.checkpoint import export_hf

    click.echo(f"exported to {export_hf(ckpt, out)}")
