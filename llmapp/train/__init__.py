"""Training: the minimal GPT, its data pipeline and trainer, checkpoints, baselines, fine-tuning, the MLM head.

    llmapp train --data ../shared/data/tinyshakespeare.txt --preset shakespeare-char-cpu --out runs/shakespeare
    llmapp finetune --data eval/data/chat-sample.jsonl --out runs/ft --lora
"""
