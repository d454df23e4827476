"""Crash consistency: SIGKILL ``llmapp index``, the trainer's checkpoint write and the REPL's autosave at
each named write point (``LLMAPP_CRASH_AT``, see ``llmapp.core.files.crash_point``), then prove the
previous state is intact, the re-run completes, and no temporary or ``.old`` folders remain.

    python -m pytest tests/test_crash.py -q
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chains.index import build_index
from chains.store import Store
from llmapp.core.files import leftovers

REPO = Path(__file__).resolve().parent.parent
FRUIT = {"apples.txt": "Apples are red or green fruit that grow on trees. " * 10,
         "bananas.txt": "Bananas are long yellow fruit from the tropics. " * 10}


def crash(args: list[str], point: str, tmp_path: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run ``llmapp ARGS`` with the fault injected at ``point``; assert it died by SIGKILL there."""
    env = {**os.environ, "LLMAPP_CRASH_AT": point, "LLMAPP_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "llmapp.cli", *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert done.returncode == -signal.SIGKILL, (point, done.returncode, done.stderr[-2000:])
    return done


def no_leftovers(folder: Path) -> None:
    stray = [p.name for p in folder.rglob("*") if ".tmp-" in p.name or ".old" in p.name]
    assert not stray, stray


# ---- llmapp index ---------------------------------------------------------------------------------------
# point -> which store a reader sees after the kill: the one before the update, or the updated one
INDEX_POINTS = {"index:embedded": "before", "store:payload": "before", "dir:built": "before",
                "dir:moved-old": "before", "dir:swapped": "after"}

# The same build_index, in a child that needs no torch: hashed bag-of-words vectors, whitespace tokens.
_LIGHT_INDEX = """
import sys, zlib
import numpy as np
from chains.index import build_index

class Tok:
    def encode(self, text, add_special_tokens=False, verbose=False):
        return text.split()

class HashEmbeddings:
    model = "hash-64"
    client = type("Client", (), {"tokenizer": Tok()})()

    def encode(self, texts):
        out = np.zeros((len(texts), 64), dtype="float32")
        for i, t in enumerate(texts):
            for w in t.split():
                out[i, zlib.crc32(w.encode()) % 64] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

build_index([sys.argv[1]], sys.argv[2], HashEmbeddings())
"""


def _light_embeddings():
    namespace: dict = {}
    exec(_LIGHT_INDEX.split("build_index([sys.argv")[0], namespace)  # noqa: S102 - the same classes, here
    return namespace["HashEmbeddings"]()


def _fruit_folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in FRUIT.items():
        (docs / name).write_text(text)
    return docs


def _check_after_kill(store: Path, before: list, expect: str, embeddings, docs: Path, tmp_path: Path) -> None:
    seen = Store.load(store).docs  # a reader is never left without a store, nor with a mix
    if expect == "before":
        assert seen == before
    else:
        assert {Path(d["source"]).name for d in seen} == {"apples.txt", "bananas.txt", "cherries.txt"}
    report = build_index([docs], store, embeddings)  # the re-run completes and reuses what it can
    assert report.files_unchanged >= 2 and len(Store.load(store)) == report.chunks
    assert {Path(d["source"]).name for d in Store.load(store).docs} == {"apples.txt", "bananas.txt", "cherries.txt"}
    assert not leftovers(store)
    no_leftovers(tmp_path)


@pytest.mark.parametrize("point", list(INDEX_POINTS))
def test_index_killed_at_each_write_point(tmp_path, point):
    docs, store, embeddings = _fruit_folder(tmp_path), tmp_path / "store", _light_embeddings()
    build_index([docs], store, embeddings)
    before = Store.load(store).docs
    (docs / "cherries.txt").write_text("Cherries are small red stone fruit. " * 10)
    env = {**os.environ, "LLMAPP_CRASH_AT": point, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _LIGHT_INDEX, str(docs), str(store)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    _check_after_kill(store, before, INDEX_POINTS[point], embeddings, docs, tmp_path)


def test_llmapp_index_killed_between_the_two_renames(tmp_path, embeddings):
    """The real command, at the point that once lost the store: the old one moved away, the new not in yet."""
    docs, store = _fruit_folder(tmp_path), tmp_path / "store"
    build_index([docs], store, embeddings)
    before = Store.load(store).docs
    (docs / "cherries.txt").write_text("Cherries are small red stone fruit. " * 10)
    crash(["index", str(docs), "--store", str(store)], "dir:moved-old", tmp_path)
    assert not store.exists()  # the kill landed between the renames...
    _check_after_kill(store, before, "before", embeddings, docs, tmp_path)  # ...and nothing was lost


def test_readers_during_swaps_always_get_a_whole_store(tmp_path):
    """A writer swapping stores back and forth while a reader loads: every load is one whole store."""
    import threading

    docs, store, embeddings = _fruit_folder(tmp_path), tmp_path / "store", _light_embeddings()
    build_index([docs], store, embeddings)
    versions = {len(Store.load(store))}
    stop, errors, loads = threading.Event(), [], []

    def writer() -> None:
        for i in range(12):
            (docs / "apples.txt").write_text(f"Apples, version {i}. " * (10 + 20 * (i % 2)))
            report = build_index([docs], store, embeddings)
            versions.add(report.chunks)
        stop.set()

    def reader() -> None:
        while not stop.is_set():
            try:
                loaded = Store.load(store, embeddings)
                loads.append(len(loaded))
                assert len(loaded.docs) == loaded.index.ntotal == len(loaded.vectors)
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert len(loads) > 5 and set(loads) <= versions
    assert not leftovers(store)


# ---- the trainer's checkpoint write ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from llmapp.train.trainer import preset, train

    root = tmp_path_factory.mktemp("crash-run")
    (root / "data.txt").write_text((REPO / "llmapp" / "corpora" / "tinyshakespeare.txt").read_text()[:20_000])
    cfg = dataclasses.replace(preset("tiny"), data=str(root / "data.txt"), out_dir=str(root / "run"), max_iters=4,
                              eval_interval=2, eval_iters=1, lr_decay_iters=8)
    train(cfg, progress=False)
    return root, cfg


@pytest.mark.parametrize("point", ["dir:built", "dir:moved-old", "dir:swapped"])
def test_checkpoint_write_killed_at_each_point(trained, tmp_path, point):
    from llmapp.train import checkpoint
    from llmapp.train.trainer import train

    root, cfg = trained
    run = tmp_path / "run"
    import shutil

    shutil.copytree(root / "run", run)
    step_before = checkpoint.load_state(run / "last")["step"]
    args = ["train", "--data", str(root / "data.txt"), "--preset", "tiny", "--out", str(run), "--resume", "--quiet",
            "--set", "max_iters=8", "--set", "eval_interval=2", "--set", "eval_iters=1", "--set", "lr_decay_iters=8"]
    crash(args, point, tmp_path)  # the first folder swap of the resumed run (best or last, at step 6)

    for tag in ("last", "best"):  # both checkpoints still load, whole
        model, _, _ = checkpoint.load_model(run / tag)
        assert checkpoint.load_state(run / tag)["step"] in (step_before, 6)
    assert checkpoint.load_state(run / "last")["step"] == step_before or point == "dir:swapped"
    result = train(dataclasses.replace(cfg, out_dir=str(run), max_iters=8), resume=True, progress=False)
    assert result.steps == 8 and checkpoint.load_state(run / "last")["step"] == 8
    no_leftovers(run)


# ---- the REPL's autosave and /save -----------------------------------------------------------------------
CHAT = ["chat", "--backend", "fake", "-m", "scripted"]


@pytest.mark.parametrize("point", ["autosave:torn@3", "autosave:written@3"])
def test_autosave_killed_mid_conversation(tmp_path, monkeypatch, point):
    from llmapp.chat.conversation import latest_conversation, read_log

    crash(CHAT, point, tmp_path, stdin="first message\nsecond message\nthird message\n")
    monkeypatch.setenv("LLMAPP_HOME", str(tmp_path / "home"))
    path = latest_conversation()
    state, torn = read_log(path, strict=False)
    assert torn == point.startswith("autosave:torn")
    # the first message and its reply are whole; the third write (the second message) was cut in
    # half, or completed just before the kill
    assert [m["content"] for m in state.messages][:2] == ["first message", "Hello."]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "llmapp.cli", *CHAT, "--continue"], env=env, cwd=REPO,
                          input="one more\n", capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    state, torn = read_log(path)  # strict, and whole again
    contents = [m["content"] for m in state.messages]
    assert not torn and contents[:2] == ["first message", "Hello."] and contents[-2:] == ["one more", "Hello."]


def test_save_killed_before_its_rename_keeps_the_old_file(tmp_path):
    target = tmp_path / "chat.json"
    target.write_text(json.dumps({"version": 1, "model": "scripted", "system": None, "settings": {},
                                  "messages": [{"role": "user", "content": "kept"}]}))
    crash(CHAT, "file:written", tmp_path, stdin=f"hello\n/save {target}\n")
    assert json.loads(target.read_text())["messages"][0]["content"] == "kept"  # the old file, whole
    assert [p.name for p in tmp_path.glob(".chat.json.tmp-*")]  # the kill left its temp file...
    env = {**os.environ, "LLMAPP_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "llmapp.cli", *CHAT], env=env, cwd=REPO, capture_output=True,
                          input=f"again\n/save {target}\n", text=True, timeout=300)
    assert done.returncode == 0 and "saved" in done.stdout
    assert [m["content"] for m in json.loads(target.read_text())["messages"]] == ["again", "Hello."]
    assert not list(tmp_path.glob(".chat.json.tmp-*"))  # ...which the next save swept
