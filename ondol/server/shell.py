"""The one shell around both of ondol's HTTP servers (``ondol serve`` and ``ondol home serve``):
who may call them, how much a request may be, how errors look, and how they start and stop.

Every request passes ``Gate`` (pure ASGI, before any route or body parser) in this order:

1. **Host**: when the server knows the address it is bound to, the Host header must name it
   (or a loopback name, or an ``--allowed-origin``'s host); a DNS-rebinding page is refused (403).
2. **Origin**: a request with an ``Origin`` other than the server's own (or an allowed one), a
   ``null`` Origin, or ``Sec-Fetch-Site: cross-site`` outside a plain navigation, is refused (403)
   before its body is read: a web page on another site cannot drive a device.
3. **Key**: with a key, every path but ``/health``, ``/login`` (and ``/metrics`` when opened)
   needs ``Authorization: Bearer KEY`` or the session cookie ``/login`` sets (HttpOnly,
   SameSite=Strict, signed with the key, 30 days). A browser navigating without one is sent to
   ``/login``; anything else gets 401.
4. **Writes** (POST, PUT, PATCH, DELETE with a body) must be ``application/json`` (415).
5. **Size**: a body over ``max_body_bytes`` is 413, from Content-Length or while it streams in.

Invariant: a request refused here reached no route, so it changed nothing and parsed nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ondol.server.errors import APIError, error_response, install_error_handlers, parse_body
from ondol.server.protocol import _Request

log = logging.getLogger("ondol.server")

STATIC = Path(__file__).with_name("static")
SESSION_COOKIE = "ondol_session"
SESSION_SECONDS = 30 * 24 * 3600
ONE_TIME_SECONDS = 600
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Access:
    """Who may call a server and how big a request may be.

    ``api_key`` None means no key (plain ``ondol serve`` by default, or ``--no-auth`` on loopback).
    ``host`` is the address the server is bound to; None (an app embedded in another ASGI server,
    or a test client) skips the Host check but keeps the Origin check against the Host header."""

    api_key: str | None = None
    host: str | None = None
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = 8 << 20
    open_metrics: bool = False

    def open_paths(self) -> frozenset[str]:
        return frozenset({"/health", "/login", "/logout"} | ({"/metrics"} if self.open_metrics else set()))

    def allowed_hosts(self) -> frozenset[str] | None:
        """Host names the Host header may carry; None accepts any (a wildcard bind, or unknown)."""
        if self.host is None or self.host in WILDCARD_HOSTS:
            return None
        extra = {(urlsplit(o).hostname or "").lower() for o in self.allowed_origins}
        return frozenset(LOOPBACK_NAMES | {self.host.lower().strip("[]")} | extra)


# --- sessions -------------------------------------------------------------------------------------

class Sessions:
    """Session cookies and one-time login tokens, both derived from (or checked against) the key,
    so a new key ends every session. Cookie value: ``ISSUED.HMAC-SHA256(key, ISSUED)``."""

    def __init__(self, api_key: str) -> None:
        self._key = api_key.encode()
        self._once: dict[str, float] = {}  # token -> expiry (monotonic); in memory, single use
        self._lock = threading.Lock()

    def check_key(self, key: str) -> bool:
        return hmac.compare_digest(key.encode(), self._key)

    def _sign(self, issued: str) -> str:
        return hmac.new(self._key, f"ondol-session:{issued}".encode(), hashlib.sha256).hexdigest()

    def cookie(self) -> str:
        issued = str(int(time.time()))
        return f"{issued}.{self._sign(issued)}"

    def valid(self, value: str) -> bool:
        issued, _, mac = value.partition(".")
        if not issued.isdigit() or len(issued) > 12 or not hmac.compare_digest(mac.encode(), self._sign(issued).encode()):
            return False
        return 0 <= time.time() - int(issued) < SESSION_SECONDS

    def one_time_token(self) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            now = time.monotonic()
            self._once = {t: e for t, e in self._once.items() if e > now}
            self._once[token] = now + ONE_TIME_SECONDS
        return token

    def redeem(self, token: str) -> bool:
        with self._lock:
            expiry = self._once.pop(token, None)
        return expiry is not None and expiry > time.monotonic()


# --- the gate -------------------------------------------------------------------------------------

def _refuse(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> Response:
    return error_response(status, message, "invalid_request_error", code=code, headers=headers)


def _hostname(netloc: str) -> str:
    """``example.com:8080`` -> ``example.com``; ``[::1]:80`` -> ``::1``."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:].partition("]")[0]
    if netloc.count(":") > 1:  # a bare IPv6 address
        return netloc
    return netloc.partition(":")[0]


