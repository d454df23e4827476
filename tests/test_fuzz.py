"""Property-based fuzzing: whatever the bytes, each reader answers with a value or one-line LLMAppError.

Targets: the document readers (mutated PDFs, HTML, any encoding), the store loader (mutated payload
files, manifests and docstore rows), chat files (JSON and JSONL), run configs (``config.json`` and
``--set``), and the server's request schemas (never a 500). CI runs the ``ci`` profile (a bounded
number of examples, no deadline); ``HYPOTHESIS_PROFILE=deep`` runs many more.

    python -m pytest tests/test_fuzz.py -q
    HYPOTHESIS_PROFILE=deep python -m pytest tests/test_fuzz.py -q
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chains.documents import decode_bytes, read_document
from chains.index import build_index
from chains.store import DOCSTORE, INDEX_FILE, MANIFEST, VECTORS, Store
from llmapp.core.errors import LLMAppError

settings.register_profile("ci", max_examples=50, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                 HealthCheck.data_too_large])
settings.register_profile("deep", parent=settings.get_profile("ci"), max_examples=2000, derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ANY_TEXT = st.text(st.characters(blacklist_categories=()), max_size=20)  # lone surrogates included
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)


def one_line(exc: BaseException) -> None:
    text = str(exc)
    assert isinstance(exc, LLMAppError) and text and "\n" not in text and "Traceback" not in text, repr(exc)


def mutate(data: bytes, draw) -> bytes:
    """A few flips, insertions, deletions or a truncation of ``data``."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "splice"]))
        at = draw(st.integers(0, max(0, len(out) - 1)))
        if kind == "flip" and out:
            out[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del out[at:at + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del out[at:]
        else:  # splice in PDF syntax, where the parser's special cases live
            out[at:at] = draw(st.sampled_from([b"/Filter /LZWDecode", b"/Length 99999999", b"<< /Type /Page >>",
                                               b"/Filter [/FlateDecode /DCTDecode]", b"0 0 obj", b"trailer << >>",
                                               b"/Kids [3 0 R 3 0 R]", b"stream\nxx\nendstream", b"(\\377\\376)"]))
    return bytes(out)


def _pdf() -> bytes:
    """A small, valid PDF with one page of text (built by hand: pypdf cannot write text)."""
    text = b"BT /F1 12 Tf 72 720 Td (Apples are red fruit that grow on trees.) Tj ET"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


PDF = _pdf()


def test_the_seed_pdf_reads():
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a.pdf").write_bytes(PDF)
        assert "Apples are red" in read_document(Path(tmp) / "a.pdf")


def _read(suffix: str, data: bytes) -> str | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"doc{suffix}"
        path.write_bytes(data)
        try:
            text = read_document(path)
        except LLMAppError as exc:
            one_line(exc)
            return None
    assert isinstance(text, str)
    return text


@given(st.data())
def test_mutated_pdfs_are_read_or_refused_in_one_line(data):
    _read(".pdf", mutate(PDF, data.draw))


HTML_BITS = st.sampled_from(["<p>", "</p>", "<div>", "</div>", "<script>", "</script>", "<style>", "<!--", "-->",
                             "<![CDATA[", "]]>", "&amp;", "&#x1F600;", "&#99999999;", "<a href='", "<br/>", "<",
                             ">", "Bananas are yellow. ", "\x00", "\ufeff", "<?xml ?>", "<!DOCTYPE html>"])


@given(st.lists(HTML_BITS | st.text(max_size=12), max_size=60), st.sampled_from(["utf-8", "utf-16", "latin-1",
                                                                              "cp1252", "shift_jis"]))
def test_html_of_any_shape_and_encoding(parts, encoding):
    _read(".html", "".join(parts).encode(encoding, errors="ignore"))


@given(st.binary(max_size=2000))
def test_any_bytes_decode_and_text_files_read(data):
    assert isinstance(decode_bytes(data), str)
    _read(".txt", data)


# ---- the store loader ------------------------------------------------------------------------------------
class _Tok:
    def encode(self, text, add_special_tokens=False, verbose=False):
        return text.split()


class HashEmbeddings:
    """Deterministic 16-d bag-of-words vectors: a store in milliseconds, no model."""

    model = "hash-16"
    client = type("Client", (), {"tokenizer": _Tok()})()

    def encode(self, texts):
        import zlib

        import numpy as np

        out = np.zeros((len(texts), 16), dtype="float32")
        for i, t in enumerate(texts):
            for w in t.split():
                out[i, zlib.crc32(w.encode()) % 16] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture(scope="module")
def seed_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-store")
    docs = root / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Apples are red fruit. " * 30)
    (docs / "b.txt").write_text("Bananas are yellow fruit. " * 30)
    build_index([docs], root / "store", HashEmbeddings())
    return root / "store"


def _load_and_search(store: Path) -> None:
    try:
        loaded = Store.load(store, HashEmbeddings())
        loaded.search("red fruit", k=3)
    except LLMAppError as exc:
        one_line(exc)


def _resign(store: Path, name: str) -> None:
    data = (store / name).read_bytes()
    manifest = json.loads((store / MANIFEST).read_text())
    manifest["payload"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (store / MANIFEST).write_text(json.dumps(manifest))


@given(data=st.data(), name=st.sampled_from([INDEX_FILE, DOCSTORE, VECTORS, MANIFEST]), resign=st.booleans())
def test_mutated_store_files_load_or_refuse(seed_store, data, name, resign):
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        shutil.copytree(seed_store, store)
        (store / name).write_bytes(mutate((store / name).read_bytes(), data.draw))
        if resign and name != MANIFEST:  # past the hash check, into the parsers
            _resign(store, name)
        _load_and_search(store)


@given(key=st.sampled_from(["format_version", "embedding_model", "dimension", "index_type", "files", "payload",
                            "root", "chunk_tokens"]), value=JSON)
def test_manifest_fields_of_any_value(seed_store, key, value):
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        shutil.copytree(seed_store, store)
        manifest = json.loads((store / MANIFEST).read_text())
        manifest[key] = value
        (store / MANIFEST).write_text(json.dumps(manifest))
        _load_and_search(store)


@given(rows=st.lists(JSON | st.fixed_dictionaries({"source": JSON, "start": JSON, "end": JSON, "text": JSON}),
                     min_size=1, max_size=3))
def test_docstore_rows_of_any_shape(seed_store, rows):
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        shutil.copytree(seed_store, store)
        lines = (store / DOCSTORE).read_text().splitlines()
        lines[: len(rows)] = [json.dumps(r) for r in rows]
        (store / DOCSTORE).write_text("\n".join(lines) + "\n")
        _resign(store, DOCSTORE)
        _load_and_search(store)


# ---- chat files ----------------------------------------------------------------------------------------------
CHAT_FIELDS = st.fixed_dictionaries({}, optional={"version": st.just(1) | JSON, "model": JSON, "system": JSON,
                                                  "settings": JSON | st.dictionaries(st.sampled_from(
                                                      ["temperature", "seed", "stop", "max_tokens", "top_k",
                                                       "max_context", "truncate", "top_p"]), JSON, max_size=3),
                                                  "messages": JSON | st.lists(st.fixed_dictionaries(
                                                      {"role": st.sampled_from(["user", "assistant", "x"]) | JSON,
                                                       "content": st.text(max_size=10) | JSON}), max_size=3)})


def _session():
    from llmapp.backends import load_chat_model
    from llmapp.chat.session import ChatSession

    return ChatSession(chat_model=load_chat_model("s", backend="fake", replies=["ok"]), model="s", backend="fake")


@given(CHAT_FIELDS)
def test_chat_json_files_load_or_refuse(body):
    session = _session()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chat.json"
        path.write_text(json.dumps(body))
        try:
            session.run_command(f"/load {path}")
        except LLMAppError as exc:
            one_line(exc)
            assert session.messages == []  # a refused file replaces nothing


EVENT = st.fixed_dictionaries({"type": st.sampled_from(["header", "message", "system", "settings", "pop", "reset"])
                               | JSON}, optional={"version": st.just(1) | JSON, "role": st.sampled_from(["user"]) | JSON,
                                                  "content": JSON, "values": JSON, "model": JSON, "settings": JSON})


@given(st.lists(EVENT, min_size=1, max_size=6), st.binary(max_size=20))
def test_chat_jsonl_logs_replay_or_refuse(events, tail):
    from llmapp.chat.conversation import ConversationLog

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.jsonl"
        path.write_bytes(b"".join(json.dumps(e).encode() + b"\n" for e in events) + tail)
        for action in (lambda: ConversationLog.open_existing(path), lambda: _session().run_command(f"/load {path}")):
            try:
                result = action()
            except LLMAppError as exc:
                one_line(exc)
            else:
                if isinstance(result, tuple):
                    _session().restore(result[1], record=False)  # what --continue does next


# ---- run configs ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seed_run(tmp_path_factory):
    import dataclasses

    from llmapp.train.trainer import preset, train

    root = tmp_path_factory.mktemp("fuzz-run")
    (root / "d.txt").write_text("To be, or not to be, that is the question. " * 200)
    train(dataclasses.replace(preset("tiny"), data=str(root / "d.txt"), out_dir=str(root / "run"), max_iters=2,
                              eval_interval=2, eval_iters=1, lr_decay_iters=2), progress=False)
    return root / "run" / "last"


@given(section=st.sampled_from(["train", "model", "tokenizer", "format", None]), key=st.text(max_size=10) |
       st.sampled_from(["n_layer", "n_head", "n_embd", "block_size", "vocab_size", "bias", "type", "chars",
                        "model_type"]), value=JSON)
def test_run_config_json_of_any_value(seed_run, section, key, value):
    from llmapp.train import checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "last"
        shutil.copytree(seed_run, run)
        cfg = json.loads((run / "config.json").read_text())
        if section is None:
            cfg = value
        elif isinstance(cfg.get(section), dict):
            cfg[section][key] = value
        else:
            cfg[section] = value
        (run / "config.json").write_text(json.dumps(cfg))
        try:
            model, tok, _ = checkpoint.load_model(run)
            tok.decode(model.generate(__import__("torch").tensor([[0]]), 2)[0].tolist())
        except LLMAppError as exc:
            one_line(exc)


@given(st.dictionaries(st.sampled_from(["n_layer", "n_head", "n_embd", "lr", "dropout", "max_iters", "seed",
                                        "batch_size", "beta2", "model_type", "bias", "grad_clip", "threads"]),
                       st.text(max_size=12) | st.integers() | st.floats() | st.booleans() | st.none(), max_size=4))
def test_train_overrides_of_any_value(values):
    from llmapp.core.config import apply_overrides
    from llmapp.train.trainer import TrainConfig

    try:
        apply_overrides(TrainConfig(), {k: str(v) for k, v in values.items()})
        apply_overrides(TrainConfig(), values)
    except LLMAppError as exc:
        one_line(exc)


# ---- the server's request schemas: never a 500 ------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    from llmapp.server import ServeConfig, create_app

    app = create_app(ServeConfig(models=["scripted", "minilm-l6"], backend="fake", warmup=False, max_tokens=8))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


FIELDS = {"/v1/chat/completions": ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
                                   "top_k", "seed", "stop", "stream", "stream_options", "n", "repetition_penalty",
                                   "response_format", "logprobs", "tools", "user"],
          "/v1/completions": ["model", "prompt", "max_tokens", "temperature", "seed", "stop", "echo", "suffix",
                              "best_of", "stream", "top_k"],
          "/v1/embeddings": ["model", "input", "encoding_format", "dimensions"]}
GOOD_BASE = {"/v1/chat/completions": {"model": "scripted", "messages": [{"role": "user", "content": "Hi"}]},
             "/v1/completions": {"model": "scripted", "prompt": "Once"},
             "/v1/embeddings": {"model": "minilm-l6", "input": "hello"}}


@given(data=st.data(), path=st.sampled_from(list(FIELDS)))
def test_request_bodies_of_any_shape_are_never_a_500(client, data, path):
    body = dict(GOOD_BASE[path])
    for key in data.draw(st.lists(st.sampled_from(FIELDS[path]), max_size=3, unique=True)):
        body[key] = data.draw(JSON | st.integers(min_value=-10**40, max_value=10**40))
    response = client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code in (200, 400, 404, 413, 422), response.text
    if response.status_code != 200:
        message = response.json()["error"]["message"]
        assert message and "\n" not in message
