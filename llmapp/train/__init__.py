"""Training: the model types, their data, the one training loop and its objectives, checkpoints.

Bottom up: ``config`` (the loop's settings and the one learning-rate schedule), ``data`` (tokenizers,
prepared corpora), ``gpt`` and ``baselines`` (the models), ``registry`` (the trainable model types:
constructor, checkpoint loader, ``rolling_nll`` scorer, sampler), ``checkpoint`` (the on-disk format,
loading through the registry, export), ``trainer`` (the one loop) and its objectives: ``pretrain``
(next-token prediction for any model type), ``finetune`` (+ ``examples``: Hugging Face causal LMs,
full or LoRA) and ``mlm`` (the MLM head of the bundled MiniLM).

    llmapp train --data ../shared/data/tinyshakespeare.txt --preset shakespeare-char-cpu --out runs/shakespeare
    llmapp finetune --data eval/data/chat-sample.jsonl --out runs/ft --lora
    llmapp finetune --objective mlm --out runs/mlm
"""
