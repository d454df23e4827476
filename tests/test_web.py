"""The browser chat page (``llmapp/web``), driven in headless Chromium against real ``llmapp serve`` apps.

Selenium drives Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs them when missing);
the servers run in-process on ephemeral 127.0.0.1 ports with the bundled SmolLM2, greedy and short.
One browser and two servers serve the whole module: an open one (with a small RAG store) and one with
an API key and a single worker (for 401 and 429). Screenshots of the main states are saved under
``$LLMAPP_TEST_ARTIFACTS/web`` when that is set, else under pytest's tmp folder.

    python -m pytest tests/test_web.py -q                  # -m "not browser" keeps only the HTTP checks
    LLMAPP_TEST_ARTIFACTS=/tmp/art python -m pytest tests/test_web.py -q -s   # -s prints the latency figures
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from llmapp import web
from llmapp.server import ServeConfig, create_app, running

CHAT, KEY = "smollm2-135m-instruct", "sk-web-test"
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


# ---- servers ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    pytest.importorskip("chains.rag")
    from chains.index import build_index

    docs = tmp_path_factory.mktemp("web-docs")
    (docs / "zorblax.md").write_text("# Zorblax\nThe Zorblax protocol was invented in 1987 by Mira Quell to sync "
                                     "tide gauges along the coast.\n")
    (docs / "kettles.txt").write_text("Copper kettles heat water faster than steel kettles, because copper "
                                      "conducts heat about twenty times better.\n")
    folder = tmp_path_factory.mktemp("web-store") / "notes"
    build_index([docs], folder)
    return folder


@pytest.fixture(scope="module")
def served(store):
    """The open server: the chat model and rag:notes."""
    app = create_app(ServeConfig(models=[CHAT], stores=[str(store)]))
    with running(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def keyed():
    """A server that wants an API key and has one worker and no queue, so a second request gets 429."""
    app = create_app(ServeConfig(models=[CHAT], api_key=KEY, workers=1, queue_size=0, warmup=False))
    with running(app) as url:
        yield url, app


# ---- the page over plain HTTP (no browser) ----------------------------------------------------------------

def test_page_and_assets_are_served_with_security_headers(served, keyed):
    url = served[0]
    page = httpx.get(url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self';" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    # The page names only same-origin files, and every one of them is served.
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and all(ref.startswith("/static/") for ref in refs), refs
    total = len(page.content)
    for name, kind in web.ASSETS.items():
        asset = httpx.get(f"{url}/static/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"] == kind, name
        assert asset.headers["x-content-type-options"] == "nosniff"
        total += len(asset.content)
    print(f"page size: {total / 1024:.1f} KiB in {len(web.ASSETS) + 1} files")
    assert total < 300 * 1024
    # Revalidation is a 304; HEAD gets headers only.
    etag = page.headers["etag"]
    assert httpx.get(url + "/", headers={"If-None-Match": etag}).status_code == 304
    head = httpx.head(url + "/static/app.js")
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 1000


def test_only_listed_files_are_served(served):
    url = served[0]
    shipped = {str(p.relative_to(web.STATIC)) for p in web.STATIC.rglob("*") if p.is_file()}
    unlisted = shipped - set(web.ASSETS) - {web.PAGE} - {p for p in shipped if ".LICENSE" in p}
    assert not unlisted, f"add these to llmapp.web.ASSETS or remove them: {unlisted}"
    for path in ("/static/index.html", "/static/../__init__.py", "/static/%2e%2e/__init__.py",
                 "/static/vendor/../app.js", "/static//etc/passwd", "/static/vendor/marked.LICENSE",
                 "/static/APP.JS", "/__init__.py"):
        assert _raw_get(url, path) == 404, path
    assert httpx.post(url + "/").status_code in (404, 405)  # only GET/HEAD are answered by the page


def _raw_get(url: str, path: str) -> int:
    """GET ``path`` byte for byte: http.client, unlike httpx, does not resolve ``..`` before sending."""
    parsed = urlparse(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def test_page_needs_no_key_but_the_api_does(keyed):
    url = keyed[0]
    assert httpx.get(url + "/").status_code == 200
    assert httpx.get(url + "/static/app.js").status_code == 200
    assert httpx.get(url + "/v1/models").status_code == 401
    assert httpx.get(url + "/nothing").status_code == 401  # paths that are not the page stay behind the key


def test_model_cards_carry_the_context_window(served):
    cards = {m["id"]: m for m in httpx.get(served[0] + "/v1/models").json()["data"]}
    assert cards[CHAT]["context_window"] == 8192 and cards["rag:notes"]["context_window"] == 8192
    assert cards["rag:notes"]["kind"] == "rag"
    assert httpx.get(served[0] + "/v1/models/rag:notes").json()["context_window"] == 8192


def test_vendored_libraries_are_the_pinned_releases():
    vendor = web.STATIC / "vendor"
    assert "marked v18.2.1" in (vendor / "marked.esm.js").read_text()[:200]
    assert "DOMPurify 3.4.18" in (vendor / "purify.min.js").read_text()[:200]
    for licence in ("marked.LICENSE", "dompurify.LICENSE", "dompurify.LICENSE-MPL"):
        assert (vendor / licence).stat().st_size > 500


# ---- the browser ------------------------------------------------------------------------------------------

class Browser:
    """A headless Chromium, plus every request its pages made and every console message they logged."""

    def __init__(self, driver, artifacts: Path) -> None:
        self.driver, self.artifacts, self.requests, self.console = driver, artifacts, [], []

    def drain(self) -> list[dict]:
        """Move the logs' new entries into ``requests`` and ``console``; returns the new requests."""
        new = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                new.append(message["params"]["request"])
        self.requests.extend(new)
        self.console.extend(self.driver.get_log("browser"))
        return new

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def wait(self, script: str, timeout: float = 30, *args):
        """Poll a JS expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js("return " + script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for: {script}")
            time.sleep(0.02)

    def open(self, url: str, settings: dict | None = None, storage: dict | None = None) -> None:
        """Load the page with fresh local storage (plus ``settings`` and raw ``storage`` entries), models listed."""
        self.driver.get(url + "/")
        values = {"maxTokens": 16, "temperature": 0, **(settings or {})}
        self.js("localStorage.clear(); localStorage.setItem('llmapp.settings', arguments[0]);"
                "for (const [k, v] of Object.entries(arguments[1])) localStorage.setItem(k, v);",
                json.dumps({"version": 1, "values": values}), storage or {})
        self.driver.refresh()
        self.wait("document.readyState === 'complete' && !document.getElementById('model').disabled"
                  " || !document.getElementById('notice').hidden")

    def send(self, text: str) -> int:
        """Type ``text`` and press Enter; returns how many replies there were before."""
        from selenium.webdriver.common.keys import Keys

        before = self.js("return document.querySelectorAll('article.message.assistant').length")
        prompt = self.driver.find_element("id", "prompt")
        prompt.clear()
        prompt.send_keys(text)
        prompt.send_keys(Keys.ENTER)
        return before

    def wait_reply(self, before: int, timeout: float = 60) -> str:
        """Wait for reply number ``before + 1`` to finish streaming; returns its text."""
        self.wait("document.querySelectorAll('article.message.assistant').length > arguments[0] && "
                  "document.getElementById('stop').hidden && !document.querySelector('[aria-busy=\"true\"]')",
                  timeout, before)
        return self.js("return [...document.querySelectorAll('article.message.assistant .body')].at(-1).innerText")

    def stored(self) -> dict:
        return json.loads(self.js("return localStorage.getItem('llmapp.conversations')"))

    def notice(self) -> str:
        return self.js("const n = document.getElementById('notice'); return n.hidden ? '' : n.textContent")

    def shot(self, name: str) -> Path:
        path = self.artifacts / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_bin):
        message = "needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message + " (make test installs them)")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="llmapp-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
                f"--user-data-dir={profile}", "--window-size=1200,800"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    root = os.environ.get("LLMAPP_TEST_ARTIFACTS")
    artifacts = Path(root) / "web" if root else tmp_path_factory.mktemp("web-artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    driver = webdriver.Chrome(service=Service(driver_bin), options=options)
    try:
        yield Browser(driver, artifacts)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# Records every text the last reply showed, for counting incremental updates.
WATCH_REPLY = """
window.__replyTexts = [];
new MutationObserver(() => {
  const body = [...document.querySelectorAll('article.message.assistant .body')].at(-1);
  const text = body ? body.textContent : '';
  if (text && text !== window.__replyTexts.at(-1)) window.__replyTexts.push(text);
}).observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true});
"""


@pytest.mark.browser
def test_reply_streams_and_survives_a_reload(browser, served):
    url = served[0]
    browser.open(url)
    browser.shot("01-empty")
    browser.js(WATCH_REPLY)
    question = "Write a short poem about the sea."
    text = browser.wait_reply(browser.send(question))
    updates = browser.js("return window.__replyTexts")
    assert len(updates) >= 3, updates  # token by token, not one blob at the end
    assert all(len(a) < len(b) for a, b in itertools.pairwise(updates))
    meta = browser.js("return [...document.querySelectorAll('article.message.assistant .meta')].at(-1).textContent")
    assert re.fullmatch(r"16 tokens \(max tokens reached\) · [\d.]+ tok/s · first token [\d.]+ s · context \d+ / 8192 tokens \([\d.]+%\)",
                        meta), meta
    # What the page kept is exactly what the API answers for the same request (greedy).
    api = httpx.post(url + "/v1/chat/completions", timeout=60, json={
        "model": CHAT, "max_tokens": 16, "temperature": 0, "messages": [{"role": "user", "content": question}]})
    stored = browser.stored()["conversations"][0]["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[1]["content"] == api.json()["choices"][0]["message"]["content"]
    browser.shot("02-streamed-reply")
    browser.driver.refresh()
    browser.wait("document.querySelectorAll('article.message').length === 2")
    assert browser.wait_reply(0) == text
    assert question in browser.js("return document.getElementById('conversation-list').textContent")


@pytest.mark.browser
def test_first_token_time_matches_the_api(browser, served):
    """Enter -> first reply text on the page, against the API's own time to first token, alternating.

    The page's own share is split out with the Resource Timing API: Enter -> request sent, and response
    start -> text on the page. The server answers with headers only once its first token is ready, so
    response start is that token's arrival. That share is what the page adds, whatever the server's load.
    """
    url = served[0]
    question = "Name a fruit."
    body = {"model": CHAT, "max_tokens": 4, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": question}]}

    def api_ttft() -> float:
        t0 = time.perf_counter()
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as response:
            for line in response.iter_lines():
                chunk = json.loads(line[6:]) if line.startswith("data: {") else {}
                if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                    return time.perf_counter() - t0
        raise AssertionError("no token")

    def page_ttft() -> tuple[float, float]:
        browser.open(url, settings={"maxTokens": 4})
        browser.js("""
            window.__t = {};
            document.getElementById('prompt').addEventListener('keydown', (e) => {
              if (e.key === 'Enter' && !window.__t.enter) window.__t.enter = performance.now();
            }, {capture: true});
            new MutationObserver(() => {
              const body = document.querySelector('article.message.assistant .body');
              if (body && body.textContent && !window.__t.first) window.__t.first = performance.now();
            }).observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true});
        """)
        browser.wait_reply(browser.send(question))
        t = browser.js("return window.__t")
        fetch = browser.js("return performance.getEntriesByType('resource')"
                           ".filter((e) => e.name.endsWith('/v1/chat/completions')).at(-1).toJSON()")
        overhead = (fetch["startTime"] - t["enter"]) + (t["first"] - fetch["responseStart"])
        return (t["first"] - t["enter"]) / 1000, overhead / 1000

    api_ttft(), page_ttft()  # one of each unmeasured: first use of this prompt and page
    api, page, overhead = [], [], []
    for _ in range(5):
        api.append(api_ttft())
        on_page, extra = page_ttft()
        page.append(on_page)
        overhead.append(extra)

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.0f} ms ({', '.join(f'{v * 1000:.0f}' for v in values)})"

    gap = statistics.median(page) - statistics.median(api)
    print(f"\ntime to first token, median of 5 alternating runs: API {ms(api)}, page {ms(page)}, "
          f"gap {gap * 1000:+.0f} ms; the page's own share {ms(overhead)}")
    assert max(overhead) < 0.1  # the target: the page adds under 0.1 s to the API's first token
    assert gap < 0.5  # the end-to-end gap also holds the server's noise on a shared 2-core machine


@pytest.mark.browser
def test_stop_and_escape_cancel_the_generation(browser, served):
    from selenium.webdriver.common.keys import Keys

    url, app = served
    browser.open(url, settings={"maxTokens": 400})
    for how in ("button", "escape"):
        cancelled = httpx.get(url + "/health").json()["cancelled"]
        before = browser.send("Write a long story about a dragon who learns to bake bread.")
        browser.wait("(document.querySelector('article.message.assistant:last-of-type .body') || {}).textContent"
                     "?.length > 20")
        t0 = time.monotonic()
        if how == "button":
            browser.driver.find_element("id", "stop").click()
        else:
            browser.driver.find_element("tag name", "body").send_keys(Keys.ESCAPE)
        text = browser.wait_reply(before, timeout=1)
        stopped_after = time.monotonic() - t0
        assert stopped_after < 1.0, stopped_after
        deadline = time.monotonic() + 1.0
        while httpx.get(url + "/health").json()["cancelled"] <= cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
        assert httpx.get(url + "/health").json()["cancelled"] == cancelled + 1
        meta = browser.js("return [...document.querySelectorAll('article.message.assistant .meta')].at(-1).textContent")
        assert meta.startswith("stopped"), meta
        time.sleep(0.3)
        assert browser.wait_reply(before) == text  # nothing arrives after Stop
        assert browser.stored()["conversations"][0]["messages"][-1]["stopped"] is True
    assert app.state.pool.stats()["active"] == 0


@pytest.mark.browser
def test_rag_answer_has_clickable_citations(browser, served):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    browser.open(served[0], settings={"maxTokens": 40})
    Select(browser.driver.find_element("id", "model")).select_by_value("rag:notes")
    browser.wait_reply(browser.send("Who invented the Zorblax protocol?"))
    reply = "[...document.querySelectorAll('article.message.assistant')].at(-1)"
    assert "Mira Quell" in browser.js(f"return {reply}.querySelector('.body').textContent")
    cites = browser.driver.find_elements("css selector", "article.message.assistant .sources button.cite")
    assert cites, "the Sources block should render as a list of citation buttons"
    inline = browser.js(f"return {reply}.querySelectorAll('.body > :not(.sources) button.cite').length")
    print(f"\nRAG reply: {len(cites)} sources, {inline} inline citations")
    assert "Sources:" not in browser.js(f"return {reply}.querySelector('.body').textContent")  # shown as a list
    browser.shot("03-rag-answer")
    cites[0].click()
    browser.wait("document.getElementById('source-dialog').open")
    assert browser.js("return document.getElementById('source-path').textContent") == "zorblax.md"
    assert "Zorblax protocol" in browser.js("return document.getElementById('source-snippet').textContent")
    browser.shot("04-rag-source-opened")
    browser.driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    browser.wait("!document.getElementById('source-dialog').open")


@pytest.mark.browser
def test_api_key_wrong_then_right(browser, keyed):
    from selenium.webdriver.common.keys import Keys

    url = keyed[0]
    browser.open(url)
    assert "needs an API key" in browser.notice()
    key_field = browser.driver.find_element("id", "api-key")
    assert key_field.is_displayed() and browser.driver.switch_to.active_element == key_field
    key_field.send_keys("sk-wrong", Keys.ENTER)
    browser.wait("document.getElementById('notice').textContent.includes('not accepted')")
    browser.shot("05-api-key-401")
    key_field.clear()
    key_field.send_keys(KEY, Keys.ENTER)
    browser.wait("!document.getElementById('model').disabled")
    assert browser.notice() == ""
    assert browser.wait_reply(browser.send("Say hello.")).strip()
    assert browser.js("return localStorage.getItem('llmapp.apiKey')") is None  # not asked to remember it
    browser.driver.find_element("id", "remember-key").click()
    assert browser.js("return localStorage.getItem('llmapp.apiKey')") == KEY
    browser.driver.refresh()  # a remembered key works after a reload, with no prompt
    browser.wait("!document.getElementById('model').disabled")
    assert browser.notice() == ""
    browser.driver.find_element("id", "toggle-settings").click()
    browser.driver.find_element("id", "remember-key").click()
    assert browser.js("return localStorage.getItem('llmapp.apiKey')") is None


@pytest.mark.browser
def test_busy_server_says_when_to_retry(browser, keyed):
    url, app = keyed
    browser.open(url, storage={"llmapp.apiKey": KEY})
    body = {"model": CHAT, "messages": [{"role": "user", "content": "Count to a hundred."}], "max_tokens": 2000,
            "stream": True}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as busy:
        lines = busy.iter_lines()  # held open: dropping the iterator would close the connection (a hang-up)
        next(lines)  # the only worker is generating now
        browser.send("Hello?")
        notice = browser.wait("document.getElementById('notice').textContent")
    assert re.search(r"busy .*\(429\).* try again in \d+ s", notice), notice
    assert browser.js("return document.querySelectorAll('article.message.assistant').length") == 0
    retry = browser.driver.find_element("css selector", "article.message.user button[data-action='regenerate']")
    assert retry.text == "Retry"
    deadline = time.monotonic() + 10
    while app.state.pool.stats()["active"] and time.monotonic() < deadline:
        time.sleep(0.05)
    retry.click()
    assert browser.wait_reply(0).strip()
    assert browser.notice() == ""


@pytest.mark.browser
def test_lost_connection_keeps_the_partial_reply(browser):
    """The server goes away mid-reply: the page says so and keeps what had arrived."""
    app = create_app(ServeConfig(models=[CHAT], warmup=False))
    uvicorn_log = logging.getLogger("uvicorn.error")
    try:
        with running(app) as url:
            browser.open(url, settings={"maxTokens": 400})
            browser.send("Write a long story about a lighthouse keeper.")
            browser.wait("(document.querySelector('article.message.assistant .body') || {}).textContent?.length > 20")
            uvicorn_log.disabled = True  # it logs the stream it cuts at shutdown as an error, with a traceback
    finally:
        uvicorn_log.disabled = False
    # The with-block stopped the server (uvicorn cuts open streams after its graceful-shutdown wait).
    notice = browser.wait("document.getElementById('notice').textContent", timeout=15)
    assert "Lost the connection" in notice and "kept" in notice, notice
    kept = browser.stored()["conversations"][0]["messages"]
    assert kept[-1]["role"] == "assistant" and len(kept[-1]["content"]) > 20


@pytest.mark.browser
def test_markdown_cannot_run_script(browser, served):
    """User messages are Markdown too, so the payload is typed in: it must render inert."""
    browser.open(served[0], settings={"maxTokens": 4})
    browser.drain()
    logged = len(browser.console)
    payload = ('Look: <img src="data:image/png;base64,AAAA" onerror="window.__pwned = \'img\'"> '
               '<script>window.__pwned = "script"</script> [click me](javascript:window.__pwned=\'link\') '
               '![remote](https://example.com/pixel.png) <a href="https://example.com/" onclick="window.__pwned=1">x</a>')
    browser.wait_reply(browser.send(payload))
    body = "document.querySelector('article.message.user .body')"
    assert "Look:" in browser.js(f"return {body}.textContent")
    assert browser.js("return document.getElementById('messages')"
                      ".querySelectorAll('[onerror], [onclick], script').length") == 0
    assert browser.js(f"return {body}.querySelector('img').getAttribute('src')").startswith("data:image/png")
    link = browser.driver.find_element("link text", "click me")
    assert not (link.get_attribute("href") or "").lower().startswith("javascript:")
    link.click()
    assert "image not loaded: remote" in browser.js(f"return {body}.textContent")
    assert browser.js("return document.querySelector('a[href=\"https://example.com/\"]').rel") == "noopener noreferrer"
    time.sleep(0.2)
    assert browser.js("return window.__pwned === undefined")
    assert len(browser.driver.window_handles) == 1
    # Chromium applies the page's CSP even in DOMPurify's detached parse document, and logs that it
    # blocked the payload's handlers there: the second layer at work. Only such blocks may be logged.
    browser.js("localStorage.clear()")  # the next test's first load would render the payload again
    browser.drain()
    blocked = [e["message"] for e in browser.console[logged:]]
    del browser.console[logged:]  # the last test checks that nothing else trips the CSP
    assert all("Executing inline event handler" in m and "blocked" in m for m in blocked
               if "Content Security Policy" in m), blocked


@pytest.mark.browser
def test_conversations_list_rename_delete_and_edit(browser, served):
    from selenium.webdriver.common.keys import Keys

    url = served[0]
    browser.open(url, settings={"maxTokens": 4})
    prompt = browser.driver.find_element("id", "prompt")
    prompt.send_keys("first line", Keys.SHIFT, Keys.ENTER, Keys.SHIFT, "second line")
    assert prompt.get_attribute("value") == "first line\nsecond line"  # Shift+Enter is a new line, not send
    prompt.send_keys(Keys.ENTER)
    browser.wait_reply(0)
    browser.driver.find_element("id", "new-chat").click()
    browser.wait_reply(browser.send("Name a colour."))
    items = browser.driver.find_elements("css selector", "#conversation-list li")
    assert [i.text.split("\n")[0] for i in items] == ["Name a colour.", "first line second line"]
    # Rename the open one.
    items[0].find_element("css selector", "button[data-action='rename']").click()
    field = browser.driver.switch_to.active_element
    field.send_keys(Keys.CONTROL, "a", Keys.CONTROL, "Colours", Keys.ENTER)
    browser.wait("document.querySelector('#conversation-list .open').textContent === 'Colours'")
    # Edit the last user message: its reply is regenerated for the new text.
    browser.driver.find_element("css selector", "article.message.user button[data-action='edit']").click()
    assert prompt.get_attribute("value") == "Name a colour."
    prompt.clear()
    prompt.send_keys("Name an animal.", Keys.ENTER)
    browser.wait_reply(0)
    open_chat = [c for c in browser.stored()["conversations"] if c["title"] == "Colours"][0]
    assert [(m["role"], m["content"]) for m in open_chat["messages"]][0] == ("user", "Name an animal.")
    assert len(open_chat["messages"]) == 2
    # Regenerate gives the same greedy reply again.
    reply = open_chat["messages"][1]["content"]
    browser.driver.find_element("css selector", "article.message.assistant button[data-action='regenerate']").click()
    browser.wait("document.getElementById('stop').hidden")
    browser.wait_reply(0)
    assert browser.stored()["conversations"][-1]["messages"][1]["content"] == reply
    # A reload keeps both; delete the other one.
    browser.driver.refresh()
    browser.wait("document.querySelectorAll('#conversation-list li').length === 2")
    browser.driver.find_elements("css selector", "#conversation-list button[data-action='delete']")[1].click()
    browser.driver.switch_to.alert.accept()
    names = [i.text.split("\n")[0] for i in browser.driver.find_elements("css selector", "#conversation-list li")]
    assert names == ["Colours"]
    assert len(browser.stored()["conversations"]) == 1


@pytest.mark.browser
def test_settings_reach_the_request_and_persist(browser, served):
    from selenium.webdriver.common.keys import Keys

    browser.open(served[0])
    browser.drain()
    browser.driver.find_element("id", "toggle-settings").click()
    for field, value in (("system-prompt", "Answer in one word."), ("temperature", "0.5"), ("max-tokens", "3")):
        browser.driver.find_element("id", field).send_keys(Keys.CONTROL, "a", Keys.CONTROL, value)
    browser.driver.find_element("id", "prompt").click()  # leaving a field commits it ("change")
    browser.wait_reply(browser.send("What colour is the sky?"))
    posts = [r for r in browser.drain() if r["method"] == "POST" and r["url"].endswith("/v1/chat/completions")]
    sent = json.loads(posts[-1]["postData"])
    assert sent["messages"] == [{"role": "system", "content": "Answer in one word."},
                                {"role": "user", "content": "What colour is the sky?"}]
    assert sent["max_tokens"] == 3 and sent["temperature"] == 0.5 and sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert "Authorization" not in posts[-1]["headers"]  # no key configured, none sent
    browser.driver.refresh()
    browser.wait("document.readyState === 'complete'")
    assert browser.driver.find_element("id", "system-prompt").get_attribute("value") == "Answer in one word."
    assert browser.driver.find_element("id", "max-tokens").get_attribute("value") == "3"


@pytest.mark.browser
def test_dark_theme_and_phone_width(browser, served):
    from selenium.webdriver.common.keys import Keys

    browser.open(served[0])
    browser.wait_reply(browser.send("Give a one-line Python example in a code block."))
    driver = browser.driver
    try:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                               {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        background = browser.js("return getComputedStyle(document.body).backgroundColor")
        assert _luminance(background) < 0.2, background
        browser.shot("06-dark")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
        browser.wait("document.documentElement.clientWidth === 390")
        browser.wait("document.getElementById('sidebar').getBoundingClientRect().right <= 0", 2)  # slid away
        assert browser.js("return document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        browser.shot("07-phone-dark")
        driver.find_element("id", "toggle-sidebar").click()
        browser.wait("document.getElementById('sidebar').getBoundingClientRect().left >= 0")
        browser.shot("08-phone-conversations")
        driver.switch_to.active_element.send_keys(Keys.ESCAPE)  # Esc shuts the drawer again
        browser.wait("document.getElementById('sidebar').getBoundingClientRect().right <= 0", 2)
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme",
                                                                            "value": "light"}]})
        assert _luminance(browser.js("return getComputedStyle(document.body).backgroundColor")) > 0.8
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def _luminance(css_rgb: str) -> float:
    r, g, b = (int(v) for v in re.findall(r"\d+", css_rgb)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


@pytest.mark.browser
def test_every_request_stayed_on_loopback(browser):
    """Runs last: every request any test's pages made went to 127.0.0.1, or was data:/blob:."""
    browser.drain()
    assert len(browser.requests) > 20
    # chrome:// is Chromium's own start-up tab, served from inside the browser; no web page can load it.
    away = [r["url"] for r in browser.requests if not r["url"].startswith(("data:", "blob:", "chrome://"))
            and urlparse(r["url"]).hostname not in LOOPBACK]
    assert not away, away
    assert any(r["url"].endswith("/v1/chat/completions") for r in browser.requests)
    # Nor did the page trip its own Content-Security-Policy, or throw.
    assert browser.console, "the browser log should at least hold the 401 and 429 answers"
    broken = [e["message"] for e in browser.console if "Content Security Policy" in e["message"]
              or "Uncaught" in e["message"]]
    assert not broken, broken
