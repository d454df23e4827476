"""Rebuild ``eval/data/genai-beir/`` (a BEIR-format retrieval set) from the demo notes and genai-qa.jsonl.

Passages are the notes' paragraphs (short ones merged into the next). Queries are the answerable
questions of ``genai-qa.jsonl``. A passage from an expected source file is relevant (1) when it
holds every keyword of the question, and highly relevant (2) when it also holds at least half of
the reference answer's words.

    python eval/data/make_genai_beir.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTES = HERE.parent.parent / "llmapp" / "corpora" / "genai-notes"
OUT = HERE / "genai-beir"
MIN_CHARS = 120  # shorter paragraphs (headings, link lists) are merged into the next one


def passages() -> list[dict]:
    out = []
    for i, path in enumerate(sorted(NOTES.glob("*.txt"))):
        buf, n = "", 0
        for para in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
            buf = f"{buf}\n{para.strip()}".strip()
            if len(buf) >= MIN_CHARS:
                out.append({"_id": f"{i:03d}-p{n:02d}", "title": "", "text": " ".join(buf.split()),
                            "metadata": {"source": path.name}})
                buf, n = "", n + 1
        if buf:
            out.append({"_id": f"{i:03d}-p{n:02d}", "title": "", "text": " ".join(buf.split()),
                        "metadata": {"source": path.name}})
    return out


def main() -> None:
    corpus = passages()
    queries, qrels = [], []
    for line in (HERE / "genai-qa.jsonl").read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        if not q["answerable"]:
            continue
        qid = f"q{len(queries) + 1:02d}"
        answer = set(re.findall(r"\w+", " ".join(q["answers"]).lower())) - {"a", "an", "the", "of", "and", "to", "it"}
        rels = []
        for p in corpus:
            text = p["text"].lower()
            if p["metadata"]["source"] in q["sources"] and all(k.lower() in text for k in q["keywords"]):
                words = set(re.findall(r"\w+", text))
                rels.append((p["_id"], 2 if answer and len(answer & words) >= len(answer) / 2 else 1))
        if rels:
            queries.append({"_id": qid, "text": q["question"]})
            qrels += [(qid, pid, score) for pid, score in rels]
    OUT.mkdir(exist_ok=True)
    (OUT / "qrels").mkdir(exist_ok=True)
    (OUT / "corpus.jsonl").write_text("".join(json.dumps(p) + "\n" for p in corpus), encoding="utf-8")
    (OUT / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    (OUT / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{a}\t{b}\t{c}\n" for a, b, c in qrels), encoding="utf-8")
    print(f"{len(corpus)} passages, {len(queries)} queries, {len(qrels)} judgements -> {OUT}")


if __name__ == "__main__":
    main()
