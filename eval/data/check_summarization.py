"""Validate the summarization evaluation set and its faithfulness labels.

    python eval/data/check_summarization.py            # checks both files, prints counts, exit 1 on errors

Checks ``eval/data/summarization.jsonl``:

- every line is a JSON object with ``id``, ``bucket``, ``source``, ``title``, ``document``, ``summary``,
  ``key_sentences`` and ``split`` (``genre`` and ``origin`` are optional strings); ids are unique and
  start with the bucket's prefix (``para-``, ``note-``, ``chap-``, ``long-``);
- the bucket matches the document's length in characters (paragraph < 1,500; note 1,500-11,999;
  chapter 12,000-50,000; long 50,001-109,999) and each bucket has its minimum number of documents;
- 2-3 key sentences for a paragraph and 3-8 otherwise, each an exact substring of the document;
- the reference summary keeps to the guideline: sentence and word limits per bucket (sentences are
  split as ``eval.tasks.base.sentences`` splits them), one line, no URL, no "This document/text/...",
  and every number and capitalised word in it also occurs in the document;
- Shakespeare excerpts and demo notes are exactly the text their ``origin`` names (the llmapp-docs
  snapshot is only compared, since the docs move on);
- the split follows the documented rule: within each bucket, sort by (source, sha256(id)) and
  alternate dev, test, dev, ...

Checks ``eval/data/summarization-faithfulness.jsonl``:

- fields ``id``, ``doc_id``, ``sentence``, ``supported`` (bool), ``why``, ``split``; unique ids and sentences;
- ``doc_id`` names a document of the set and ``split`` is that document's split;
- at least 200 sentences over at least 24 documents from every bucket, labels about half and half
  overall (45-55 %) and in each split (40-60 %);
- every number in a supported sentence occurs in its document.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SUMMARIES = HERE / "summarization.jsonl"
FAITHFULNESS = HERE / "summarization-faithfulness.jsonl"

BUCKETS = {  # name: (id prefix, min chars, max chars, min docs, key sentences, summary sentences, summary words)
    "paragraph": ("para-", 1, 1_499, 14, (2, 3), (1, 2), 45),
    "note": ("note-", 1_500, 11_999, 16, (3, 8), (3, 4), 90),
    "chapter": ("chap-", 12_000, 50_000, 10, (3, 8), (4, 6), 130),
    "long": ("long-", 50_001, 109_999, 6, (3, 8), (5, 8), 180),
}
SOURCES = {"written", "genai-notes", "shakespeare", "llmapp-docs"}
SPLITS = {"dev", "test"}
MIN_DOCS = 48
MIN_FAITH, MIN_FAITH_DOCS = 200, 24

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")  # as in eval/tasks/base.py
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_CAPITAL = re.compile(r"\b[A-Z][\w\u00c0-\u024f'\u2019-]*")
_FILLER = re.compile(r"\b(this|the) (document|text|passage|excerpt|article)\b", re.I)


def sentences(text: str) -> list[str]:
    """Split prose into sentences the way eval.tasks.base.sentences does."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        out += [s.strip() for s in _SENTENCE.split(" ".join(para.split())) if s.strip()]
    return out


def numbers(text: str) -> set[str]:
    return set(_NUMBER.findall(text))


def read_jsonl(path: Path, errors: list[str]) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            errors.append(f"{path.name}:{n}: empty line")
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{path.name}:{n}: malformed JSON ({e})")
            continue
        if not isinstance(row, dict):
            errors.append(f"{path.name}:{n}: not a JSON object")
            continue
        row["_line"] = n
        rows.append(row)
    return rows


def expected_splits(docs: list[dict]) -> dict[str, str]:
    """The split rule: per bucket, sort by (source, sha256(id)) and alternate dev/test starting with dev."""
    out = {}
    for bucket in BUCKETS:
        rows = sorted((d for d in docs if d.get("bucket") == bucket),
                      key=lambda d: (d["source"], hashlib.sha256(d["id"].encode()).hexdigest()))
        for i, d in enumerate(rows):
            out[d["id"]] = "dev" if i % 2 == 0 else "test"
    return out


def check_origin(d: dict, where: str, errors: list[str], notes: list[str]) -> None:
    origin, doc = d.get("origin", ""), d["document"]
    if d["source"] == "shakespeare":
        m = re.fullmatch(r"llmapp/corpora/tinyshakespeare\.txt, characters (\d+) to (\d+)", origin)
        if not m:
            errors.append(f"{where}: shakespeare origin should read 'llmapp/corpora/tinyshakespeare.txt, characters A to B'")
            return
        a, b = int(m[1]), int(m[2])
        corpus = (ROOT / "llmapp/corpora/tinyshakespeare.txt").read_text(encoding="utf-8")
        if corpus[a:b] != doc:
            errors.append(f"{where}: document differs from tinyshakespeare.txt[{a}:{b}]")
        elif not (a == 0 or corpus[a - 2:a] == "\n\n") or not corpus[b:b + 1] == "\n":
            errors.append(f"{where}: excerpt is not cut at speaker boundaries")
    elif d["source"] == "genai-notes":
        m = re.match(r"(chains/demo_data/genai-notes/\S+\.txt)", origin)
        if not m or (ROOT / m[1]).read_text(encoding="utf-8") != doc:
            errors.append(f"{where}: document is not the demo note its origin names")
    elif d["source"] == "llmapp-docs":
        files = re.findall(r"[\w/.-]+\.md", origin)
        try:
            current = "\n\n".join((ROOT / f).read_text(encoding="utf-8").strip("\n") for f in files) + "\n"
        except OSError:
            current = None
        if current != doc:
            notes.append(f"{where}: the llmapp-docs snapshot differs from today's {', '.join(files)} (expected as the docs change)")


