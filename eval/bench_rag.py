"""RAG benchmarks and quality figures: indexing throughput, query latency at scale, HNSW recall, overhead.

``bench_rag()`` measures, side by side in one run:

- indexing chunks/s (``build_index`` end to end) / raw ``SentenceTransformer.encode`` of the same chunks
  (target >= 0.9);
- at 10k and 100k chunks, for FAISS Flat, FAISS HNSW32 and pgvector HNSW (an embedded Postgres in a
  temporary folder): build time, query p50/p95 (with and without query embedding), recall@10 against
  exact search (target >= 0.95), and pgvector's queries/s from 4 concurrent clients. The large stores
  hold jittered copies of real MiniLM vectors of Shakespeare chunks (embedding 100k chunks on a laptop
  CPU takes longer than the whole bench);
- our retrieval latency / (raw query embedding + raw ``index.search``) (target <= 1.2).

``quality()`` answers eval/data/genai-qa.jsonl with vector, BM25 and hybrid retrieval and reports
retrieval hit@3, answer keyword accuracy, citation rates and abstention on unanswerable questions.

    llmapp bench rag                       # bench_rag() via eval/bench.py
    python -m eval.bench_rag --quick       # the same, 10k chunks only
    python -m eval.bench_rag --quality     # the quality table (a few minutes: it generates answers)
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from llmapp.corpora import TINY_SHAKESPEARE as SHAKESPEARE

log = logging.getLogger(__name__)

QA = Path(__file__).parent / "data" / "genai-qa.jsonl"
QPS_SECONDS = 3.0  # how long the 4 pgvector clients query for the queries/s figure
E2E_QUERIES = 10  # queries timed with their embedding (the embedding dominates; 10 keep the bench short)
JITTER = 1.0  # noise norm of the synthetic copies (~1, like the signal): 0.35 made clusters of near-ties
QUERIES = ["What did the citizens say about the corn?", "Who speaks of war and peace?", "a king who lost his crown",
           "love letters and sorrow", "the price of bread in Rome", "a murderer confesses", "banishment from Verona",
           "the duke's daughter marries", "ghosts at midnight", "a storm at sea",
           # 20 more, so that recall@10 and p95 rest on 30 queries rather than 10
           "a mother pleads for her son", "soldiers return from the wars", "the senate votes in the Capitol",
           "a servant mocks his master", "a wedding feast", "treason against the crown", "an old man curses his children",
           "the tribunes stir up the people", "a letter read aloud", "exile and the road to Mantua",
           "a battle at dawn", "jealous husbands", "the fool sings a song", "an heir disinherited",
           "a friar gives counsel", "poison in the cup", "the queen's grief", "honour and revenge",
           "a feast interrupted", "the common people hungry for bread"]


E2E = QUERIES[:E2E_QUERIES]


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

    manifest = {"index_type": index_type, "embedding_model": emb.model, "dimension": vectors.shape[1]}
    return Store(Path("memory"), manifest, make_index(vectors, index_type), _synthetic_docs(len(vectors)), vectors, emb)


def _synthetic_docs(n: int) -> list[dict[str, Any]]:
    return [{"source": f"synthetic/{i // 100}.txt", "start": 0, "end": 1, "text": f"chunk {i}"} for i in range(n)]


def synthetic_vectors(base: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors: the real ones again and again, each copy with its own noise of norm ~JITTER.

    Every copy is jittered, the first too: an exact original among its noisy copies is a hub that
    HNSW's neighbour pruning routes the whole cluster through, which capped HNSW recall@10 near 0.9
    whatever ``efSearch`` was, an artefact real corpora do not have.
    """
    rng = np.random.default_rng(seed)
    reps = -(-n // len(base))
    noise = [JITTER * rng.standard_normal(base.shape).astype("float32") / np.sqrt(base.shape[1]) for _ in range(reps)]
    vecs = np.concatenate([base + z for z in noise])[:n]
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs.astype("float32")


def _latencies(search: Any, items: list[Any], reps: int = 3) -> list[float]:
    out = []
    for _ in range(reps):
        for item in items:
            t0 = time.perf_counter()
            search(item)
            out.append(time.perf_counter() - t0)
    return out


def _recall(found: list[list[int]], exact: np.ndarray) -> float:
    return round(float(np.mean([len(set(f) & set(e.tolist())) / len(e) for f, e in zip(found, exact, strict=True)])), 4)


def bench_scale(sizes: list[int], base_chunks: int = 1500, pg: bool = True) -> dict[str, Any]:
    """Per size: build time, query p50/p95 and recall@10 of FAISS Flat, FAISS HNSW32 and pgvector HNSW.

    ``*_p50_ms``/``*_p95_ms`` time ``store.search`` (query embedding + search), ``*_search_p95_ms``
    the search alone (a pre-embedded query); recall@10 is against exact search (FAISS Flat).
    """
    from chains.chunking import split_text
    from chains.rag import retrieve
    from llmapp import load_embeddings
    from llmapp.core.config import RAGConfig

    emb = load_embeddings()
    pieces = [t for _, _, t in split_text(_shakespeare_text(400_000), emb.client.tokenizer, RAGConfig())][:base_chunks]
    base = emb.encode(pieces)  # real vectors; larger stores add jittered copies of them
    out: dict[str, Any] = {"base_real_chunks": len(base), "queries": len(QUERIES), "e2e_queries": len(E2E)}
    qvecs = np.asarray(emb.encode(QUERIES), dtype="float32")
    server = _pg_server() if pg else None
    try:
        for n in sizes:
            vecs = synthetic_vectors(base, n)
            stores = {}
            for kind in ("Flat", "HNSW32"):
                t0 = time.perf_counter()
                stores[kind] = _store_of(vecs, kind, emb)
                out[f"{n}_{kind}_build_s"] = round(time.perf_counter() - t0, 2)
            _, exact = stores["Flat"].index.search(qvecs, 10)
            for kind, store in stores.items():
                lat = _latencies(lambda q, s=store: s.search(q, 10), E2E)
                raw = _latencies(lambda q, s=store: s.index.search(
                    emb.client.encode([q], normalize_embeddings=True, convert_to_numpy=True), 10), E2E)
                search = _latencies(lambda v, s=store: s.index.search(v[None], 10), list(qvecs))
                rv = _latencies(lambda q, s=store: retrieve(s, q, RAGConfig(retrieval="vector", k=10, fetch_k=10,
                                                                            min_score=-1)), E2E)
                out[f"{n}_{kind}_p50_ms"], out[f"{n}_{kind}_p95_ms"] = _pct(lat, 50), _pct(lat, 95)
                out[f"{n}_{kind}_search_p50_ms"], out[f"{n}_{kind}_search_p95_ms"] = _pct(search, 50), _pct(search, 95)
                out[f"{n}_{kind}_raw_p50_ms"] = _pct(raw, 50)
                out[f"{n}_{kind}_search_vs_raw"] = round(statistics.median(lat) / statistics.median(raw), 3)
                out[f"{n}_{kind}_retrieve_vs_raw"] = round(statistics.median(rv) / statistics.median(raw), 3)
            _, hnsw_ids = stores["HNSW32"].index.search(qvecs, 10)
            out[f"{n}_HNSW32_recall_at_10"] = _recall([list(r) for r in hnsw_ids], exact)
            del stores
            if server is not None:
                out.update(_bench_pgvector(server.url, n, vecs, qvecs, exact, emb))
    finally:
        if server is not None:
            from llmapp.core.postgres import stop

            stop(server.data)
            shutil.rmtree(server.data.parent, ignore_errors=True)
    return out


def _server_ms(store: Any, vector: np.ndarray) -> float:
    """Postgres's execution time of one nearest-neighbour query (EXPLAIN ANALYZE), in ms."""
    from chains.pgstore import candidates, vector_sql

    plan = store._execute("EXPLAIN (ANALYZE, FORMAT JSON) " + vector_sql(store.manifest),
                          {"q": vector, "k": 10, "c": candidates(10)})
    return float(plan[0][0][0]["Execution Time"])


def _pg_server() -> Any:
    """An embedded Postgres in a temporary folder, or None (with a log line) when it cannot run here."""
    from llmapp.core.errors import LLMAppError
    from llmapp.core.postgres import start

    try:
        return start(Path(tempfile.mkdtemp(prefix="llmapp-bench-pg-")) / "data")
    except LLMAppError as exc:
        log.warning("pgvector figures skipped: %s", exc)
        return None


def _bench_pgvector(url: str, n: int, vecs: np.ndarray, qvecs: np.ndarray, exact: np.ndarray, emb: Any) -> dict:
    """pgvector HNSW: bulk build, query p50/p95, recall@10, and queries/s from 4 concurrent clients."""
    from concurrent.futures import ThreadPoolExecutor

    from chains.pgindex import write_chunks
    from chains.stores import open_store

    url = f"{url}&store=bench{n}"
    t0 = time.perf_counter()
    write_chunks(url, _synthetic_docs(n), vecs, emb.model, "hnsw")
    out: dict[str, Any] = {f"{n}_pgvector_build_s": round(time.perf_counter() - t0, 2)}
    store = open_store(url, emb)
    found = [[int(h.text.split()[1]) for h in store.search_vector(v[None], 10)] for v in qvecs]
    out[f"{n}_pgvector_recall_at_10"] = _recall(found, exact)
    lat = _latencies(lambda q: store.search(q, 10), E2E)
    search = _latencies(lambda v: store.search_vector(v[None], 10), list(qvecs))
    out[f"{n}_pgvector_p50_ms"], out[f"{n}_pgvector_p95_ms"] = _pct(lat, 50), _pct(lat, 95)
    out[f"{n}_pgvector_search_p50_ms"], out[f"{n}_pgvector_search_p95_ms"] = _pct(search, 50), _pct(search, 95)
    server = [_server_ms(store, v) / 1000 for v in qvecs]  # the database's own time, without client or scheduling
    out[f"{n}_pgvector_server_p50_ms"], out[f"{n}_pgvector_server_p95_ms"] = _pct(server, 50), _pct(server, 95)

    def client(seed: int) -> int:
        done, deadline = 0, time.perf_counter() + QPS_SECONDS
        while time.perf_counter() < deadline:
            store.search_vector(qvecs[(seed + done) % len(qvecs)][None], 10)
            done += 1
        return done

    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        total = sum(pool.map(client, range(4)))
    out[f"{n}_pgvector_qps_4_clients"] = round(total / (time.perf_counter() - t0), 1)
    store.close()
    return out


def bench_rag(quick: bool = False) -> dict[str, Any]:
    """All performance figures in one run (quick: 40 KB indexed, 10k chunks from 300 real ones).

    Returns:
        A flat dict of measurements; ``*_vs_raw`` are the ratios the targets refer to.
    """
    t0 = time.perf_counter()
    out = {"quick": quick}
    out.update(bench_indexing(40_000 if quick else 150_000))
    out.update(bench_scale([10_000], base_chunks=300) if quick else bench_scale([10_000, 100_000]))
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
