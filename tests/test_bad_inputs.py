"""Hostile and careless inputs, table by table: each gets a one-line error (exit 2, or an OpenAI-style
4xx) or the right behaviour, and nothing that was there before is lost.

Tables: damaged stores, index runs over bad files, the chat REPL's /save, /load and /set, run
folders and the train/sample/generate/ask CLI, and the HTTP server (Host allow-list, limits, schemas).

    python -m pytest tests/test_bad_inputs.py -q
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from chains.index import build_index
from chains.store import DOCSTORE, INDEX_FILE, MANIFEST, VECTORS, Store
from llmapp.chat.conversation import ConversationLog, read_log
from llmapp.chat.session import ChatSession
from llmapp.core.errors import LLMAppError
from llmapp.core.files import leftovers

GOOD = {"apples.txt": "Apples are red or green fruit that grow on trees in orchards. " * 8,
        "bananas.md": "# Bananas\nBananas are long yellow fruit from the tropics. " * 8,
        "cherries.html": "<html><body><p>Cherries are small round stone fruit.</p></body></html>" * 6}


def one_line(message: str) -> str:
    """Assert ``message`` is one short line with no traceback; return it."""
    text = message.strip()
    assert text and "\n" not in text and "Traceback" not in text and len(text) < 700, text
    return text


def write_files(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def rewrite(store: Path, name: str, data: bytes) -> None:
    """Replace a payload file and re-sign it in the manifest, so the check behind the hash is reached."""
    (store / name).write_bytes(data)
    manifest = json.loads((store / MANIFEST).read_text())
    manifest["payload"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (store / MANIFEST).write_text(json.dumps(manifest))


def edit_manifest(store: Path, change) -> None:
    manifest = json.loads((store / MANIFEST).read_text())
    change(manifest)
    (store / MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def built(tmp_path_factory, embeddings):
    root = tmp_path_factory.mktemp("bad-inputs")
    docs = write_files(root / "docs", GOOD)
    store = root / "store"
    build_index([docs], store, embeddings)
    return docs, store


@pytest.fixture
def store_copy(built, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(built[1], copy)
    return copy


# ---- damaged stores: Store.load answers one line that names the store and the fix -------------------
def _docs_lines(store: Path) -> list[str]:
    return (store / DOCSTORE).read_text().splitlines()


def _swap_row(row):
    def change(store: Path) -> None:
        lines = _docs_lines(store)
        lines[0] = row if isinstance(row, str) else json.dumps(row)
        rewrite(store, DOCSTORE, ("\n".join(lines) + "\n").encode())
    return change


def _index_of_dim(dim: int):
    def change(store: Path) -> None:
        import faiss

        n = len(_docs_lines(store))
        index = faiss.IndexFlatIP(dim)
        index.add(np.random.default_rng(0).random((n, dim), dtype="float32"))
        rewrite(store, INDEX_FILE, faiss.serialize_index(index).tobytes())
    return change


def _npy(array) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


STORE_DAMAGE = {
    "manifest missing": (lambda s: (s / MANIFEST).unlink(), "manifest.json is missing"),
    "manifest not json": (lambda s: (s / MANIFEST).write_text("{nope"), "corrupt"),
    "manifest is a list": (lambda s: (s / MANIFEST).write_text("[1, 2]"), "expected a JSON object"),
    "manifest without payload": (lambda s: edit_manifest(s, lambda m: m.pop("payload")), "'payload' is missing"),
    "format from the future": (lambda s: edit_manifest(s, lambda m: m.update(format_version=99)), "format 99"),
    "dimension is a string": (lambda s: edit_manifest(s, lambda m: m.update(dimension="384")), "'dimension'"),
    "dimension zero": (lambda s: edit_manifest(s, lambda m: m.update(dimension=0)), "dimension"),
    "payload entry missing": (lambda s: edit_manifest(s, lambda m: m["payload"].pop(VECTORS)), "vectors.npy"),
    "payload size wrong type": (lambda s: edit_manifest(s, lambda m: m["payload"][INDEX_FILE].update(size="1")), "size"),
    "files entry malformed": (lambda s: edit_manifest(s, lambda m: m["files"].update({"/x": 3})), "expected a JSON object"),
    "index truncated": (lambda s: (s / INDEX_FILE).write_bytes((s / INDEX_FILE).read_bytes()[:100]), "does not match"),
    "index deleted": (lambda s: (s / INDEX_FILE).unlink(), "index.faiss is missing"),
    "index garbage re-signed": (lambda s: rewrite(s, INDEX_FILE, b"garbage" * 10), "corrupt"),
    "docstore row not json": (_swap_row("{not json"), "docstore.jsonl line 1"),
    "docstore row a list": (_swap_row([1, 2, 3]), "docstore.jsonl line 1"),
    "docstore row without text": (_swap_row({"source": "/a", "start": 0, "end": 1}), "'text' is missing"),
    "docstore start a string": (_swap_row({"source": "/a", "start": "0", "end": 1, "text": "x"}), "'start'"),
    "docstore offsets reversed": (_swap_row({"source": "/a", "start": 9, "end": 1, "text": "x"}), "out of order"),
    "docstore source null": (_swap_row({"source": None, "start": 0, "end": 1, "text": "x"}), "'source'"),
    "docstore source with NUL": (_swap_row({"source": "/a\x00b", "start": 0, "end": 1, "text": "x"}), "NUL"),
    "files key with NUL": (lambda s: edit_manifest(s, lambda m: m["files"].update({"/a\x00b": {"sha256": "0"}})), "NUL"),
    "docstore lone surrogate": (_swap_row({"source": "/a", "start": 0, "end": 1, "text": "\ud800"}), "not valid Unicode"),
    "docstore extra row": (lambda s: rewrite(s, DOCSTORE, (s / DOCSTORE).read_bytes() + b'{"source": "/a", "start": 0, "end": 1, "text": "x"}\n'), "chunks"),
    "docstore not utf-8": (lambda s: rewrite(s, DOCSTORE, b"\xff\xfe\x00bad"), "corrupt"),
    "vectors pickled objects": (lambda s: rewrite(s, VECTORS, _npy(np.array([{"a": 1}], dtype=object))), "corrupt"),
    "vectors float64": (lambda s: rewrite(s, VECTORS, _npy(np.load(s / VECTORS).astype("float64"))), "float64"),
    "vectors wrong dimension": (lambda s: rewrite(s, VECTORS, _npy(np.load(s / VECTORS)[:, :8].copy())), "dimensional"),
    "index dimension differs": (_index_of_dim(8), "dimensional"),
}


@pytest.mark.parametrize("case", list(STORE_DAMAGE))
def test_damaged_store_is_one_line(store_copy, case):
    damage, expected = STORE_DAMAGE[case]
    damage(store_copy)
    with pytest.raises(LLMAppError) as err:
        Store.load(store_copy)
    assert expected in one_line(str(err.value))
    assert str(store_copy) in str(err.value)


@pytest.mark.parametrize("case", ["manifest missing", "index truncated", "docstore row a list", "index dimension differs"])
def test_rebuild_advice_works_on_the_store_it_names(built, store_copy, case, embeddings):
    STORE_DAMAGE[case][0](store_copy)
    with pytest.raises(LLMAppError, match="--rebuild"):
        build_index([built[0]], store_copy, embeddings)
    report = build_index([built[0]], store_copy, embeddings, rebuild=True)  # the advice, followed
    assert report.files_indexed == 3 and len(Store.load(store_copy)) == report.chunks
    assert not leftovers(store_copy)


NOT_A_STORE = {
    "a file": (lambda p: p.write_text("hello"), "is a file"),
    "other files": (lambda p: write_files(p, {"thesis.txt": "my thesis"}), "holds other files"),
    "nothing there": (lambda p: None, "no store at"),
}


@pytest.mark.parametrize("case", list(NOT_A_STORE))
def test_not_a_store(tmp_path, case, built, embeddings):
    make, expected = NOT_A_STORE[case]
    target = tmp_path / "target"
    make(target)
    with pytest.raises(LLMAppError) as err:
        Store.load(target)
    assert expected in one_line(str(err.value))
    if case != "nothing there":  # indexing into it, even with --rebuild, refuses and touches nothing
        before = sorted(p.name for p in tmp_path.rglob("*"))
        with pytest.raises(LLMAppError):
            build_index([built[0]], target, embeddings, rebuild=True)
        assert sorted(p.name for p in tmp_path.rglob("*") if not p.name.endswith(".lock")) == before


def test_query_embeddings_of_another_dimension(store_copy):
    class Tiny:  # same registry name, other width: the dimension check, not faiss, answers
        model = "minilm-l6"

        def encode(self, texts):
            return np.ones((len(texts), 8), dtype="float32")

    store = Store.load(store_copy, embeddings=Tiny())
    with pytest.raises(LLMAppError, match="384-dimensional vectors but the query embeddings") as err:
        store.search("apples", k=2)
    one_line(str(err.value))


# ---- index runs over hostile files: each bad file is skipped with a warning, the rest indexed -----------
def _pypdf_raising(exc):
    def patch(monkeypatch):
        import pypdf

        def boom(*a, **k):
            raise exc

        monkeypatch.setattr(pypdf, "PdfReader", boom)
    return patch


def _pypdf_errors():
    from pypdf.errors import DeprecationError, LimitReachedError, PdfReadError

    return {"NotImplementedError": NotImplementedError("unsupported filter"),
            "LimitReachedError": LimitReachedError("decompression limit"),
            "DeprecationError": DeprecationError("old API"), "RecursionError": RecursionError("deep"),
            "AssertionError": AssertionError(), "KeyError": KeyError("/Root"), "PdfReadError": PdfReadError("EOF"),
            "MemoryError": MemoryError(), "ZeroDivisionError": ZeroDivisionError("division by zero")}


@pytest.mark.parametrize("name", list(_pypdf_errors()))
def test_pdf_that_makes_pypdf_raise_is_skipped(tmp_path, monkeypatch, embeddings, name):
    docs = write_files(tmp_path / "docs", {**GOOD, "bad.pdf": b"%PDF-1.7\n..."})
    _pypdf_raising(_pypdf_errors()[name])(monkeypatch)
    report = build_index([docs], tmp_path / "store", embeddings)
    assert (report.files_indexed, report.files_skipped) == (3, 1)
    assert name in one_line(report.skipped[0]) and "bad.pdf" in report.skipped[0]


BAD_FILES = {
    "garbage pdf": ("x.pdf", os.urandom(3000), "unreadable PDF"),
    "truncated pdf": ("x.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\nxref\n0 3\n", "unreadable PDF"),
    "binary txt": ("x.txt", b"\x00\x01\x02" * 100, "binary content"),
    "empty md": ("x.md", b"   \n\n", "no text"),
    "html with only script": ("x.html", b"<script>alert(1)</script>", "no text"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_is_skipped_and_the_rest_indexed(tmp_path, embeddings, case):
    name, data, expected = BAD_FILES[case]
    docs = write_files(tmp_path / "docs", {**GOOD, name: data})
    report = build_index([docs], tmp_path / "store", embeddings)
    assert report.files_indexed == 3 and report.files_skipped == 1
    assert expected in one_line(report.skipped[0])


def test_deeply_nested_html_is_read(tmp_path, embeddings):
    nested = "<div>" * 5000 + "Durians smell strongly." + "</div>" * 5000
    docs = write_files(tmp_path / "docs", {"deep.html": nested})
    report = build_index([docs], tmp_path / "store", embeddings)
    assert report.files_indexed == 1 and "Durians" in Store.load(tmp_path / "store").docs[0]["text"]


def test_file_over_the_size_cap_is_skipped_with_the_fix(tmp_path, embeddings):
    docs = write_files(tmp_path / "docs", {**GOOD, "huge.txt": "word " * 30_000})
    report = build_index([docs], tmp_path / "store", embeddings, max_file_bytes=100_000)
    assert report.files_indexed == 3 and "--max-file-mb" in one_line(report.skipped[0])


def test_progress_is_plain_lines_when_piped(capsys, embeddings):
    from chains.index import embed_chunks

    embed_chunks(embeddings, ["a chunk of text"] * 3, progress=True)  # capsys: stderr is not a terminal
    err = capsys.readouterr().err
    assert "embedding: 3/3 chunks (100%)" in err and "\r" not in err


SYMLINKS = {
    "file outside": lambda docs, outside: (docs / "secret.txt").symlink_to(outside / "secret.txt"),
    "folder outside": lambda docs, outside: (docs / "elsewhere").symlink_to(outside, target_is_directory=True),
}


@pytest.mark.parametrize("case", list(SYMLINKS))
def test_symlinks_out_of_the_folder_are_not_followed(tmp_path, embeddings, case):
    outside = write_files(tmp_path / "private", {"secret.txt": "The password is hunter2. " * 10})
    docs = write_files(tmp_path / "docs", GOOD)
    SYMLINKS[case](docs, outside)
    report = build_index([docs], tmp_path / "store", embeddings)
    assert report.files_indexed == 3 and "outside" in one_line(report.skipped[0])
    assert not any("hunter2" in d["text"] for d in Store.load(tmp_path / "store").docs)


def test_symlink_inside_the_folder_is_indexed_once(tmp_path, embeddings):
    docs = write_files(tmp_path / "docs", GOOD)
    (docs / "again.txt").symlink_to(docs / "apples.txt")
    report = build_index([docs], tmp_path / "store", embeddings)
    assert (report.files_indexed, report.files_skipped) == (3, 0)


def test_fifo_named_like_a_document_is_skipped(tmp_path, embeddings):
    docs = write_files(tmp_path / "docs", GOOD)
    os.mkfifo(docs / "pipe.txt")
    report = build_index([docs, docs / "pipe.txt"], tmp_path / "store", embeddings)  # walked, and named outright
    assert report.files_indexed == 3 and "not a regular file" in one_line(report.skipped[0])


INDEX_ERRORS = {
    "missing path": (lambda t: ([t / "nope"], {}), "does not exist"),
    "nothing to index": (lambda t: ([write_files(t / "bin", {"a.bin": b"x"})], {}), "no txt/md"),
    "all skipped": (lambda t: ([write_files(t / "e", {"a.txt": b"\x00" * 9})], {}), "nothing to index"),
    "unknown index type": (lambda t: ([write_files(t / "d", GOOD)], {"index_type": "Bogus99"}), "unknown FAISS index"),
    "ivf too small": (lambda t: ([write_files(t / "d", GOOD)], {"index_type": "IVF256,Flat"}), "needs at least 256"),
    "hnsw0 aborts faiss": (lambda t: ([write_files(t / "d", GOOD)], {"index_type": "HNSW0"}), "unknown FAISS index"),
    "a billion ivf lists": (lambda t: ([write_files(t / "d", GOOD)], {"index_type": "IVF1000000000,Flat"}), "65536"),
    "idmap": (lambda t: ([write_files(t / "d", GOOD)], {"index_type": "IDMap,Flat"}), "unknown FAISS index"),
    "pq not dividing": (lambda t: ([write_files(t / "d", GOOD)], {"index_type": "IVF1,PQ7"}), "cannot build"),
}


@pytest.mark.parametrize("case", list(INDEX_ERRORS))
def test_index_errors_are_one_line(tmp_path, embeddings, case):
    make, expected = INDEX_ERRORS[case]
    paths, kwargs = make(tmp_path)
    with pytest.raises(LLMAppError) as err:
        build_index(paths, tmp_path / "store", embeddings, **kwargs)
    assert expected in one_line(str(err.value))


def test_store_left_mid_swap_is_read_and_recovered(built, tmp_path, embeddings):
    """A writer killed between its two renames: readers still get the store; the next run puts it back."""
    store = tmp_path / "store"
    shutil.copytree(built[1], tmp_path / ".store.old-999999")  # pid 999999: not alive
    (tmp_path / ".store.tmp-999999-abc").mkdir()
    assert len(Store.load(store)) > 0  # read from the previous copy
    report = build_index([built[0]], store, embeddings)
    assert report.files_unchanged == 3 and report.files_indexed == 0  # nothing re-embedded
    assert (store / MANIFEST).exists() and not leftovers(store)


def test_leftovers_of_an_older_llmapp_are_recovered_and_cleaned(built, tmp_path, embeddings):
    """Older versions stranded the store in .NAME.old-PID and left .NAME.tmp-XXXXXXXX: both are handled."""
    store = tmp_path / "store"
    shutil.copytree(built[1], tmp_path / ".store.old-4000000")  # beyond pid_max: never a live process
    (tmp_path / ".store.tmp-k2j4_x9a").mkdir()
    report = build_index([built[0]], store, embeddings)
    assert report.files_unchanged == 3 and not leftovers(store)  # the stranded store came back, unembedded


def test_update_with_embeddings_of_another_width_is_refused(built, store_copy, tmp_path):
    class Narrow:
        model = "minilm-l6"

        def encode(self, texts):
            return np.ones((len(texts), 8), dtype="float32")

    (built[0] / "new.txt").write_text("Dates are sweet. " * 20)
    try:
        with pytest.raises(LLMAppError, match="384-dimensional vectors but") as err:
            build_index([built[0]], store_copy, Narrow())
        one_line(str(err.value))
    finally:
        (built[0] / "new.txt").unlink()
    assert len(Store.load(store_copy)) > 0  # the store is as it was


# ---- the chat REPL: one line, the session goes on, the history is never replaced by a bad file ------------
@pytest.fixture
def chat(tmp_path, monkeypatch):
    from llmapp.backends import load_chat_model

    monkeypatch.setenv("LLMAPP_HOME", str(tmp_path / "home"))
    model = load_chat_model("scripted", backend="fake", replies=["Noted."], max_tokens=8)
    session = ChatSession(chat_model=model, model="scripted", backend="fake", log=ConversationLog.new())
    list(session.send("My name is Ada."))
    return session


def _saved(tmp_path: Path, **overrides) -> Path:
    data = {"version": 1, "model": "scripted", "system": None, "settings": {},
            "messages": [{"role": "user", "content": "Other chat"}]}
    data.update(overrides)
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(data))
    return path


SAVE_TARGETS = {
    "a folder": lambda t: t,
    "under a file": lambda t: (t / "f.txt").write_text("x") and t / "f.txt" / "chat.json",
    "name too long": lambda t: t / ("x" * 300 + ".json"),
    "read-only filesystem": lambda t: Path("/proc/llmapp-chat.json"),
    "folder that cannot be made": lambda t: Path("/proc/llmapp-nope/chat.json"),
}


@pytest.mark.parametrize("case", list(SAVE_TARGETS))
def test_save_to_a_bad_path_is_one_line_and_the_chat_goes_on(chat, tmp_path, case):
    target = SAVE_TARGETS[case](tmp_path)
    with pytest.raises(LLMAppError) as err:
        chat.run_command(f"/save {target}")
    assert "cannot save" in one_line(str(err.value))
    assert [m["content"] for m in chat.messages] == ["My name is Ada.", "Noted."]
    assert "".join(chat.send("Still there?")) == "Noted."


LOAD_FILES = {
    "settings a string": (lambda t: _saved(t, settings="temperature=0.7"), "'settings' must be an object"),
    "settings list value": (lambda t: _saved(t, settings={"temperature": [1]}), "temperature"),
    "stop not a list": (lambda t: _saved(t, settings={"stop": "END"}), "stop must be a list"),
    "stop list of numbers": (lambda t: _saved(t, settings={"stop": [1, 2]}), "stop"),
    "huge seed": (lambda t: _saved(t, settings={"seed": 10**30}), "seed="),
    "nan temperature": (lambda t: _saved(t, settings={"temperature": float("nan")}), "temperature=nan"),
    "negative temperature": (lambda t: _saved(t, settings={"temperature": -1}), "temperature=-1"),
    "unknown setting": (lambda t: _saved(t, settings={"warp": 9}), "unknown generation setting 'warp'"),
    "max_context a string": (lambda t: _saved(t, settings={"max_context": "big"}), "max_context"),
    "truncate a string": (lambda t: _saved(t, settings={"truncate": "yes"}), "truncate"),
    "no messages": (lambda t: _saved(t, messages=None), "'messages' list"),
    "bad role": (lambda t: _saved(t, messages=[{"role": "wizard", "content": "x"}]), "role"),
    "content not text": (lambda t: _saved(t, messages=[{"role": "user", "content": {"a": 1}}]), "content"),
    "content lone surrogate": (lambda t: _saved(t, messages=[{"role": "user", "content": "\udc80"}]), "not valid Unicode"),
    "stop lone surrogate": (lambda t: _saved(t, settings={"stop": ["\ud800"]}), "not valid Unicode"),
    "system a number": (lambda t: _saved(t, system=7), "'system'"),
    "model a list": (lambda t: _saved(t, model=["a"]), "'model'"),
    "model with NUL": (lambda t: _saved(t, model="a\x00b"), "NUL"),
    "future version": (lambda t: _saved(t, version=99), "format version"),
    "not json": (lambda t: (t / "x.json").write_text("{oops") and t / "x.json", "not valid JSON"),
    "deeply nested": (lambda t: (t / "x.json").write_text("[" * 100_000) and t / "x.json", "not valid JSON"),
    "a folder": (lambda t: t, "not a regular file"),
    "missing": (lambda t: t / "nope.json", "cannot read"),
    "jsonl bad settings": (lambda t: (t / "x.jsonl").write_text(
        '{"type": "header", "version": 1}\n{"type": "settings", "values": {"seed": -4}}\n') and t / "x.jsonl", "seed=-4"),
    "jsonl bad event": (lambda t: (t / "x.jsonl").write_text(
        '{"type": "header", "version": 1}\n{"type": "teleport"}\n') and t / "x.jsonl", "unknown event type"),
}


@pytest.mark.parametrize("case", list(LOAD_FILES))
def test_load_of_a_bad_file_is_one_line_and_keeps_the_history(chat, tmp_path, case):
    make, expected = LOAD_FILES[case]
    path = make(tmp_path)
    before, config = [dict(m) for m in chat.messages], chat.config
    with pytest.raises(LLMAppError) as err:
        chat.run_command(f"/load {path}")
    assert expected in one_line(str(err.value))
    assert chat.messages == before and chat.config == config  # nothing replaced


SET_VALUES = {"seed=99999999999999999999": "seed=", "temperature=nan": "temperature=nan",
              "temperature=-1": "temperature=-1", "top_k=-1": "top_k=-1", "max_tokens=0": "max_tokens=0",
              "top_p=0": "top_p=0", "max_context=abc": "max_context", "max_context=4": "max_context",
              "warp=9": "unknown setting", "truncate=maybe": "truncate", "repetition_penalty=inf": "repetition_penalty"}


@pytest.mark.parametrize("pair", list(SET_VALUES))
def test_set_refuses_bad_values_and_keeps_the_settings(chat, pair):
    before = (chat.config, chat.max_context)
    with pytest.raises(LLMAppError) as err:
        chat.run_command(f"/set {pair}")
    assert SET_VALUES[pair] in one_line(str(err.value))
    assert (chat.config, chat.max_context) == before
    assert "".join(chat.send("Go on.")) == "Noted."  # the next message works


def test_bytes_that_are_not_utf8_never_break_the_autosave(chat):
    """Piped stdin that is not UTF-8 arrives as surrogates; they become U+FFFD, and the log stays readable."""
    assert "".join(chat.send("caf\udce9 au lait")) == "Noted."
    chat.run_command("/system be \udcff brief")
    state, torn = read_log(chat.log.path)
    assert not torn and state.messages[-2]["content"] == "caf\ufffd au lait" and "\ufffd" in state.system


@pytest.mark.parametrize("line", ["/rag /tmp/a\x00b", "/model a\x00b", "/load a\x00b.json"])
def test_commands_with_a_nul_are_one_line(chat, line):
    with pytest.raises(LLMAppError) as err:
        chat.run_command(line)
    assert "NUL" in one_line(str(err.value))


def test_set_truncate_is_kept_and_shown(chat):
    assert "truncate=True" in chat.run_command("/set truncate=true")
    assert chat.config.truncate is True and chat.settings_dict()["truncate"] is True


def test_continue_from_a_poisoned_autosave_keeps_the_history(chat, caplog):
    path = chat.log.path
    with path.open("a") as f:  # a bad value that reached the log (an older llmapp, a hand edit)
        f.write(json.dumps({"type": "settings", "values": {"seed": 10**30}, "model": "scripted"}) + "\n")
    log, state = ConversationLog.open_existing(path)
    assert [m["content"] for m in state.messages] == ["My name is Ada.", "Noted."]
    assert state.settings == {} and "ignoring saved settings" in caplog.text
    with pytest.raises(LLMAppError, match="seed="):
        read_log(path)  # /load of the same file is strict


# ---- run folders and the CLI: exit 2 with one line ------------------------------------------------------
def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    from llmapp.cli import main

    capsys.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_exit2(argv, capsys, expected: str) -> None:
    code, out, err = run_cli(argv, capsys)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("WARNING", "INFO"))]
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from llmapp.train.trainer import preset, train

    root = tmp_path_factory.mktemp("run")
    data = root / "data.txt"
    data.write_text((Path(__file__).resolve().parent.parent / "llmapp" / "corpora" / "tinyshakespeare.txt")
                    .read_text()[:20_000])
    cfg = preset("tiny")
    import dataclasses

    cfg = dataclasses.replace(cfg, data=str(data), out_dir=str(root / "run"), max_iters=6, eval_interval=3,
                              eval_iters=2, lr_decay_iters=6)
    train(cfg, progress=False)
    return root


def _json_edit(name: str, change):
    def damage(run: Path) -> None:
        path = run / "last" / name
        data = json.loads(path.read_text())
        path.write_text(json.dumps(change(data)))
    return damage


def _torch_save(obj):
    def damage(run: Path) -> None:
        import torch

        torch.save(obj, run / "last" / "state.pt")
    return damage


RUN_DAMAGE = {
    "weights truncated": (lambda r: (r / "last" / "model.safetensors").write_bytes(b"\x08\x00"), "sample", "model.safetensors"),
    "weights of another shape": (lambda r: _other_weights(r), "sample", "model.safetensors"),
    "weights missing": (lambda r: (r / "last" / "model.safetensors").unlink(), "sample", "no checkpoint"),
    "config not json": (lambda r: (r / "last" / "config.json").write_text("{bad"), "sample", "config.json"),
    "config a list": (lambda r: (r / "last" / "config.json").write_text("[1]"), "sample", "config.json"),
    "config unknown model key": (_json_edit("config.json", lambda c: {**c, "model": {**c["model"], "zzz": 1}}), "sample", "unknown key 'zzz'"),
    "config model n_head 3": (_json_edit("config.json", lambda c: {**c, "model": {**c["model"], "n_head": 3}}), "sample", "n_head=3"),
    "config model layers string": (_json_edit("config.json", lambda c: {**c, "model": {**c["model"], "n_layer": "2"}}), "sample", "'n_layer'"),
    "config future format": (_json_edit("config.json", lambda c: {**c, "format": 99}), "sample", "format 99"),
    "config no tokenizer": (_json_edit("config.json", lambda c: {k: v for k, v in c.items() if k != "tokenizer"}), "sample", "'tokenizer'"),
    "config chars not strings": (_json_edit("config.json", lambda c: {**c, "tokenizer": {"type": "char", "chars": [1]}}), "sample", "chars"),
    "config model_type unknown": (_json_edit("config.json", lambda c: {**c, "train": {**c["train"], "model_type": "rnn"}}), "sample", "model_type"),
    "state not torch": (lambda r: (r / "last" / "state.pt").write_text("garbage"), "resume", "state.pt"),
    "state wrong shape": (_torch_save({"step": 1}), "resume", "'optimizer' is missing"),
    "state negative step": (None, "resume", "'step'"),
    "history not json": (lambda r: (r / "last" / "history.json").write_text("{"), "resume", "history.json"),
    "history a list": (lambda r: (r / "last" / "history.json").write_text("[1]"), "resume", "history.json"),
    "history evals malformed": (_json_edit("history.json", lambda h: {**h, "evals": [{"step": "x"}]}), "resume", "'step'"),
}


def _other_weights(run: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"transformer.wte.weight": torch.zeros(3, 3)}, str(run / "last" / "model.safetensors"))


def _negative_step(run: Path) -> None:
    import torch

    state = torch.load(run / "last" / "state.pt", weights_only=True)
    state["step"] = -3
    torch.save(state, run / "last" / "state.pt")


RUN_DAMAGE["state negative step"] = (_negative_step, "resume", "'step'")


@pytest.mark.parametrize("case", list(RUN_DAMAGE))
def test_damaged_run_folder_is_exit_2(run_dir, tmp_path, capsys, case):
    damage, command, expected = RUN_DAMAGE[case]
    run = tmp_path / "run"
    shutil.copytree(run_dir / "run", run)
    shutil.rmtree(run / "best")
    damage(run)
    if command == "sample":
        argv = ["sample", "--ckpt", str(run), "--max-tokens", "3"]
    else:
        argv = ["train", "--data", str(run_dir / "data.txt"), "--preset", "tiny", "--out", str(run), "--resume",
                "--quiet", "--set", "max_iters=8", "--set", "eval_interval=3", "--set", "eval_iters=2",
                "--set", "lr_decay_iters=6"]
    assert_exit2(argv, capsys, expected)


CLI_ERRORS = {
    "sample max-tokens 0": (["sample", "--max-tokens", "0"], "max_tokens=0"),
    "sample huge seed": (["sample", "--seed", "9" * 30], "seed="),
    "sample nan temperature": (["sample", "--temperature", "nan"], "temperature=nan"),
    "sample negative temperature": (["sample", "--temperature", "-1"], "temperature=-1"),
    "sample top-k -1": (["sample", "--top-k", "-1"], "top_k=-1"),
    "sample top-p 2": (["sample", "--top-p", "2"], "top_p=2"),
    "train n_head 3": (["train", "--set", "n_head=3"], "does not divide n_embd"),
    "train max_iters -5": (["train", "--set", "max_iters=-5"], "max_iters=-5"),
    "train max_iters 0": (["train", "--set", "max_iters=0"], "max_iters=0"),
    "train lr nan": (["train", "--set", "lr=nan"], "lr=nan"),
    "train dropout 1.5": (["train", "--set", "dropout=1.5"], "dropout=1.5"),
    "train batch_size text": (["train", "--set", "batch_size=abc"], "batch_size"),
    "train unknown key": (["train", "--set", "warp=9"], "unknown setting 'warp'"),
    "train model_type": (["train", "--set", "model_type=rnn"], "model_type"),
    "train huge seed": (["train", "--set", "seed=" + "9" * 30], "seed="),
    "train huge n_embd": (["train", "--set", "n_embd=1000000000"], "n_embd"),
    "train data with NUL": (["train", "--set", "tokenizer=a\x00b"], "NUL"),
}


@pytest.mark.parametrize("case", list(CLI_ERRORS))
def test_cli_bad_options_are_exit_2(run_dir, capsys, case):
    argv, expected = CLI_ERRORS[case]
    if argv[0] == "sample":
        argv = argv + ["--ckpt", str(run_dir / "run")]
    else:
        argv = argv + ["--data", str(run_dir / "data.txt"), "--preset", "tiny", "--out", str(run_dir / "x"), "--quiet"]
    assert_exit2(argv, capsys, expected)


def test_train_on_a_one_byte_file_is_exit_2(tmp_path, capsys):
    (tmp_path / "one.txt").write_text("a")
    assert_exit2(["train", "--data", str(tmp_path / "one.txt"), "--preset", "tiny", "--out", str(tmp_path / "r"),
                  "--quiet"], capsys, "too little")


@pytest.mark.parametrize("content", ["[1, 2]", "{oops", '"max_iters=5"'])
def test_train_config_file_must_be_an_object(tmp_path, capsys, content):
    (tmp_path / "cfg.json").write_text(content)
    (tmp_path / "d.txt").write_text("hello world " * 500)
    assert_exit2(["train", "--data", str(tmp_path / "d.txt"), "--config", str(tmp_path / "cfg.json"),
                  "--out", str(tmp_path / "r"), "--quiet"], capsys, "cfg.json")


GENERATE_ERRORS = {
    "max-tokens 0": (["--max-tokens", "0"], "max_tokens=0"),
    "huge seed": (["--seed", "9" * 30], "seed="),
    "nan temperature": (["--temperature", "nan"], "temperature=nan"),
    "negative temperature": (["--temperature", "-0.5"], "temperature=-0.5"),
}


@pytest.mark.parametrize("case", list(GENERATE_ERRORS))
def test_generate_bad_settings_are_exit_2(capsys, case):
    extra, expected = GENERATE_ERRORS[case]
    assert_exit2(["generate", "hello", "--backend", "fake", "-m", "scripted", *extra], capsys, expected)


@pytest.mark.parametrize("argv, expected", [(["--chunk-tokens", "0"], "chunk_tokens=0"),
                                            (["--chunk-tokens", "99999999"], "chunk_tokens=99999999"),
                                            (["--index", "HNSW0"], "unknown FAISS index")])
def test_index_cli_bad_options_are_exit_2(built, tmp_path, capsys, argv, expected):
    assert_exit2(["index", str(built[0]), "--store", str(tmp_path / "s"), *argv], capsys, expected)
    assert not (tmp_path / "s").exists()


def test_ask_bad_k_and_missing_store_are_exit_2(built, capsys, tmp_path):
    assert_exit2(["ask", "fruit?", "--store", str(built[1]), "-k", "-1", "--backend", "fake"], capsys, "k=-1")
    assert_exit2(["ask", "fruit?", "--store", str(tmp_path / "none"), "--backend", "fake"], capsys, "no store at")


@pytest.mark.parametrize("content", [b"not a gguf at all", b"GGUF\x03\x00\x00\x00truncated"])
def test_malformed_gguf_is_exit_2_and_leaves_no_lock(tmp_path, capsys, monkeypatch, content):
    monkeypatch.setenv("LLMAPP_HOME", str(tmp_path / "home"))
    (tmp_path / "bad.gguf").write_bytes(content)
    for backend in ("llamacpp", "hf"):
        code, out, err = run_cli(["generate", "hi", "-m", str(tmp_path / "bad.gguf"), "--backend", backend], capsys)
        assert code == 2 and "bad.gguf" in one_line(err.splitlines()[-1]), err
    cache = tmp_path / "home" / "models"
    assert not (cache.exists() and list(cache.iterdir()))  # no lock file, no temp folder per bad path


def test_model_name_with_a_slash_fails_at_once(capsys):
    assert_exit2(["generate", "hi", "-m", "no-such-org/no-such-model", "--backend", "hf"], capsys, "never downloads")


def test_index_cli_skips_a_bad_pdf_and_says_so(tmp_path, capsys):
    docs = write_files(tmp_path / "docs", {**GOOD, "bad.pdf": os.urandom(2000)})
    code, out, err = run_cli(["index", str(docs), "--store", str(tmp_path / "store")], capsys)
    assert code == 0 and "3 indexed" in out and "skipped" in err and "bad.pdf" in err


def test_models_piped_is_one_row_per_model(capsys):
    code, out, _ = run_cli(["models"], capsys)  # capsys is not a TTY
    assert code == 0 and any(line.startswith("smollm2-135m-instruct\t") for line in out.splitlines())
    code, out, _ = run_cli(["models", "--json"], capsys)
    assert code == 0 and "smollm2-135m-instruct" in [r["name"] for r in json.loads(out)]


# ---- the server: Host allow-list, exposure, limits, schemas ----------------------------------------------
@pytest.fixture(scope="module")
def server(built):
    from llmapp.server import ServeConfig, create_app, running

    config = ServeConfig(models=["scripted", "minilm-l6"], stores=[str(built[1])], backend="fake", warmup=False,
                         max_tokens=5, max_embedding_inputs=4, max_embedding_tokens=60, max_body_bytes=20_000)
    with running(create_app(config)) as url:
        yield url


def post(url: str, path: str, body, host: str | None = None, raw: bytes | None = None) -> httpx.Response:
    headers = {"Host": host} if host else {}
    if raw is not None:
        headers["Content-Type"] = "application/json"
        return httpx.post(url + path, content=raw, headers=headers, timeout=30)
    return httpx.post(url + path, json=body, headers=headers, timeout=30)


CHAT = {"model": "scripted", "messages": [{"role": "user", "content": "Hi"}]}
HOSTS = {"attacker.example": 421, "attacker.example:8000": 421, "127.0.0.1.attacker.example": 421,
         "localhost.": 200, "localhost:1": 200, "LOCALHOST": 200, "[::1]:8000": 200, "[::1": 421,
         "a b": 421, "127.0.0.1:99999": 421, "user@127.0.0.1": 421}


@pytest.mark.parametrize("host", list(HOSTS))
def test_host_header_allow_list(server, host):
    response = post(server, "/v1/chat/completions", CHAT, host=host)
    assert response.status_code == HOSTS[host], response.text
    if response.status_code == 421:
        assert one_line(response.json()["error"]["message"]).startswith("this server does not answer for Host")


def test_dns_rebinding_cannot_read_a_rag_answer(server):
    body = {"model": "rag:store", "messages": [{"role": "user", "content": "What colour are bananas?"}]}
    refused = post(server, "/v1/chat/completions", body, host="attacker.example")
    assert refused.status_code == 421 and "Bananas" not in refused.text and "apples" not in refused.text.lower()
    for path in ("/health", "/v1/models"):
        assert httpx.get(server + path, headers={"Host": "attacker.example"}).status_code == 421
    assert post(server, "/v1/chat/completions", body).status_code == 200  # loopback clients are served


REQUESTS = {
    "max_tokens over the cap is cut": ("/v1/chat/completions", {**CHAT, "max_tokens": 1000}, 200),
    "max_tokens 0": ("/v1/chat/completions", {**CHAT, "max_tokens": 0}, 400),
    "max_tokens absurd": ("/v1/chat/completions", {**CHAT, "max_tokens": 10**12}, 400),
    "huge seed": ("/v1/chat/completions", {**CHAT, "seed": 10**30}, 400),
    "negative seed": ("/v1/completions", {"model": "scripted", "prompt": "Hi", "seed": -1}, 400),
    "negative temperature": ("/v1/chat/completions", {**CHAT, "temperature": -1}, 400),
    "top_k -1": ("/v1/chat/completions", {**CHAT, "top_k": -1}, 400),
    "top_p 0": ("/v1/chat/completions", {**CHAT, "top_p": 0}, 400),
    "repetition_penalty huge": ("/v1/chat/completions", {**CHAT, "repetition_penalty": 1e9}, 400),
    "five stops": ("/v1/chat/completions", {**CHAT, "stop": ["a", "b", "c", "d", "e"]}, 400),
    "no messages": ("/v1/chat/completions", {"model": "scripted", "messages": []}, 400),
    "unknown field": ("/v1/chat/completions", {**CHAT, "warp": 9}, 400),
    "unknown model": ("/v1/chat/completions", {**CHAT, "model": "nope"}, 404),
    "embeddings over the count": ("/v1/embeddings", {"model": "minilm-l6", "input": ["a"] * 5}, 400),
    "embeddings over the tokens": ("/v1/embeddings", {"model": "minilm-l6", "input": ["word " * 40] * 2}, 400),
    "embeddings input too long": ("/v1/embeddings", {"model": "minilm-l6", "input": "word " * 600}, 400),
    "embeddings empty string": ("/v1/embeddings", {"model": "minilm-l6", "input": [""]}, 400),
    "embeddings token ids": ("/v1/embeddings", {"model": "minilm-l6", "input": [[1, 2, 3]]}, 400),
    "body too large": ("/v1/embeddings", {"model": "minilm-l6", "input": "x" * 30_000}, 413),
}


@pytest.mark.parametrize("case", list(REQUESTS))
def test_request_limits_and_schemas(server, case):
    path, body, status = REQUESTS[case]
    response = post(server, path, body)
    assert response.status_code == status, response.text
    if status != 200:
        error = response.json()["error"]
        assert one_line(error["message"]) and error["type"]
    elif path == "/v1/chat/completions":
        assert response.json()["usage"]["completion_tokens"] <= 5  # the server's --max-tokens


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'{"model": "scripted", "messages": "hi"}', b"\xff\xfe",
                                 b'{"model": "scripted", "messages": [{"role": "user", "content": "\\ud800 hi"}]}',
                                 b'{"model": "minilm-l6", "input": ["\\udfff"]}',
                                 b'{"model": "scripted", "messages": [{"role": "user", "content": "Hi"}], "temperature": NaN}'])
def test_malformed_bodies_are_400(server, raw):
    response = post(server, "/v1/chat/completions", None, raw=raw)
    assert response.status_code == 400 and one_line(response.json()["error"]["message"])


EXPOSURE = {
    "0.0.0.0 without a key": (["--host", "0.0.0.0"], "--insecure"),
    "a LAN address without a key": (["--host", "192.168.1.20"], "--api-key"),
    "port out of range": (["--port", "70000"], "70000"),
}


@pytest.mark.parametrize("case", list(EXPOSURE))
def test_serve_refuses_exposure_without_a_key(capsys, case):
    argv, expected = EXPOSURE[case]
    code, out, err = run_cli(["serve", "--model", "minilm-l6", *argv], capsys)
    assert code == 2 and expected in err and "loading models" not in err


def test_insecure_exposure_is_allowed_with_a_warning(capsys):
    from llmapp.cli.serve import _warn_exposure
    from llmapp.server import ServeConfig

    _warn_exposure(ServeConfig(host="0.0.0.0", insecure=True, models=["scripted"]))
    err = capsys.readouterr().err
    assert "warning: --insecure" in err and "--allowed-host" in err


def test_generation_deadline_stops_with_what_it_has(monkeypatch):
    from llmapp.backends import load_chat_model
    from llmapp.server import ServeConfig, create_app, running
    from llmapp.server import app as app_module
    from llmapp.server.catalog import ServedModel

    slow = load_chat_model("slow", backend="fake", replies=["tick " * 200], delay=0.02, max_tokens=400)
    monkeypatch.setattr(app_module, "load_catalog", lambda config: {"slow": ServedModel("slow", "chat", "slow", chat=slow)})
    config = ServeConfig(models=["slow"], backend="fake", warmup=False, timeout=0.3)
    with running(create_app(config)) as url:
        response = post(url, "/v1/chat/completions", {"model": "slow", "max_tokens": 400,
                                                      "messages": [{"role": "user", "content": "go"}]})
    choice = response.json()["choices"][0]
    assert response.status_code == 200 and choice["finish_reason"] == "length"
    assert 0 < response.json()["usage"]["completion_tokens"] < 200