def check_summaries(errors: list[str], notes: list[str]) -> list[dict]:
    docs = read_jsonl(SUMMARIES, errors)
    seen = set()
    for d in docs:
        where = f"{SUMMARIES.name}:{d['_line']}"
        for field, kind in [("id", str), ("bucket", str), ("source", str), ("title", str), ("document", str),
                            ("summary", str), ("key_sentences", list), ("split", str)]:
            if not isinstance(d.get(field), kind):
                errors.append(f"{where}: field '{field}' missing or not a {kind.__name__}")
        for field in ("genre", "origin"):
            if field in d and not isinstance(d[field], str):
                errors.append(f"{where}: field '{field}' must be a string")
        if any(not isinstance(d.get(f), k) for f, k in [("id", str), ("bucket", str), ("document", str),
                                                         ("summary", str), ("key_sentences", list)]):
            continue
        where = f"{where} ({d['id']})"
        if d["id"] in seen:
            errors.append(f"{where}: duplicate id")
        seen.add(d["id"])
        if d["bucket"] not in BUCKETS:
            errors.append(f"{where}: unknown bucket '{d['bucket']}'")
            continue
        prefix, lo, hi, _, (kmin, kmax), (smin, smax), wmax = BUCKETS[d["bucket"]]
        doc, summary = d["document"], d["summary"]
        if not d["id"].startswith(prefix):
            errors.append(f"{where}: id should start with '{prefix}'")
        if d.get("source") not in SOURCES:
            errors.append(f"{where}: unknown source '{d.get('source')}'")
        if d.get("split") not in SPLITS:
            errors.append(f"{where}: split must be dev or test")
        if not d.get("title", "").strip():
            errors.append(f"{where}: empty title")
        if not lo <= len(doc) <= hi:
            errors.append(f"{where}: {len(doc)} characters is outside the {d['bucket']} bucket ({lo}-{hi})")
        # key sentences
        ks = d["key_sentences"]
        if not kmin <= len(ks) <= kmax:
            errors.append(f"{where}: {len(ks)} key sentences, need {kmin}-{kmax}")
        if len(set(ks)) != len(ks):
            errors.append(f"{where}: duplicate key sentence")
        for k in ks:
            if not isinstance(k, str) or not k.strip():
                errors.append(f"{where}: empty key sentence")
            elif k not in doc:
                errors.append(f"{where}: key sentence is not a verbatim substring: {k[:70]!r}")
        # summary guideline
        n_sent, n_words = len(sentences(summary)), len(summary.split())
        if not smin <= n_sent <= smax:
            errors.append(f"{where}: summary has {n_sent} sentences, need {smin}-{smax}")
        if n_words > wmax:
            errors.append(f"{where}: summary has {n_words} words, limit {wmax}")
        if "\n" in summary:
            errors.append(f"{where}: summary must be one line of prose")
        if re.search(r"https?://|www\.", summary):
            errors.append(f"{where}: summary contains a URL")
        if _FILLER.search(summary):
            errors.append(f"{where}: summary uses filler ('{_FILLER.search(summary)[0]}')")
        for num in sorted(numbers(summary) - numbers(doc)):
            errors.append(f"{where}: summary number '{num}' does not occur in the document")
        low = doc.lower()
        for s in sentences(summary):
            for word in _CAPITAL.findall(s)[1:]:
                word = re.sub(r"['\u2019]s?$", "", word)
                if word and word.lower() not in low:
                    errors.append(f"{where}: summary word '{word}' does not occur in the document")
        check_origin(d, where, errors, notes)
    # counts and splits
    by_bucket = Counter(d.get("bucket") for d in docs)
    for bucket, spec in BUCKETS.items():
        if by_bucket[bucket] < spec[3]:
            errors.append(f"{SUMMARIES.name}: {by_bucket[bucket]} {bucket} documents, need at least {spec[3]}")
    if len(docs) < MIN_DOCS:
        errors.append(f"{SUMMARIES.name}: {len(docs)} documents, need at least {MIN_DOCS}")
    valid = [d for d in docs if isinstance(d.get("id"), str) and d.get("bucket") in BUCKETS and d.get("source") in SOURCES]
    for doc_id, split in expected_splits(valid).items():
        d = next(x for x in valid if x["id"] == doc_id)
        if d.get("split") != split:
            errors.append(f"{SUMMARIES.name}:{d['_line']} ({doc_id}): split should be '{split}' by the split rule")
    return docs


