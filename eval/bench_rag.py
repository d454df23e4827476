"""RAG benchmarks and quality figures: indexing throughput, query latency at scale, HNSW recall, overhead.

``bench_rag()`` measures, side by side in one run:

- indexing chunks/s (``build_index`` end to end) / raw ``SentenceTransformer.encode`` of the same chunks
  (target >= 0.9);
- query latency p50/p95 at 10k and 100k chunks, Flat against HNSW32, and HNSW's recall@10 against
  Flat (target >= 0.95). The large stores hold real MiniLM vectors of Shakespeare chunks plus jittered
  copies of them (embedding 100k chunks on a laptop CPU takes longer than the whole bench);
- our retrieval latency / (raw query embedding + raw ``index.search``) (target <= 1.2).

``quality()`` answers eval/data/genai-qa.jsonl with vector, BM25 and hybrid retrieval and reports
retrieval hit@3, answer keyword accuracy, citation rates and abstention on unanswerable questions.

    llmapp bench rag                       # bench_rag() via eval/bench.py
    python -m eval.bench_rag --quick       # the same, 10k chunks only
    python -m eval.bench_rag --quality     # the quality table (a few minutes: it generates answers)
"""

from __future__ import annotations

import json
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from llmapp.corpora import TINY_SHAKESPEARE as SHAKESPEARE

QA = Path(__file__).parent / "data" / "genai-qa.jsonl"
JITTER = 1.0  # noise norm of the synthetic copies (~1, like the signal): 0.35 made clusters of near-ties
QUERIES = ["What did the citizens say about the corn?", "Who speaks of war and peace?", "a king who lost his crown",
           "love letters and sorrow", "the price of bread in Rome", "a murderer confesses", "banishment from Verona",
           "the duke's daughter marries", "ghosts at midnight", "a storm at sea"]


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 3)  # ms


