"""The home's web dashboard: one page (plain HTML, CSS and JavaScript shipped in this package, no
build step, nothing from a CDN) over the home's HTTP routes (ondol/server/home_routes.py).

    GET  /                  the page: rooms and device cards with live state, a command box,
                            the assistant's replies, the recent audit log; Korean or English
    GET  /static/...        its script and style
    GET  /health            {"status": "ok", "assistant": "ready" | "loading" | "failed" | "none"}
    GET  /login             the sign-in page (and ``/login?once=TOKEN``, the printed one-time link)
    /v1/homes/...           the home's routes, with POST .../commands answered by the assistant

``ondol home serve`` runs it (``serve_dashboard``) inside the server shell (ondol/server/shell.py):
everything but /health and /login needs the key, as a bearer token or as the session cookie the
login page sets. The page is up at once; the assistant (its model) loads in a background thread,
and ``/commands`` answers 503 "still loading" until it is ready.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import sys
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from ondol.errors import OndolError
from ondol.home.home import Home
from ondol.server.home_routes import AssistantSlot, home_router
from ondol.server.keys import HOME_MAX_BODY, access_from_args, key_path_for, resolve_key
from ondol.server.shell import STATIC, Access, Runner, new_app

def create_dashboard_app(home: Home, assistant: Any, *, api_key: str | None = None,
                         access: Access | None = None) -> FastAPI:
    """The dashboard of ``home``. ``assistant`` is an Assistant, a function that builds one (run in
    a background thread once the server is up, so the page does not wait for the model), or None
    (the page works, commands in words answer 503). ``access`` (default: ``api_key`` with the
    shell's defaults) says who may call it."""
    slot = AssistantSlot(assistant)
    access = access or Access(api_key=api_key, max_body_bytes=HOME_MAX_BODY)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        slot.start()
        yield

    app = new_app(f"ondol home {home.id}", access, lifespan=lifespan)
    app.state.assistant = slot
    page = _page(home)

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
    v1 = APIRouter(prefix="/v1")
    v1.include_router(home_router(home, slot))
    app.include_router(v1)
    return app


def _page(home: Home) -> str:
    """index.html with the home's id and language, so the script starts without a round trip."""
    config = {"home": home.id, "language": home.spec.language if home.spec.language in ("ko", "en") else "en"}
    text = (STATIC / "index.html").read_text(encoding="utf-8")
    return text.replace("{{config}}", html.escape(json.dumps(config, ensure_ascii=False), quote=True)) \
               .replace("{{lang}}", config["language"])


def announce_key(key_where: str, generated: bool, login_link: str | None) -> None:
    """What a person needs to open a home server: where its key is, and a link that signs in once."""
    if login_link is None:
        print("warning: --no-auth: anyone who can reach this port can move the home's devices.", file=sys.stderr)
        return
    if generated:
        print(f"a new API key for this home was written to {key_where} (mode 0600); it is kept for the next start",
              flush=True)
    else:
        print(f"the API key comes from {key_where}", flush=True)
    print(f"open the dashboard with this one-time link (valid 10 minutes): {login_link}", flush=True)


def serve_dashboard(args: argparse.Namespace) -> int:
    """``ondol home serve``: the home (its store, the simulator or MQTT), its assistant on
    ``args.model`` (None: ondol's embedded model) loading in the background, and uvicorn until
    Ctrl-C or SIGTERM. Returns the exit status."""
    from ondol.home.drivers.mqtt import MqttDriver

    driver = MqttDriver(args.mqtt) if args.mqtt else None
    home = Home.load(args.home, store=args.store, driver=driver)
    try:
        key = resolve_key(args, generate_at=key_path_for(home.id, home.store))
        access = access_from_args(args, key)
    except OndolError:
        home.close()
        raise

    def load_assistant() -> Any:
        from ondol.home.assistant import Assistant

        assistant = Assistant(home, model=args.model)
        print("the assistant is ready", flush=True)
        return assistant

    app = create_dashboard_app(home, load_assistant, access=access)
    runner = Runner(app, args.host, args.port, log_level="warning", busy=lambda: app.state.assistant.loading)

    def started() -> None:
        loading = " (the assistant is loading its model)" if app.state.assistant.loading else ""
        print(f"ondol home {home.id}: the dashboard is at {runner.url}/{loading}", flush=True)
        sessions = app.state.sessions
        link = f"{runner.url}/login?once={sessions.one_time_token()}" if sessions is not None else None
        announce_key(key.where, key.generated, link)

    runner.on_started.append(started)
    try:
        status = runner.run()
    finally:
        home.close()
    runner.exit_if_busy()
    return status
