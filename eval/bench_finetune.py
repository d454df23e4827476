"""Benchmark: fine-tuning SmolLM2-135M on a small chat JSONL, full against LoRA, side by side.

Each variant runs in its own process, so peak RSS is its own: tokens/s (non-padding tokens through
forward and backward, per second of training steps: the closing evaluation and checkpoint are not
counted) and peak RSS for full fine-tuning and for LoRA (r=8, merged on save).

    python -m eval.bench_finetune --quick
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHAT = Path(__file__).parent / "data" / "chat-sample.jsonl"
_RUN = """
import json, resource
from llmapp.train.finetune import FinetuneConfig, finetune
r = finetune(FinetuneConfig(model={model!r}, data={data!r}, out_dir={out!r}, lora={lora}, max_iters={steps},
                            batch_size=4, warmup_iters=1, eval_iters=1), progress=False)
print(json.dumps({{"tokens_per_s": r.tokens_per_s, "seconds": r.seconds, "trainable_params": r.trainable_params,
                  "loss_first": r.first_loss, "loss_last": r.last_loss,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def bench_finetune(quick: bool = False, model: str = "smollm2-135m-instruct") -> dict:
    """Full vs LoRA fine-tuning: tokens/s, peak RSS and trainable parameters (quick: 3 steps each)."""
    steps = 3 if quick else 10
    figures: dict = {"model": model, "steps": steps, "batch_size": 4}
    with tempfile.TemporaryDirectory(prefix="llmapp-bench-ft-") as tmp:
        for name, lora in (("full", False), ("lora", True)):
            code = _RUN.format(model=model, data=str(CHAT), out=f"{tmp}/{name}", lora=lora, steps=steps)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            figures.update({f"{name}_tokens_per_s": round(r["tokens_per_s"], 1),
                            f"{name}_peak_rss_mb": round(r["peak_rss_mb"]),
                            f"{name}_trainable_params": r["trainable_params"]})
    figures["ratio_lora_vs_full_tokens_per_s"] = round(figures["lora_tokens_per_s"] / figures["full_tokens_per_s"], 3)
    figures["ratio_lora_vs_full_peak_rss"] = round(figures["lora_peak_rss_mb"] / figures["full_peak_rss_mb"], 3)
    return figures


if __name__ == "__main__":
    print(json.dumps(bench_finetune(quick="--quick" in sys.argv), indent=2))