def _shakespeare_text(chars: int) -> str:
    if SHAKESPEARE.exists():
        return SHAKESPEARE.read_text(encoding="utf-8")[:chars]
    from llmapp.corpora import (
        GENAI_NOTES as DEMO_DATA,  # an installed llmapp without the shared data: repeat the demo notes
    )

    notes = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted(DEMO_DATA.glob("*.txt")))
    return (notes * (chars // len(notes) + 1))[:chars]


def bench_indexing(chars: int) -> dict[str, Any]:
    """build_index end to end against raw encode of the very chunks it made."""
    from chains.index import build_index
    from chains.store import Store
    from llmapp import load_embeddings

    emb = load_embeddings()
    text = _shakespeare_text(chars)
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        part = len(text) // 8
        for i in range(8):
            (docs / f"part{i}.txt").write_text(text[i * part:(i + 1) * part], encoding="utf-8")
        emb.encode(["warm up"] * 64)
        t0 = time.perf_counter()
        report = build_index([docs], Path(tmp) / "store", emb)
        ours = time.perf_counter() - t0
        chunks = [d["text"] for d in Store.load(Path(tmp) / "store").docs]
    t0 = time.perf_counter()
    emb.client.encode(chunks, batch_size=emb.batch_size, normalize_embeddings=True, convert_to_numpy=True)
    raw = time.perf_counter() - t0
    return {"index_chunks": report.chunks, "index_chunks_per_s": round(report.chunks / ours, 1),
            "raw_encode_chunks_per_s": round(len(chunks) / raw, 1),
            "index_vs_raw_encode": round((report.chunks / ours) / (len(chunks) / raw), 3)}


def _store_of(vectors: np.ndarray, index_type: str, emb: Any) -> Any:
    from chains.store import Store, make_index

    docs = [{"source": f"synthetic/{i // 100}.txt", "start": 0, "end": 1, "text": f"chunk {i}"} for i in range(len(vectors))]
    manifest = {"index_type": index_type, "embedding_model": emb.model, "dimension": vectors.shape[1]}
    return Store(Path("memory"), manifest, make_index(vectors, index_type), docs, vectors, emb)


def bench_scale(sizes: list[int], base_chunks: int = 1500) -> dict[str, Any]:
    """Latency p50/p95 of Flat and HNSW32 stores of each size, HNSW recall@10, and our overhead."""
    from chains.chunking import split_text
    from chains.rag import retrieve
    from llmapp import load_embeddings
    from llmapp.core.config import RAGConfig

    emb = load_embeddings()
    pieces = [t for _, _, t in split_text(_shakespeare_text(400_000), emb.client.tokenizer, RAGConfig())][:base_chunks]
    base = emb.encode(pieces)  # real vectors; larger stores add jittered copies of them
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"base_real_chunks": len(base)}
    qvecs = emb.encode(QUERIES)
    for n in sizes:
        reps = -(-n // len(base))
        vecs = np.concatenate([base + (0 if r == 0 else JITTER) * rng.standard_normal(base.shape).astype("float32")
                               / np.sqrt(base.shape[1]) for r in range(reps)])[:n]
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        vecs = vecs.astype("float32")
        stores = {}
        for kind in ("Flat", "HNSW32"):
            t0 = time.perf_counter()
            stores[kind] = _store_of(vecs, kind, emb)
            out[f"{n}_{kind}_build_s"] = round(time.perf_counter() - t0, 2)
        for kind, store in stores.items():
            lat, raw, rv = [], [], []
            for _ in range(3):
                for q in QUERIES:
                    t0 = time.perf_counter()
                    store.search(q, 10)
                    lat.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    v = emb.client.encode([q], normalize_embeddings=True, convert_to_numpy=True)
                    store.index.search(v, 10)
                    raw.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    retrieve(store, q, RAGConfig(retrieval="vector", k=10, fetch_k=10, min_score=-1))
                    rv.append(time.perf_counter() - t0)
            out[f"{n}_{kind}_p50_ms"], out[f"{n}_{kind}_p95_ms"] = _pct(lat, 50), _pct(lat, 95)
            out[f"{n}_{kind}_raw_p50_ms"] = _pct(raw, 50)
            out[f"{n}_{kind}_search_vs_raw"] = round(statistics.median(lat) / statistics.median(raw), 3)
            out[f"{n}_{kind}_retrieve_vs_raw"] = round(statistics.median(rv) / statistics.median(raw), 3)
        _, flat_ids = stores["Flat"].index.search(qvecs, 10)
        _, hnsw_ids = stores["HNSW32"].index.search(qvecs, 10)
        out[f"{n}_HNSW32_recall_at_10"] = round(float(np.mean([len(set(a) & set(b)) / 10
                                                               for a, b in zip(flat_ids, hnsw_ids, strict=True)])), 4)
    return out


def bench_rag(quick: bool = False) -> dict[str, Any]:
    """All performance figures in one run (quick: 40 KB indexed and 10k chunks only).

    Returns:
        A flat dict of measurements; ``*_vs_raw`` are the ratios the targets refer to.
    """
    t0 = time.perf_counter()
    out = {"quick": quick}
    out.update(bench_indexing(40_000 if quick else 150_000))
    out.update(bench_scale([10_000] if quick else [10_000, 100_000]))
    out["retrieval_vs_raw"] = out["10000_Flat_search_vs_raw"]
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def quality(modes: tuple[str, ...] = ("vector", "bm25", "hybrid"), max_tokens: int = 48,
            answers: bool = True) -> dict[str, dict[str, float]]:
    """Retrieval hit@3 and answer keyword accuracy on genai-qa.jsonl, per retrieval mode.

    Returns:
        ``{mode: {"hit@3", "keyword_acc", "cited", "model_cited", "abstain_ok", "answerable", "unanswerable"}}``.
    """
    import dataclasses

    from chains.index import build_index
    from chains.rag import RAGChain, retrieve
    from chains.store import Store
    from llmapp import load_chat_model
    from llmapp.core.config import RAGConfig
    from llmapp.corpora import GENAI_NOTES as DEMO_DATA
    from prompts import load_prompt

    rows = [json.loads(line) for line in QA.read_text().splitlines() if line.strip()]
    chat = load_chat_model(max_tokens=max_tokens)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        build_index([DEMO_DATA], Path(tmp) / "s")
        store = Store.load(Path(tmp) / "s")
        for mode in modes:
            cfg = dataclasses.replace(RAGConfig(), retrieval=mode)
            hit = kw = cited = native = abstain = wrongly_abstained = 0
            for row in rows:
                sources = retrieve(store, row["question"], cfg)
                names = [Path(s.source).name for s in sources[:3]]
                if not row["answerable"]:
                    if answers or not sources:
                        abstain += not sources
                    continue
                hit += any(n in row["sources"] for n in names)
                wrongly_abstained += not sources
                if answers and sources:
                    chain = RAGChain(store, chat, cfg, True, load_prompt("rag_answer"))
                    answer = chain.invoke(row["question"])["answer"]
                    kw += sum(k.lower() in answer.lower() for k in row["keywords"]) / len(row["keywords"])
                    cited += bool(re.search(r"\[\d+\]", answer))
                    plain = RAGChain(store, chat, dataclasses.replace(cfg, attribute=False), True, load_prompt("rag_answer"))
                    native += bool(re.search(r"\[\d+\]", plain.invoke(row["question"])["answer"])) if mode == "hybrid" else 0
            n, u = sum(r["answerable"] for r in rows), sum(not r["answerable"] for r in rows)
            results[mode] = {"hit@3": round(hit / n, 3), "keyword_acc": round(kw / n, 3) if answers else None,
                             "cited": round(cited / n, 3) if answers else None,
                             "model_cited": round(native / n, 3) if answers and mode == "hybrid" else None,
                             "abstain_ok": round(abstain / u, 3), "false_abstain": round(wrongly_abstained / n, 3),
                             "answerable": n, "unanswerable": u}
    return results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--quality", action="store_true", help="the quality table instead of the bench")
    parser.add_argument("--no-answers", action="store_true", help="quality: retrieval figures only (fast)")
    args = parser.parse_args()
    result = quality(answers=not args.no_answers) if args.quality else bench_rag(args.quick)
    print(json.dumps(result, indent=1))
