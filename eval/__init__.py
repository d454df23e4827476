"""The evaluation harness and benchmark suite.

    llmapp eval perplexity rag-qa --model smollm2-135m-instruct --out runs/demo
    llmapp bench --quick

Modules:
    metrics.py     the metrics (EM, F1, hit@k, recall@k, MRR, nDCG, ROUGE, distinct-n, perplexity ...)
    baselines.py   n-gram, lead-k and random baselines that give each table context
    tasks/         one module per task, registered in tasks.TASKS
    harness.py     runs tasks over models -> results.json, report.md and plots; cached and resumable
    bench.py       the benchmark registry and runner -> one JSON and one Markdown table
"""
