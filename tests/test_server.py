"""The OpenAI-compatible server, driven by the official ``openai`` client against real uvicorn on loopback.

Each server runs in a background thread on an ephemeral 127.0.0.1 port (``llmapp.server.running``)
and shares the bundled models with the rest of the suite. Greedy replies are compared exactly with
the LangChain chat model they come from.

    python -m pytest tests/test_server.py -q -x
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from click.testing import CliRunner

from llmapp.server import ServeConfig, create_app, running

CHAT, EMB = "smollm2-135m-instruct", "minilm-l6"
HELLO = [{"role": "user", "content": "Say hello to Ada."}]


def _client(url: str, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def served():
    app = create_app(ServeConfig(max_body_bytes=100_000))
    with running(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def client(served):
    return _client(served[0])


def _wait(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_models_and_health(served, client):
    ids = {m.id for m in client.models.list().data}
    assert ids == {CHAT, EMB}
    assert client.models.retrieve(CHAT).id == CHAT
    health = httpx.get(served[0] + "/health").json()
    assert health["status"] == "ok" and health["workers"] == 2


def test_chat_matches_the_chat_model(client, chat_model):
    reply = client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=12)
    direct = chat_model.invoke("Say hello to Ada.", max_tokens=12)
    assert reply.choices[0].message.content == direct.content
    assert reply.choices[0].message.role == "assistant"
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.usage.prompt_tokens == direct.usage_metadata["input_tokens"]
    assert reply.usage.completion_tokens == direct.usage_metadata["output_tokens"] <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streaming_equals_non_streaming(client):
    full = client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=12)
    chunks = list(client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=12, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert len(chunks) >= 5  # token by token, not one blob
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    plain = list(client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=4, stream=True))
    assert all(c.usage is None for c in plain)  # usage only when asked for


def test_stop_max_completion_tokens_and_seed(client):
    full = client.chat.completions.create(model=CHAT, messages=HELLO, max_completion_tokens=12).choices[0]
    assert full.finish_reason == "length"
    word = full.message.content.split()[2]
    cut = client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=12, stop=[word]).choices[0]
    assert cut.finish_reason == "stop" and word not in cut.message.content
    assert full.message.content.startswith(cut.message.content)
    sampled = [client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=10, temperature=1.0,
                                              top_p=0.9, seed=7).choices[0].message.content for _ in range(2)]
    assert sampled[0] == sampled[1]


def test_completions(client):
    one = client.completions.create(model=CHAT, prompt="The capital of France is", max_tokens=6)
    assert one.object == "text_completion" and one.choices[0].finish_reason == "length"
    assert one.usage.completion_tokens == 6 and one.usage.prompt_tokens > 0
    streamed = list(client.completions.create(model=CHAT, prompt="The capital of France is", max_tokens=6,
                                              stream=True))
    assert "".join(c.choices[0].text for c in streamed) == one.choices[0].text
    echoed = client.completions.create(model=CHAT, prompt="Hi there", max_tokens=2, echo=True)
    assert echoed.choices[0].text.startswith("Hi there")


def test_embeddings_float_and_base64(client, embeddings):
    texts = ["a cat sat on the mat", "stock markets fell"]
    b64 = client.embeddings.create(model=EMB, input=texts)  # the client asks for base64 and decodes it
    flt = client.embeddings.create(model=EMB, input=texts, encoding_format="float")
    expected = embeddings.encode(texts)
    for result in (b64, flt):
        assert [d.index for d in result.data] == [0, 1]
        assert result.data[0].embedding == pytest.approx(expected[0].tolist(), abs=1e-5)
        assert result.data[1].embedding == pytest.approx(expected[1].tolist(), abs=1e-5)
        assert result.usage.prompt_tokens > 0
    single = client.embeddings.create(model=EMB, input="one text", encoding_format="float")
    assert len(single.data) == 1 and len(single.data[0].embedding) == 384


def _status(call) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as info:
        call()
    return info.value


def test_errors_are_openai_shaped(served, client):
    err = _status(lambda: client.chat.completions.create(model="gpt-9", messages=HELLO))
    assert err.status_code == 404 and err.body["code"] == "model_not_found" and CHAT in err.body["message"]
    for bad, param in [({"temperature": 5}, "temperature"), ({"n": 2}, "n"), ({"max_tokens": 0}, "max_tokens"),
                       ({"messages": []}, "messages"), ({"stop": ["a", "b", "c", "d", "e"]}, "stop")]:
        args = {"model": CHAT, "messages": HELLO, "max_tokens": 4, **bad}
        err = _status(lambda args=args: client.chat.completions.create(**args))
        assert err.status_code == 400 and err.body["param"] == param, (bad, err.body)
    err = _status(lambda: client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": " "}]))
    assert err.status_code == 400 and "empty" in err.body["message"]
    err = _status(lambda: client.embeddings.create(model=CHAT, input="x"))
    assert err.status_code == 400 and err.body["param"] == "model"
    err = _status(lambda: client.completions.create(model=EMB, prompt="x"))
    assert err.status_code == 400
    err = _status(lambda: client.embeddings.create(model=EMB, input="word " * 400))
    assert err.status_code == 400 and err.body["code"] == "context_length_exceeded"


def test_over_long_prompt_gets_400_even_when_streaming(client):
    long = [{"role": "user", "content": "hello " * 9000}]
    for stream in (False, True):
        err = _status(lambda stream=stream: client.chat.completions.create(model=CHAT, messages=long, max_tokens=8,
                                                                         stream=stream))
        assert err.status_code == 400 and err.body["code"] == "context_length_exceeded"


def test_raw_http_errors(served):
    url = served[0]
    big = httpx.post(url + "/v1/embeddings", content=b"{" + b" " * 200_000 + b"}",
                     headers={"Content-Type": "application/json"})
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    bad_json = httpx.post(url + "/v1/chat/completions", content=b"{not json",
                          headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and "JSON" in bad_json.json()["error"]["message"]
    not_object = httpx.post(url + "/v1/chat/completions", json=[1, 2])
    assert not_object.status_code == 400 and "error" in not_object.json()
    typo = httpx.post(url + "/v1/chat/completions", json={"model": CHAT, "messages": HELLO, "max_tokenz": 3})
    assert typo.status_code == 400 and typo.json()["error"]["param"] == "max_tokenz"
    missing = httpx.get(url + "/v2/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["message"]


def test_api_key():
    app = create_app(ServeConfig(models=[EMB], api_key="sk-secret", warmup=False))
    with running(app) as url:
        assert httpx.get(url + "/health").status_code == 200
        for key in ("none", "sk-wrong"):
            err = _status(lambda key=key: _client(url, key).models.list())
            assert err.status_code == 401 and err.body["code"] == "invalid_api_key"
        assert httpx.post(url + "/v1/embeddings", json={"model": EMB, "input": "x"}).status_code == 401
        assert [m.id for m in _client(url, "sk-secret").models.list().data] == [EMB]


def test_full_queue_gets_429_with_retry_after():
    app = create_app(ServeConfig(models=[CHAT], workers=1, queue_size=0, warmup=False))
    with running(app) as url:
        client = _client(url)
        with client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=200, stream=True) as busy:
            next(iter(busy))  # the only worker is now generating
            err = _status(lambda: client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=2))
            assert err.status_code == 429 and err.body["code"] == "rate_limit_exceeded"
            assert int(err.response.headers["Retry-After"]) >= 1
        assert _wait(lambda: app.state.pool.stats()["active"] == 0)
        assert app.state.pool.stats()["rejected"] == 1
        ok = client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=2)  # free again
        assert ok.choices[0].message.content


def _generating() -> list[str]:
    """TextStream's generate() threads that are still alive."""
    return [t.name for t in threading.enumerate() if t.name.endswith("(_run)")]


