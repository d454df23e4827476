"""The chat-backend seam: choosing a backend, the fake backend, llama.cpp's hidden listener, and the
``openai`` backend against a real ``llmapp serve`` on loopback (never a mock).

    python -m pytest tests/test_backends.py -q
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from llmapp.backends import BACKENDS, backend_for, load_chat_model, load_llm
from llmapp.core.errors import LLMAppError, ModelNotFound, PromptTooLong


def test_the_backend_is_chosen_from_the_name(tmp_path):
    assert backend_for("smollm2-135m-instruct") == "llamacpp"  # the registry's choice
    assert backend_for(str(tmp_path / "any.gguf")) == "llamacpp"
    assert backend_for(str(tmp_path)) == "hf"
    assert backend_for("openai:http://127.0.0.1:8000/v1#m") == "openai"
    assert backend_for("smollm2-135m-instruct", "hf") == "hf"
    with pytest.raises(ModelNotFound, match="unknown backend 'vllm'; use one of: llamacpp, hf, openai, fake"):
        backend_for("x", "vllm")
    assert set(BACKENDS) == {"llamacpp", "hf", "openai", "fake"}


def test_llamacpp_needs_a_gguf_and_says_so(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFound, match="no .gguf weights.*--backend hf"):
        load_chat_model(str(tmp_path), backend="llamacpp").warm()
    with pytest.raises(ModelNotFound, match="no text-completion model"):
        load_llm("openai:http://127.0.0.1:9/v1#m")


def test_a_damaged_gguf_is_one_line(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(4096))
    with pytest.raises(LLMAppError) as err:
        load_chat_model(str(bad)).warm()
    assert "\n" not in str(err.value) and "broken.gguf" in str(err.value)


def test_fake_backend_streams_through_the_shared_machinery():
    chat = load_chat_model("scripted", backend="fake", replies=["one two three four five six"], window=64, max_tokens=20)
    pieces = [c.content for c in chat.stream("hi")]
    assert "".join(pieces) == "one two three four five six" and len([p for p in pieces if p]) >= 6
    assert chat.invoke("hi", stop=["four"]).content == "one two three "
    short = chat.with_generation({"max_tokens": 3}).invoke("hi")
    assert short.content == "one two" and short.response_metadata["finish_reason"] == "length"
    with pytest.raises(PromptTooLong):
        chat.invoke("word " * 80)
    fitted = chat.with_generation({"truncate": True, "max_tokens": 4}).invoke("word " * 80)
    assert fitted.usage_metadata["input_tokens"] == 60  # the 64-token window minus max_tokens


def test_with_generation_keeps_the_engine_and_validates():
    chat = load_chat_model(max_tokens=8)
    copy = chat.with_generation({"temperature": 0.5, "seed": 3})
    assert copy.engine is chat.engine and (copy.temperature, copy.seed, copy.max_tokens) == (0.5, 3, 8)
    assert chat.backend_info()["backend"] == "llamacpp" and chat.backend_info()["threads"] >= 1


def _listeners(pid: int) -> tuple[list[int], list[str]]:
    """TCP ports the process listens on, and the paths of its listening unix sockets."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                ports.append(int(cols[1].rsplit(":", 1)[1], 16))
    paths = []
    for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 8 and cols[6] in inodes and cols[5] == "01":  # 01: listening
            paths.append(cols[7])
    return ports, paths


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real ``llmapp serve`` process (llama.cpp backend) with a RAG store, on a free loopback port."""
    from chains.index import build_index
    from llmapp.corpora import GENAI_NOTES

    store = tmp_path_factory.mktemp("srv") / "notes"
    build_index([GENAI_NOTES], store)
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "llmapp.cli", "serve", "--port", str(port), "--store", str(store),
                             "--model", "smollm2-135m-instruct", "--model", "minilm-l6"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llmapp serve exited: {proc.stdout.read()}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield url, proc, port, store
    proc.terminate()
    proc.wait(timeout=30)


def test_llamacpp_opens_no_listener_beyond_the_servers_own(served):
    url, proc, port, _ = served
    ports, unix_paths = _listeners(proc.pid)
    assert ports == [port]  # llama.cpp's own HTTP server is not on any TCP port
    assert all(not os.path.exists(p) for p in unix_paths)  # its unix socket was unlinked: nothing can connect


def test_openai_backend_against_a_real_llmapp_serve(served, monkeypatch):
    url, _, _, _ = served
    monkeypatch.setenv("OPENAI_API_KEY", "none")
    remote = load_chat_model(f"openai:{url}/v1#smollm2-135m-instruct", max_tokens=16).warm()
    local = load_chat_model(max_tokens=16)
    prompt = "List the days of the week, one per line."
    assert remote.context_window == local.context_window == 8192  # asked of /v1/models
    pieces = [c for c in remote.stream(prompt)]
    text = "".join(c.content for c in pieces)
    # Greedy on both sides; a server engine with more slots may resolve a near-tie differently, so
    # compare the start of the reply, not every token.
    assert text.split()[:3] == local.invoke(prompt).content.split()[:3]
    assert len([c for c in pieces if c.content]) > 3  # streamed
    usage = next(c.usage_metadata for c in reversed(pieces) if c.usage_metadata)
    assert usage["output_tokens"] == 16 and usage["input_tokens"] == len(local.prompt_ids([_human(prompt)]))
    word = text.split()[2]  # a stop string the reply is known to contain
    cut = remote.invoke(prompt, stop=[word]).content
    assert word not in cut and cut == text[: text.index(word)]
    assert remote.get_num_tokens_from_messages([_human(prompt)]) == local.get_num_tokens_from_messages([_human(prompt)])


def test_rag_chain_runs_on_the_remote_backend(served, monkeypatch):
    from chains.rag import rag_chain
    from chains.store import Store

    url, _, _, store_dir = served
    monkeypatch.setenv("OPENAI_API_KEY", "none")
    remote = load_chat_model(f"openai:{url}/v1#smollm2-135m-instruct", max_tokens=48)
    out = rag_chain(Store.load(store_dir), remote, return_sources=True).invoke("What are the two networks of a GAN?")
    assert not out["abstained"] and out["sources"] and "[" in out["answer"]


def test_an_unreachable_or_mistyped_remote_is_one_line():
    with pytest.raises(LLMAppError) as err:
        load_chat_model(f"openai:http://127.0.0.1:{_free_port()}/v1#m").warm()
    assert "did not answer" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ModelNotFound, match="openai:http://HOST:PORT/v1#MODEL"):
        load_chat_model("openai:localhost:8000")


def _human(text: str):
    from langchain_core.messages import HumanMessage

    return HumanMessage(text)