class Gate:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app: Any, access: Access, sessions: Sessions | None) -> None:
        self.app, self.access, self.sessions = app, access, sessions
        self.hosts = access.allowed_hosts()
        self.origins = frozenset(o.rstrip("/").lower() for o in access.allowed_origins)
        self.open = access.open_paths()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        refusal = self.check(scope, headers)
        if refusal is not None:
            return await refusal(scope, receive, send)
        limit, seen = self.access.max_body_bytes, 0

        async def bounded() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # a chunked body with no Content-Length: stop reading it here
                    raise APIError(413, _too_large(limit), code="body_too_large")
            return message

        await self.app(scope, bounded, send)

    def check(self, scope: dict, headers: dict[str, str]) -> Response | None:
        method, path = scope["method"], scope["path"]
        host = headers.get("host", "")
        if self.hosts is not None and _hostname(host) not in self.hosts:
            return _refuse(403, f"This server does not answer for the host {host[:100]!r}.", "host_not_allowed")
        origin = headers.get("origin")
        if origin is not None:
            o = origin.rstrip("/").lower()
            if o == "null" or (o not in self.origins and urlsplit(o).netloc != host.lower()):
                return _refuse(403, "Cross-origin requests are refused: this server only answers its own pages "
                                    "(or an --allowed-origin).", "cross_origin")
        elif headers.get("sec-fetch-site") == "cross-site" and not (
                method in ("GET", "HEAD") and headers.get("sec-fetch-mode") == "navigate"):
            return _refuse(403, "Cross-site requests are refused.", "cross_origin")
        if self.sessions is not None and path not in self.open and not self._authorized(headers):
            if method == "GET" and "text/html" in headers.get("accept", ""):
                return RedirectResponse("/login", status_code=303)
            return _refuse(401, "Invalid or missing API key: send `Authorization: Bearer <key>`, or sign in at "
                                "/login.", "invalid_api_key", {"WWW-Authenticate": "Bearer"})
        if method in _UNSAFE and _has_body(headers):
            media = headers.get("content-type", "").partition(";")[0].strip().lower()
            if media != "application/json":
                return _refuse(415, f"Request bodies must be application/json, not {media[:60] or 'untyped'}.",
                               "unsupported_media_type")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.access.max_body_bytes:
            return _refuse(413, _too_large(self.access.max_body_bytes), "body_too_large")
        return None

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.sessions.check_key(token.strip()):
            return True
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE and self.sessions.valid(value):
                return True
        return False


def _has_body(headers: dict[str, str]) -> bool:
    return headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in headers


def _too_large(limit: int) -> str:
    return f"The request body is larger than this server accepts ({_human(limit)}; see --max-body-size)."


def _human(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n >> 10} KiB" if n >= 1024 else f"{n} bytes"


# --- the app --------------------------------------------------------------------------------------

class _Login(_Request):
    key: str


def new_app(title: str, access: Access, *, version: str | None = None, lifespan: Any = None) -> FastAPI:
    """A FastAPI app inside the shell: ondol's error bodies, the Gate, and (with a key) the login
    routes. ``app.state.sessions`` is the Sessions (None without a key)."""
    app = FastAPI(title=title, version=version or ondol_version(), lifespan=lifespan)
    sessions = Sessions(access.api_key) if access.api_key is not None else None
    app.state.access, app.state.sessions = access, sessions
    install_error_handlers(app)
    app.add_middleware(Gate, access=access, sessions=sessions)
    if sessions is not None:
        _login_routes(app, sessions)
    return app


def _login_routes(app: FastAPI, sessions: Sessions) -> None:
    page = (STATIC / "login.html").read_text(encoding="utf-8")

    def signed_in(response: Response) -> Response:
        response.set_cookie(SESSION_COOKIE, sessions.cookie(), max_age=SESSION_SECONDS, httponly=True,
                            samesite="strict", path="/")
        return response

    @app.get("/login", include_in_schema=False)
    async def login_page(request: Request) -> Response:
        once = parse_qs(request.url.query).get("once")
        if once:
            if sessions.redeem(once[0][:100]):
                return signed_in(RedirectResponse("/", status_code=303))
            return HTMLResponse(page.replace("{{notice}}", "expired"), status_code=401)
        return HTMLResponse(page.replace("{{notice}}", ""), headers={"Cache-Control": "no-store"})

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        body = await parse_body(request, _Login)
        if not sessions.check_key(body.key.strip()):
            await asyncio.sleep(0.5)  # a guess costs something
            raise APIError(401, "That is not this server's API key.", code="invalid_api_key")
        return signed_in(Response(status_code=204))

    @app.post("/logout", include_in_schema=False)
    async def logout() -> Response:
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response