def test_disconnect_stops_generation(served, client):
    pool = served[1].state.pool
    before = pool.stats()["cancelled"]
    t0 = time.monotonic()
    with client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Write a long story."}],
                                        max_tokens=400, stream=True) as stream:
        for i, _ in enumerate(stream):
            if i == 4:
                break  # leaving the block closes the connection mid-stream
    assert _wait(lambda: pool.stats()["cancelled"] == before + 1, timeout=10)
    record = [r for r in pool.recent if r.outcome == "cancelled"][-1]
    assert record.items < 15  # ~400 tokens asked for; the model stopped a few tokens after the hang-up
    assert _wait(lambda: not _generating(), timeout=5), _generating()
    assert time.monotonic() - t0 < 10  # 400 tokens would take ~16 s at 25 tok/s


def test_fifty_concurrent_streams_none_lost(served, client):
    pool = served[1].state.pool
    before = pool.stats()

    def one(i: int) -> tuple[str, str | None]:
        chunks = list(client.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": f"Name a colour ({i})."}], max_tokens=4, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return text, chunks[-1].choices[0].finish_reason

    t0 = time.perf_counter()
    with ThreadPoolExecutor(50) as threads:
        results = list(threads.map(one, range(50)))
    elapsed = time.perf_counter() - t0
    assert len(results) == 50 and all(text and finish in ("stop", "length") for text, finish in results)
    after = pool.stats()
    assert after["done"] - before["done"] == 50 and after["rejected"] == before["rejected"]
    assert after["error"] == before["error"] and after["active"] == 0
    print(f"50 streams in {elapsed:.1f} s: {50 / elapsed:.2f} req/s")


def test_rag_model(tmp_path):
    pytest.importorskip("chains.rag")
    from chains.index import build_index

    doc = tmp_path / "notes.md"
    doc.write_text("# Zorblax\nThe Zorblax protocol was invented in 1987 by Mira Quell to sync tide gauges.\n")
    build_index([doc], tmp_path / "store")
    app = create_app(ServeConfig(models=[CHAT], stores=[str(tmp_path / "store")], warmup=False))
    with running(app) as url:
        client = _client(url)
        assert "rag:store" in {m.id for m in client.models.list().data}
        ask = [{"role": "user", "content": "Who invented the Zorblax protocol?"}]
        reply = client.chat.completions.create(model="rag:store", messages=ask, max_tokens=40)
        text = reply.choices[0].message.content
        assert "Mira Quell" in text and "Sources:\n[1] notes.md" in text
        assert reply.usage.completion_tokens > 0
        streamed = client.chat.completions.create(model="rag:store", messages=ask, max_tokens=40, stream=True)
        streamed_text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        # The same answer and sources; llama.cpp may resolve a near-tie differently on a reused prompt cache.
        assert "Mira Quell" in streamed_text and streamed_text.endswith(text[text.index("Sources:"):])


def test_cli_serve_help_and_errors():
    from llmapp.cli import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0 and "llmapp serve --store" in result.output and "--api-key" in result.output
    result = runner.invoke(cli, ["serve", "--model", "minilm-l6-mlm", "--port", "0"])
    assert result.exit_code != 0 and "cannot serve" in str(result.exception)
    result = runner.invoke(cli, ["serve", "--store", "/nonexistent/store", "--port", "0"])
    assert result.exit_code != 0 and "llmapp index" in str(result.exception)


def test_sse_wire_format(served):
    """The bytes on the wire: ``data: {...}`` events, an empty final delta, then ``data: [DONE]``."""
    body = {"model": CHAT, "messages": HELLO, "max_tokens": 3, "stream": True}
    with httpx.stream("POST", served[0] + "/v1/chat/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[-1]["choices"][0]["delta"] == {} and events[-1]["choices"][0]["finish_reason"] == "length"
    assert "usage" not in events[0]
