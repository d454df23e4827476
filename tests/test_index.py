"""chains.index: building, loading and updating FAISS stores, and every kind of bad input."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest

from chains.documents import decode_bytes
from chains.index import IndexReport, build_index
from chains.store import DOCSTORE, INDEX_FILE, MANIFEST, Hit, Store
from llmapp.core.errors import LLMAppError
from llmapp.corpora import GENAI_NOTES as DEMO_DATA


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    from llmapp import load_embeddings

    store = tmp_path_factory.mktemp("stores") / "demo"
    report = build_index([DEMO_DATA], store, load_embeddings())
    return store, report


def _docs(tmp_path, files: dict[str, bytes | str]):
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def test_build_and_search_keep_sources_and_offsets(demo_store):
    store_dir, report = demo_store
    assert isinstance(report, IndexReport)
    assert (report.files_indexed, report.files_skipped, report.chunks > 20) == (5, 0, True)
    store = Store.load(store_dir)
    assert len(store) == report.chunks
    hits = store.search("What are the generator and the discriminator?", k=3)
    assert len(hits) == 3 and all(isinstance(h, Hit) for h in hits)
    assert hits[0].score >= hits[1].score >= hits[2].score > 0.3
    assert "discriminator" in hits[0].text.lower()
    for h in hits:  # offsets point back into the file's text
        assert open(h.source, encoding="utf-8").read()[h.start:h.end] == h.text
    manifest = store.manifest
    assert manifest["embedding_model"] == "minilm-l6" and manifest["dimension"] == 384
    assert manifest["index_type"] == "Flat" and manifest["format_version"] == 1
    assert all(len(v["sha256"]) == 64 for v in manifest["files"].values())


def test_loading_never_unpickles(demo_store, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a store load unpickled something")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    store = Store.load(demo_store[0])
    assert store.search("variational autoencoder", k=1)
    assert store.as_langchain().similarity_search("variational autoencoder", k=1)[0].metadata["source"]


def test_incremental_update_reembeds_only_changed_files(tmp_path, embeddings):
    folder = _docs(tmp_path, {"a.txt": "Apples are red fruit. " * 20, "b.md": "# Bananas\nBananas are yellow. " * 20,
                              "sub/c.txt": "Cherries are small. " * 20})
    store = tmp_path / "store"
    first = build_index([folder], store, embeddings)
    assert (first.files_indexed, first.files_unchanged) == (3, 0)
    stamp = (store / MANIFEST).stat().st_mtime_ns
    again = build_index([folder], store, embeddings)
    assert (again.files_indexed, again.files_unchanged, again.chunks) == (0, 3, first.chunks)
    assert (store / MANIFEST).stat().st_mtime_ns == stamp  # nothing changed: nothing rewritten
    (folder / "a.txt").write_text("Apricots are orange. " * 20)
    (folder / "sub" / "c.txt").unlink()
    (folder / "d.txt").write_text("Dates are sweet. " * 20)

    calls = []
    original = type(embeddings).encode
    try:
        type(embeddings).encode = lambda self, texts: calls.append(list(texts)) or original(self, texts)
        third = build_index([folder], store, embeddings)
    finally:
        type(embeddings).encode = original
    assert (third.files_indexed, third.files_unchanged, third.files_removed) == (2, 1, 1)
    embedded = " ".join(t for batch in calls for t in batch)
    assert "Apricots" in embedded and "Dates" in embedded and "Bananas" not in embedded
    loaded = Store.load(store)
    sources = {d["source"].rsplit("/", 1)[-1] for d in loaded.docs}
    assert sources == {"a.txt", "b.md", "d.txt"}
    assert "Apricots" in loaded.search("apricot", k=1)[0].text


def test_empty_folder_and_missing_path_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LLMAppError, match="no txt/md"):
        build_index([tmp_path / "empty"], tmp_path / "store")
    with pytest.raises(LLMAppError, match="does not exist"):
        build_index([tmp_path / "nope"], tmp_path / "store")


def test_binary_files_are_skipped_and_counted_and_encodings_decoded(tmp_path, embeddings):
    folder = _docs(tmp_path, {
        "blob.txt": bytes(range(256)) * 8,  # NUL bytes: binary
        "latin1.txt": "Le café crème est délicieux à Paris.".encode("latin-1"),
        "bom.md": "\ufeffThe naïve résumé was written in UTF-8 with a BOM.".encode("utf-8"),
        "cp1252.txt": "He said “hello” – and left.".encode("cp1252"),
        "page.html": "<html><head><style>p{}</style><script>var x=1;</script></head>"
                     "<body><h1>Kiwis</h1><p>Kiwis are fuzzy brown fruit.</p></body></html>",
    })
    report = build_index([folder], tmp_path / "store", embeddings)
    assert (report.files_indexed, report.files_skipped) == (4, 1)
    assert "blob.txt" in report.skipped[0] and "binary" in report.skipped[0]
    texts = " ".join(d["text"] for d in Store.load(tmp_path / "store").docs)
    assert "café crème" in texts and "naïve résumé" in texts and "“hello”" in texts
    assert "Kiwis are fuzzy" in texts and "var x" not in texts and "\ufeff" not in texts
    assert decode_bytes("é".encode()) == "é"


def test_all_files_skipped_is_an_error(tmp_path):
    folder = _docs(tmp_path, {"blob.txt": b"\x00\x01\x02" * 100})
    with pytest.raises(LLMAppError, match="nothing to index"):
        build_index([folder], tmp_path / "store")


def test_pdf_text_is_extracted(tmp_path, embeddings):
    folder = _docs(tmp_path, {"doc.pdf": _tiny_pdf("Quokkas are small marsupials from Australia.")})
    build_index([folder], tmp_path / "store", embeddings)
    assert "Quokkas are small marsupials" in Store.load(tmp_path / "store").docs[0]["text"]


def test_ask_before_indexing_and_foreign_folder(tmp_path):
    with pytest.raises(LLMAppError, match="build one first"):
        Store.load(tmp_path / "never-built")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(LLMAppError, match="not an llmapp store"):
        Store.load(tmp_path / "mine")
    with pytest.raises(LLMAppError, match="not an llmapp store"):
        build_index([DEMO_DATA], tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_corrupt_store_is_detected_and_failed_update_keeps_the_last_good_store(demo_store, tmp_path, embeddings):
    store = tmp_path / "copy"
    shutil.copytree(demo_store[0], store)
    good = len(Store.load(store))

    class Broken(type(embeddings)):
        def encode(self, texts):
            raise RuntimeError("disk full")

    folder = _docs(tmp_path, {"new.txt": "Something new to embed. " * 10})
    with pytest.raises(RuntimeError, match="disk full"):
        build_index([folder], store, Broken())
    assert len(Store.load(store)) == good  # the interrupted update left the old store whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".copy.tmp")]

    data = (store / INDEX_FILE).read_bytes()
    (store / INDEX_FILE).write_bytes(data[: len(data) // 2])  # a partial write
    with pytest.raises(LLMAppError, match="corrupt or partial"):
        Store.load(store)
    with pytest.raises(LLMAppError, match="--rebuild"):
        build_index([DEMO_DATA], store)
    (store / MANIFEST).write_text("{not json")
    with pytest.raises(LLMAppError, match="corrupt"):
        Store.load(store)
    (store / DOCSTORE).unlink()
    report = build_index([DEMO_DATA], store, embeddings, rebuild=True)
    assert len(Store.load(store)) == report.chunks == good


def test_a_different_embedding_model_is_refused(demo_store):
    from llmapp import load_embeddings
    from llmapp.models import bundled

    other = load_embeddings(str(bundled.minilm_dir()))  # same weights, but not the model the store names
    with pytest.raises(LLMAppError, match="was built with embeddings 'minilm-l6'"):
        Store.load(demo_store[0], other)
    with pytest.raises(LLMAppError, match="was built with embeddings"):
        build_index([DEMO_DATA], demo_store[0], other)


def test_hnsw_index_matches_flat_and_bad_types_are_named(demo_store, tmp_path, embeddings):
    shutil.copytree(demo_store[0], tmp_path / "h")
    report = build_index([DEMO_DATA], tmp_path / "h", embeddings, index_type="HNSW32")
    assert report.files_unchanged == 5 and report.files_indexed == 0  # switching type re-uses the vectors
    hnsw, flat = Store.load(tmp_path / "h"), Store.load(demo_store[0])
    assert hnsw.manifest["index_type"] == "HNSW32"
    q = "How are transformer models trained?"
    assert [h.id for h in hnsw.search(q, 4)] == [h.id for h in flat.search(q, 4)]
    with pytest.raises(LLMAppError, match="unknown FAISS index type"):
        build_index([DEMO_DATA], tmp_path / "x", embeddings, index_type="Bogus")
    with pytest.raises(LLMAppError, match="needs at least 4096 chunks"):
        build_index([_docs(tmp_path, {"a.txt": "Only a few chunks here."})], tmp_path / "y", embeddings,
                    index_type="IVF4096,Flat")
    assert np.allclose(np.linalg.norm(flat.vectors, axis=1), 1, atol=1e-4)


def _tiny_pdf(text: str) -> bytes:
    """A one-page PDF with one line of text, written by hand (no PDF writer needed)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out