def guarded_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) of ``app`` that needs the key: the list a test walks, so a new route
    cannot be left open by mistake."""
    open_paths = app.state.access.open_paths()
    return [(m, p) for m, p in _all_routes(app.routes, "") if p not in open_paths and m != "HEAD"]


def _all_routes(routes: list, prefix: str) -> list[tuple[str, str]]:
    out = []
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI keeps included routers unflattened
        if included is not None:
            out += _all_routes(included.routes, prefix + getattr(getattr(route, "include_context", None), "prefix", ""))
            continue
        path = prefix + getattr(route, "path", "")
        out += [(method, path) for method in sorted(getattr(route, "methods", None) or {"GET"})]
    return out


def ondol_version() -> str:
    from ondol import __version__

    return __version__


# --- background loading ---------------------------------------------------------------------------

T = TypeVar("T")


class BackgroundLoad(Generic[T]):
    """Builds one slow thing (a model, an assistant) in a daemon thread, so the server answers
    meanwhile. ``on_done(value)`` or ``on_error(message)`` runs in that thread; an OndolError is
    the user's problem (its message), anything else is a bug (logged with its traceback)."""

    def __init__(self, build: Callable[[], T], name: str, on_done: Callable[[T], None],
                 on_error: Callable[[str], None]) -> None:
        self.build, self.on_done, self.on_error = build, on_done, on_error
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        if not self.thread.is_alive() and self.thread.ident is None:
            self.thread.start()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self.thread.ident is not None:
            self.thread.join(timeout)

    def _run(self) -> None:
        from ondol.errors import OndolError

        try:
            value = self.build()
        except BaseException as e:  # noqa: BLE001 - reported; the server stays up and says why
            if not isinstance(e, OndolError):
                log.exception("%s failed", self.thread.name)
            self.on_error(str(e) if isinstance(e, OndolError) else f"{type(e).__name__}: {e}")
            return
        self.on_done(value)


# --- running under uvicorn ------------------------------------------------------------------------

def display_url(host: str, port: int) -> str:
    name = "localhost" if host in ("127.0.0.1", "::1") else "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"http://{'[' + name + ']' if ':' in name else name}:{port}"


@dataclass
class Runner:
    """uvicorn for one app until SIGTERM or Ctrl-C. The first signal runs ``drain`` (new requests
    get 503, requests in flight their grace period); a second exits at once. ``run`` returns the
    exit status: 0, ``stop(status)``'s, or 1 when the port could not be bound."""

    app: FastAPI
    host: str
    port: int
    log_level: str = "info"
    drain: Callable[[], Awaitable[None]] | None = None
    grace_seconds: float = 5.0
    busy: Callable[[], bool] = lambda: False  # a loader thread still inside torch: leave with os._exit
    on_started: list[Callable[[], None]] = field(default_factory=list)
    status: int = 0
    server: Any = None

    @property
    def url(self) -> str:
        return display_url(self.host, self.port)

    @property
    def started(self) -> bool:
        return self.server is not None and self.server.started

    def stop(self, status: int = 0) -> None:
        self.status = status
        if self.server is not None:
            self.server.should_exit = True

    def run(self) -> int:
        import signal

        import uvicorn

        runner = self

        class _Server(uvicorn.Server):
            draining = False
            loop: asyncio.AbstractEventLoop | None = None

            def handle_exit(self, sig: int, frame: Any) -> None:  # never re-raise the signal: exit 0
                if self.draining or runner.drain is None or self.loop is None or not self.started:
                    self.should_exit = True
                    self.force_exit = self.draining
                    return
                self.draining = True
                self.loop.call_soon_threadsafe(lambda: self.loop.create_task(self._drain()))

            async def _drain(self) -> None:
                try:
                    await runner.drain()
                finally:
                    self.should_exit = True

            async def startup(self, sockets: Any = None) -> None:
                self.loop = asyncio.get_running_loop()
                await super().startup(sockets)
                if self.started:
                    for cb in runner.on_started:
                        cb()

        self.server = _Server(uvicorn.Config(self.app, host=self.host, port=self.port, log_level=self.log_level,
                                             lifespan="on", timeout_graceful_shutdown=max(1, int(self.grace_seconds) + 5)))
        main = threading.current_thread() is threading.main_thread()
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
        try:
            with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind
                self.server.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if not self.server.started and self.status == 0:
            print(f"error: could not serve on {self.host}:{self.port} (is the port in use?)", file=sys.stderr)
            self.status = 1
        return self.status

    def exit_if_busy(self) -> None:
        """Call once the server has stopped and everything is closed."""
        import os

        if self.busy():
            # Stopped while a model was still loading: tearing the interpreter down under a thread
            # that is inside torch aborts the process, so leave at once (nothing is left to flush).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(self.status)
