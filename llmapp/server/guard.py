"""The server's front door: ASGI middleware for the Host allow-list, bearer-token auth and the body size limit.

Order of checks, each answered with OpenAI's error body:

1. **Host** (all paths, /health included): the ``Host`` header must name this server, a loopback
   name (``127.0.0.1``, ``localhost``, ``::1``, any port) by default, or one added with
   ``--allowed-host``. This defeats DNS rebinding: a web page at ``attacker.example`` whose name
   is re-pointed at 127.0.0.1 can make the browser connect to the server, but the browser still
   sends ``Host: attacker.example``, which is refused (421), so the page never reads an answer.
2. **API key** (all but /health and CORS preflights), compared in constant time (401).
3. **Body size**: the declared and the actual (chunked) body are held to ``max_body_bytes`` (413).
4. **Text**: a JSON string with a lone UTF-16 surrogate (``"\\ud800"``) is not text; it is refused
   here (400) rather than failing inside a tokenizer.

Pure ASGI rather than ``@app.middleware``: Starlette's BaseHTTPMiddleware would hide client
disconnects from streaming responses, and those are what stop a generation.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from fastapi.responses import JSONResponse

from llmapp.server.schemas import APIError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")  # always allowed: only this machine can use these names
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # bind addresses that are no one's Host header


def host_of(header: str) -> str | None:
    """The host name in a ``Host`` header, lower-cased, without the port (``[::1]:8000`` -> ``::1``).

    Returns None for a malformed header.
    """
    value = header.strip().lower()
    if not value or any(c in value for c in " /\\@?#"):
        return None
    if value.startswith("["):  # [IPv6]:port
        end = value.find("]")
        if end < 0 or (value[end + 1:] and not _port_ok(value[end + 2:] if value[end + 1] == ":" else "x")):
            return None
        return value[1:end]
    if value.count(":") > 1:  # a bare IPv6 address (no port allowed without brackets)
        return value if _is_ip(value) else None
    name, _, port = value.partition(":")
    if _ and not _port_ok(port):
        return None
    return name.rstrip(".") or None


def allowed_hosts(bind_host: str, extra: Iterable[str] = ()) -> frozenset[str] | None:
    """The Host names a server bound to ``bind_host`` answers: loopback names, the bound address
    itself (unless a wildcard), and ``extra``. ``*`` in ``extra`` allows any (returns None)."""
    names = set(LOOPBACK_HOSTS)
    if bind_host not in WILDCARD_HOSTS:
        names.add(bind_host.strip("[]").lower())
    for name in extra:
        if name.strip() == "*":
            return None
        parsed = host_of(name)
        if parsed:
            names.add(parsed)
    return frozenset(names)


def is_loopback(host: str) -> bool:
    """True if binding ``host`` keeps the server on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Guard:
    """ASGI middleware: Host allow-list (421), bearer-token auth (401, all but /health) and the
    request-body size limit (413). See the module docstring."""

    def __init__(self, app: Any, api_key: str | None, max_body_bytes: int,
                 hosts: frozenset[str] | None = frozenset(LOOPBACK_HOSTS)) -> None:
        self.app, self.api_key, self.max_body_bytes, self.hosts = app, api_key, max_body_bytes, hosts

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.hosts is not None:
            host = host_of(headers.get("host", ""))
            if host not in self.hosts:
                return await send_error(self._wrong_host(headers.get("host")), scope, receive, send)
        if scope["type"] != "http":  # no websocket endpoints: refuse rather than pass one through
            return await send_error(APIError(404, "no websocket endpoints here"), scope, receive, send)
        if self.api_key and scope["path"] != "/health" and scope["method"] != "OPTIONS":
            token = headers.get("authorization", "")
            token = token[7:].strip() if token[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(token.encode("utf-8", "replace"), self.api_key.encode()):
                err = APIError(401, "missing or incorrect API key; send the server's --api-key as "
                               "'Authorization: Bearer KEY'", type="authentication_error", code="invalid_api_key",
                               headers={"WWW-Authenticate": "Bearer"})
                return await send_error(err, scope, receive, send)
        declared = headers.get("content-length", "0").strip()
        if not declared.isdigit() or int(declared) > self.max_body_bytes:
            return await send_error(self._too_large(), scope, receive, send)
        body, more = [], True
        size = 0
        while more:  # buffer the body (bounded) so chunked uploads are held to the limit too
            message = await receive()
            if message["type"] != "http.request":
                return
            body.append(message.get("body", b""))
            size += len(body[-1])
            more = message.get("more_body", False)
            if size > self.max_body_bytes:
                return await send_error(self._too_large(), scope, receive, send)
        if _SURROGATE_ESCAPE.search(b"".join(body)) and _has_lone_surrogate(b"".join(body)):
            return await send_error(APIError(400, "the request holds a lone UTF-16 surrogate escape (such as \\ud800), "
                                             "which is not text; send valid Unicode", code="invalid_value"),
                                    scope, receive, send)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(body), "more_body": False}
            return await receive()  # after the body: disconnects reach the app

        await self.app(scope, replay, send)

    def _wrong_host(self, sent: str | None) -> APIError:
        shown = repr(sent[:80]) if sent else "no Host header"
        return APIError(421, f"this server does not answer for Host {shown}; it answers "
                        f"{', '.join(sorted(self.hosts or ()))} (add a name with llmapp serve --allowed-host NAME)",
                        code="host_not_allowed")

    def _too_large(self) -> APIError:
        return APIError(413, f"request body is over {self.max_body_bytes} bytes; send less, or raise the limit "
                        "with llmapp serve --max-body-bytes", code="request_too_large")


async def send_error(err: APIError, scope: dict, receive: Callable, send: Callable) -> None:
    if scope["type"] == "websocket":  # close the handshake: an HTTP body cannot be sent on a websocket
        await send({"type": "websocket.close", "code": 1008})
        return
    await JSONResponse(err.body(), status_code=err.status, headers=err.headers)(scope, receive, send)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")  # fast path: most bodies have none


def _has_lone_surrogate(body: bytes) -> bool:
    """True if the JSON ``body`` decodes to a string with an unpaired surrogate, which tokenizers
    and UTF-8 encoders reject deep inside a job (a 500), so it is refused at the door (a 400)."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return False  # not JSON: the app answers that
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _port_ok(port: str) -> bool:
    return port.isdigit() and 0 < int(port) < 65536


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False
