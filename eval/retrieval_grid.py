"""The model-free half of the RAG ablation: chunking and retrieval settings scored without generating.

For each row of a grid (``eval/rag_grid.py`` format) and each answerable question of a split of
``eval/data/rag-qa.jsonl``, retrieve from the question's corpus store (built with the row's chunking)
and score hit@k (a retrieved chunk comes from an expected file), the keyword accuracy of the
source sentence the chain would quote (``chains.citations.best_quote``) and how often that
sentence's chunk holds every keyword (the citation precision of an answer that cites only the
quote's source, as the chain's answers mostly do). It takes minutes where the
full grid takes hours, so chunking, k, retrieval mode and MMR can be compared on every question.

    python -m eval.retrieval_grid --split dev --grid ablation
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def quote_scores(keywords: list[str], sources: list[Any], found: tuple[int, str] | None) -> tuple[float, float]:
    """(keyword accuracy of the quoted sentence, 1.0 if the quoted source's chunk holds every keyword else 0.0)."""
    from eval.metrics import keyword_accuracy

    if found is None:
        return 0.0, 0.0
    chunk = next((s.text for s in sources if s.n == found[0]), "").lower()
    return keyword_accuracy(found[1], keywords), float(all(k.lower() in chunk for k in keywords))


def score_rows(rows: dict[str, dict[str, Any]], split: str, embeddings: str = "minilm-l6") -> dict[str, dict[str, float]]:
    """Row name -> {"hit@k", "quote_keyword_accuracy", "quote_source_precision", "chunks"} over the answerable
    questions of ``split``."""
    import dataclasses

    from chains.citations import best_quote, term_weights
    from chains.rag import rank
    from eval.metrics import mean
    from eval.rag_grid import resolve
    from eval.rag_stores import StoreSet
    from eval.tasks.base import DATA, EvalContext, read_jsonl

    stores = StoreSet(EvalContext(embeddings=embeddings))
    questions = [r for r in read_jsonl(DATA / "rag-qa.jsonl", {"question": str, "answerable": bool})
                 if r["answerable"] and (split == "all" or r.get("split") == split)]
    out = {}
    for name, settings in rows.items():
        rag = dataclasses.replace(resolve(settings)[0], abstain="none")
        hits, quotes, held, chunks = [], [], [], {}
        for q in questions:
            store = stores.get(q["corpus"], rag)
            chunks[q["corpus"]] = len(store)
            sources = rank(store, q["question"], rag)
            expected = {Path(s).name for s in q["sources"]}
            hits.append(float(any(Path(s.source).name in expected for s in sources)))
            found = best_quote(q["question"], sources, term_weights(store), store.embeddings)
            quote_kw, source_holds = quote_scores(q["keywords"], sources, found)
            quotes.append(quote_kw)
            held.append(source_holds)
        out[name] = {"hit@k": round(mean(hits) or 0, 3), "quote_keyword_accuracy": round(mean(quotes) or 0, 3),
                     "quote_source_precision": round(mean(held) or 0, 3), "chunks": sum(chunks.values())}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="dev", choices=["dev", "test", "all"])
    parser.add_argument("--grid", default="ablation", help="a grid name in eval/grids/ or a YAML file")
    parser.add_argument("--embeddings", default="minilm-l6")
    args = parser.parse_args(argv)
    from eval.rag_grid import load_grid

    rows = {n: s for n, s in load_grid(args.grid).items()
            if not set(s) & {"template", "context", "repetition_penalty", "max_tokens", "stop_loops", "quote",
                             "ground", "recite"} or n == "defaults"}  # settings that only matter to the model
    print(f"{'row':24s} {'hit@k':>7s} {'quote kw':>9s} {'quote src':>9s} {'chunks':>7s}")
    for name, row in score_rows(rows, args.split, args.embeddings).items():
        print(f"{name:24s} {row['hit@k']:7.3f} {row['quote_keyword_accuracy']:9.3f} "
              f"{row['quote_source_precision']:9.3f} {row['chunks']:7d}")


if __name__ == "__main__":
    main()
