"""Check ``eval/data/rag-qa.jsonl`` and ``eval/data/generation-prompts.jsonl`` mechanically.

rag-qa.jsonl, each line:
- fields ``id``, ``corpus``, ``question``, ``answers``, ``keywords``, ``sources``, ``answerable``, ``split``
  with the right types; ids unique; ``corpus`` one of CORPORA;
- answerable: a reference answer, 1-3 keywords, at least one source; every source is a file of the
  corpus; no keyword occurs in the question (an answer that only echoes the question must not score);
  every keyword occurs in a listed source, and all of them together within WINDOW characters of one
  listed source (so that one retrieved chunk can hold the whole answer); each reference answer
  contains every keyword;
- unanswerable: ``answers``, ``keywords`` and ``sources`` all empty;
- split: within each (corpus, answerable) stratum, in id order, items alternate dev, test, dev, ...

generation-prompts.jsonl: ``id``, ``prompt``, ``category`` (one of CATEGORIES), ``split``; the same
alternation within each category, in the numeric order of the id.

``--verbose`` also lists, per question, the other files of its corpus that hold all of its keywords
(candidates for a missing source; a human decides). ``--write-splits`` rewrites both files' ``split``
fields by the rule instead of checking them.

    python eval/data/check_rag_qa.py [--verbose] [--write-splits]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPORA = {
    "genai-notes": ROOT / "llmapp" / "corpora" / "genai-notes",
    "llmapp-docs": HERE / "corpora" / "llmapp-docs",
    "harbor-library": HERE / "corpora" / "harbor-library",
}
CATEGORIES = ("chat", "story", "explanation", "list")
WINDOW = 1000  # characters; a 200-token MiniLM chunk is roughly 800-1000 characters of English
FIELDS = {"id": str, "corpus": str, "question": str, "answers": list, "keywords": list, "sources": list,
          "answerable": bool, "split": str}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def id_key(row_id: str) -> tuple:
    """Natural order: 'p9' before 'p10', 'genai-002' before 'genai-010'."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", row_id))


def assign_splits(rows: list[dict], stratum) -> dict[str, str]:
    groups: dict[object, list[str]] = {}
    for r in rows:
        groups.setdefault(stratum(r), []).append(r["id"])
    out = {}
    for ids in groups.values():
        for i, rid in enumerate(sorted(ids, key=id_key)):
            out[rid] = "dev" if i % 2 == 0 else "test"
    return out


def together(text: str, keywords: list[str], window: int = WINDOW) -> bool:
    """True if every keyword occurs within one span of ``window`` characters of ``text``."""
    low, keys = text.lower(), [k.lower() for k in keywords]
    starts = [m.start() for k in keys for m in re.finditer(re.escape(k), low)]
    return any(all(k in low[s:s + window] for k in keys) for s in starts)


