"""The home's web dashboard: one page (plain HTML, CSS and JavaScript shipped in this package, no
build step, nothing from a CDN) over the home's HTTP routes (ondol/server/home_routes.py).

    GET  /                  the page: rooms and device cards with live state, a command box,
                            the assistant's replies, the recent audit log; Korean or English
    GET  /static/...        its script and style
    GET  /health            {"status": "ok", "assistant": "ready" | "loading" | "failed" | "none"}
    /v1/homes/...           the home's routes, with POST .../commands answered by the assistant

``ondol home serve`` runs it (``serve_dashboard``). The page is up at once; the assistant (its model)
loads in a background thread, and ``/commands`` answers 503 "still loading" until it is ready.
With an API key, /v1 needs ``Authorization: Bearer KEY``; the page asks for the key once and keeps it
in the browser's localStorage.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import html
import json
import sys
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from ondol.home.home import Home
from ondol.server.errors import APIError, install_error_handlers
from ondol.server.home_routes import AssistantSlot, home_router

STATIC = Path(__file__).with_name("static")


def create_dashboard_app(home: Home, assistant: Any, *, api_key: str | None = None) -> FastAPI:
    """The dashboard of ``home``. ``assistant`` is an Assistant, a function that builds one (run in
    a background thread once the server is up, so the page does not wait for the model), or None
    (the page works, commands in words answer 503)."""
    slot = AssistantSlot(assistant)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        slot.start()
        yield

    app = FastAPI(title=f"ondol home {home.id}", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.assistant = slot
    install_error_handlers(app)
    page = _page(home, needs_key=api_key is not None)

    async def authorize(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(401, "Invalid or missing API key: send `Authorization: Bearer <key>`.",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        # no-cache: after an upgrade the page and its script must not come from two versions
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get("/health")
    async def health() -> JSONResponse:
        status = ("ready" if slot.assistant is not None else "failed" if slot.error
                  else "loading" if slot.loading else "none")
        body = {"status": "ok", "home": home.id, "assistant": status}
        if slot.error:
            body["error"] = slot.error
        return JSONResponse(body)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])
    v1.include_router(home_router(home, slot))
    app.include_router(v1)
    return app


def _page(home: Home, *, needs_key: bool) -> str:
    """index.html with the home's id, its language and whether a key is needed, so the script
    starts without a round trip (and without the key, which /v1/homes would need)."""
    config = {"home": home.id, "language": home.spec.language if home.spec.language in ("ko", "en") else "en",
              "needsKey": needs_key}
    text = (STATIC / "index.html").read_text(encoding="utf-8")
    return text.replace("{{config}}", html.escape(json.dumps(config, ensure_ascii=False), quote=True)) \
               .replace("{{lang}}", config["language"])


def serve_dashboard(args: argparse.Namespace) -> int:
    """``ondol home serve``: the home (its store, the simulator or MQTT), its assistant on
    ``args.model`` (None: ondol's embedded model) loading in the background, and uvicorn until
    Ctrl-C or SIGTERM. Returns the exit status."""
    import uvicorn

    from ondol.home.drivers.mqtt import MqttDriver

    driver = MqttDriver(args.mqtt) if getattr(args, "mqtt", None) else None
    home = Home.load(args.home, store=args.store, driver=driver)

    def load_assistant() -> Any:
        from ondol.home.assistant import Assistant

        assistant = Assistant(home, model=args.model)
        print("the assistant is ready", flush=True)
        return assistant

    app = create_dashboard_app(home, load_assistant, api_key=getattr(args, "api_key", None))
    host = "localhost" if args.host in ("127.0.0.1", "::1") else args.host
    url = f"http://{'[' + host + ']' if ':' in host else host}:{args.port}/"

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                loading = " (the assistant is loading its model)" if app.state.assistant.loading else ""
                print(f"ondol home {home.id}: the dashboard is at {url}{loading}", flush=True)

    server = Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", lifespan="on",
                                   timeout_graceful_shutdown=5))
    try:
        server.run()
    finally:
        home.close()
    if not server.started:
        print(f"error: could not serve on {args.host}:{args.port} (is the port in use?)", file=sys.stderr)
        return 1
    return 0