def check_faithfulness(docs: list[dict], errors: list[str]) -> list[dict]:
    rows = read_jsonl(FAITHFULNESS, errors)
    by_id = {d["id"]: d for d in docs if isinstance(d.get("id"), str)}
    seen_ids, seen_sents = set(), set()
    for r in rows:
        where = f"{FAITHFULNESS.name}:{r['_line']}"
        for field, kind in [("id", str), ("doc_id", str), ("sentence", str), ("supported", bool),
                            ("why", str), ("split", str)]:
            if not isinstance(r.get(field), kind):
                errors.append(f"{where}: field '{field}' missing or not a {kind.__name__}")
        if not all(isinstance(r.get(f), str) for f in ("id", "doc_id", "sentence")):
            continue
        where = f"{where} ({r['id']})"
        if r["id"] in seen_ids:
            errors.append(f"{where}: duplicate id")
        seen_ids.add(r["id"])
        if r["sentence"] in seen_sents:
            errors.append(f"{where}: duplicate sentence")
        seen_sents.add(r["sentence"])
        if not r["sentence"].strip() or "\n" in r["sentence"]:
            errors.append(f"{where}: sentence must be one non-empty line")
        if not str(r.get("why", "")).strip():
            errors.append(f"{where}: empty 'why'")
        doc = by_id.get(r["doc_id"])
        if doc is None:
            errors.append(f"{where}: unknown doc_id '{r['doc_id']}'")
            continue
        if r.get("split") != doc.get("split"):
            errors.append(f"{where}: split '{r.get('split')}' differs from {r['doc_id']}'s split '{doc.get('split')}'")
        if r.get("supported") is True:
            for num in sorted(numbers(r["sentence"]) - numbers(doc["document"])):
                errors.append(f"{where}: supported sentence has number '{num}' that is not in {r['doc_id']}")
    if len(rows) < MIN_FAITH:
        errors.append(f"{FAITHFULNESS.name}: {len(rows)} sentences, need at least {MIN_FAITH}")
    doc_ids = {r.get("doc_id") for r in rows if r.get("doc_id") in by_id}
    if len(doc_ids) < MIN_FAITH_DOCS:
        errors.append(f"{FAITHFULNESS.name}: sentences cover {len(doc_ids)} documents, need at least {MIN_FAITH_DOCS}")
    missing = set(BUCKETS) - {by_id[i]["bucket"] for i in doc_ids}
    if missing:
        errors.append(f"{FAITHFULNESS.name}: no sentences about a {', '.join(sorted(missing))} document")
    share = sum(r.get("supported") is True for r in rows) / max(len(rows), 1)
    if not 0.45 <= share <= 0.55:
        errors.append(f"{FAITHFULNESS.name}: {share:.0%} supported overall, need 45-55 %")
    for split in SPLITS:
        part = [r for r in rows if r.get("split") == split]
        s = sum(r.get("supported") is True for r in part) / max(len(part), 1)
        if not part or not 0.40 <= s <= 0.60:
            errors.append(f"{FAITHFULNESS.name}: {s:.0%} supported in {split}, need 40-60 %")
    return rows


def report(docs: list[dict], rows: list[dict]) -> None:
    print("summarization.jsonl")
    print(f"  {'bucket':10s} {'dev':>4s} {'test':>5s} {'total':>6s}   chars (min-max)   sources")
    for bucket in BUCKETS:
        part = [d for d in docs if d.get("bucket") == bucket]
        split = Counter(d.get("split") for d in part)
        sizes = [len(d.get("document", "")) for d in part] or [0]
        src = Counter(d.get("source") for d in part)
        print(f"  {bucket:10s} {split['dev']:4d} {split['test']:5d} {len(part):6d}   "
              f"{min(sizes):>6,}-{max(sizes):<8,}  {', '.join(f'{k} {v}' for k, v in sorted(src.items()))}")
    split = Counter(d.get("split") for d in docs)
    print(f"  {'all':10s} {split['dev']:4d} {split['test']:5d} {len(docs):6d}")
    print("summarization-faithfulness.jsonl")
    docs_by_id = {d.get("id"): d for d in docs}
    table = defaultdict(Counter)
    for r in rows:
        table[r.get("split")][r.get("supported")] += 1
    for split in sorted(table):
        c = table[split]
        print(f"  {split:5s} supported {c[True]:4d}  unsupported {c[False]:4d}")
    buckets = Counter(docs_by_id[r["doc_id"]]["bucket"] for r in rows if r.get("doc_id") in docs_by_id)
    n_docs = len({r.get("doc_id") for r in rows})
    print(f"  {len(rows)} sentences over {n_docs} documents; by bucket: "
          + ", ".join(f"{b} {buckets[b]}" for b in BUCKETS))


def main() -> int:
    errors: list[str] = []
    notes: list[str] = []
    docs = check_summaries(errors, notes)
    rows = check_faithfulness(docs, errors)
    report(docs, rows)
    for note in notes:
        print(f"note: {note}")
    for error in errors:
        print(f"error: {error}")
    print("ok" if not errors else f"{len(errors)} error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