def check_rag(path: Path, verbose: bool, write: bool) -> list[str]:
    rows = read_jsonl(path)
    errors: list[str] = []
    texts = {c: {p.name: p.read_text(encoding="utf-8") for p in sorted(d.iterdir()) if p.is_file()}
             for c, d in CORPORA.items()}
    seen: set[str] = set()
    for n, r in enumerate(rows, start=1):
        where = f"{path.name}:{n} ({r.get('id')})"
        for key, kind in FIELDS.items():
            if not isinstance(r.get(key), kind):
                errors.append(f"{where}: field {key!r} missing or not {kind.__name__}")
        if errors and errors[-1].startswith(where):
            continue
        if r["id"] in seen:
            errors.append(f"{where}: duplicate id")
        seen.add(r["id"])
        if r["corpus"] not in CORPORA:
            errors.append(f"{where}: unknown corpus {r['corpus']!r}")
            continue
        files = texts[r["corpus"]]
        if not r["answerable"]:
            if r["answers"] or r["keywords"] or r["sources"]:
                errors.append(f"{where}: unanswerable, so answers, keywords and sources must be empty")
            continue
        if not r["answers"] or not all(isinstance(a, str) and a.strip() for a in r["answers"]):
            errors.append(f"{where}: needs a reference answer")
        if not 1 <= len(r["keywords"]) <= 3:
            errors.append(f"{where}: needs 1-3 keywords, has {len(r['keywords'])}")
        if not r["sources"]:
            errors.append(f"{where}: needs at least one source")
        missing = [s for s in r["sources"] if s not in files]
        if missing:
            errors.append(f"{where}: sources not in {r['corpus']}: {missing}")
            continue
        q = r["question"].lower()
        for k in r["keywords"]:
            if k.lower() in q:
                errors.append(f"{where}: keyword {k!r} occurs in the question")
            if not any(k.lower() in files[s].lower() for s in r["sources"]):
                errors.append(f"{where}: keyword {k!r} occurs in none of its sources {r['sources']}")
            for a in r["answers"]:
                if k.lower() not in a.lower():
                    errors.append(f"{where}: keyword {k!r} missing from the reference answer {a!r}")
        if r["keywords"] and not any(together(files[s], r["keywords"]) for s in r["sources"]):
            errors.append(f"{where}: the keywords never occur together (within {WINDOW} chars) in one source")
        for s in r["sources"]:
            if not any(k.lower() in files[s].lower() for k in r["keywords"]):
                errors.append(f"{where}: source {s} holds none of the keywords")
        if verbose:
            others = [name for name, text in files.items() if name not in r["sources"]
                      and all(k.lower() in text.lower() for k in r["keywords"])]
            if others:
                print(f"note {where}: other files with all keywords {r['keywords']}: {others}")
    splits = assign_splits(rows, lambda r: (r.get("corpus"), r.get("answerable")))
    if write:
        for r in rows:
            r["split"] = splits[r["id"]]
        write_jsonl(path, rows)
    else:
        errors += [f"{path.name}: {r['id']} split is {r['split']!r}, the rule says {splits[r['id']]!r}"
                   for r in rows if r["split"] != splits[r["id"]]]
    summary = Counter((r["corpus"], "answerable" if r["answerable"] else "unanswerable", r["split"]) for r in rows)
    print(f"{path.name}: {len(rows)} questions")
    print(f"  {'corpus':<16}{'kind':<14}{'dev':>5}{'test':>6}{'all':>6}")
    for corpus in CORPORA:
        for kind in ("answerable", "unanswerable"):
            dev, test = summary[(corpus, kind, "dev")], summary[(corpus, kind, "test")]
            print(f"  {corpus:<16}{kind:<14}{dev:>5}{test:>6}{dev + test:>6}")
    return errors


def check_prompts(path: Path, write: bool) -> list[str]:
    rows = read_jsonl(path)
    errors = []
    seen = set()
    for n, r in enumerate(rows, start=1):
        where = f"{path.name}:{n} ({r.get('id')})"
        if not isinstance(r.get("id"), str) or not isinstance(r.get("prompt"), str) or not r["prompt"].strip():
            errors.append(f"{where}: needs string fields id and prompt")
        if r.get("category") not in CATEGORIES:
            errors.append(f"{where}: category must be one of {CATEGORIES}")
        if r.get("id") in seen:
            errors.append(f"{where}: duplicate id")
        seen.add(r.get("id"))
    if errors:
        return errors
    splits = assign_splits(rows, lambda r: r["category"])
    if write:
        for r in rows:
            r["split"] = splits[r["id"]]
        write_jsonl(path, rows)
    else:
        errors += [f"{path.name}: {r['id']} split is {r.get('split')!r}, the rule says {splits[r['id']]!r}"
                   for r in rows if r.get("split") != splits[r["id"]]]
    summary = Counter((r["category"], r.get("split")) for r in rows)
    print(f"{path.name}: {len(rows)} prompts; " + ", ".join(
        f"{c} {summary[(c, 'dev')]}+{summary[(c, 'test')]}" for c in CATEGORIES) + " (dev+test)")
    return errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qa", type=Path, default=HERE / "rag-qa.jsonl")
    ap.add_argument("--prompts", type=Path, default=HERE / "generation-prompts.jsonl")
    ap.add_argument("--verbose", action="store_true", help="list other files holding all of a question's keywords")
    ap.add_argument("--write-splits", action="store_true", help="rewrite the split fields by the rule")
    args = ap.parse_args()
    errors = check_rag(args.qa, args.verbose, args.write_splits) + check_prompts(args.prompts, args.write_splits)
    for e in errors:
        print("error:", e, file=sys.stderr)
    print("ok" if not errors else f"{len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
