"""The home's HTTP routes, beside the OpenAI-compatible ones (and behind the same API key):

    GET  /v1/homes                      the served home
    GET  /v1/homes/{home}/devices       every device with its names, area, actions and state
    GET  /v1/homes/{home}/tools         the tool schemas derived from the home (ondol/home/tools.py)
    POST /v1/homes/{home}/actions       {"actions": [...], "source"?, "utterance"?} -> results
    GET  /v1/homes/{home}/events        server-sent events of state changes
    POST /v1/homes/{home}/commands      {"text": "거실 에어컨 24도로 맞춰줘", "dry_run"?, "source"?} -> the assistant's
                                        {"actions": [...], "reply": str, "answer": {...} | null}
    GET  /v1/homes/{home}/audit?limit=N the most recent audit rows, newest first

These routes do not wait for the model: the device layer works without one. ``Home.apply`` takes
a lock and writes the store, so it runs in a worker thread. A refused command answers 400 with the
same body as an applied one (``ok`` false, the reason, a result per device); nothing changed.

``/commands`` needs an assistant (ondol/home/assistant.py): 503 when none is configured, or while it
is still loading. Whatever the assistant decides (done, answer, clarify, refused, none) is a 200:
the request was understood, and the reply says what happened. ``Assistant.handle`` is not
thread-safe and runs the model, so calls are serialised by a lock and run in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from ondol.home.home import Home, StateEvent
from ondol.home.store import AuditRecord
from ondol.server.errors import APIError, parse_body
from ondol.server.protocol import _Request
from ondol.server.shell import BackgroundLoad
from ondol.server.sse import EventStream

log = logging.getLogger("ondol.server")

MAX_ACTIONS = 64
MAX_COMMAND_CHARS = 1000
MAX_AUDIT_ROWS = 500


class ActionsRequest(_Request):
    actions: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ACTIONS)
    source: str = Field("api", min_length=1, max_length=64)
    utterance: str | None = Field(None, max_length=4096)


class CommandRequest(_Request):
    text: str = Field(min_length=1, max_length=MAX_COMMAND_CHARS)
    dry_run: bool = False
    source: str = Field("api", min_length=1, max_length=64)  # the audit's source; the dashboard says so


class AssistantSlot:
    """The home's assistant for ``/commands``: none, ready, or still loading in a thread.

    ``assistant`` is an Assistant (anything with ``handle(text, dry_run=, source=)``), a function
    that builds one (called by ``start`` in a background thread, since loading a model takes a
    while and the routes should answer meanwhile), or None for a server without an assistant."""

    def __init__(self, assistant: Any = None) -> None:
        self._load: BackgroundLoad | None = None
        self.assistant: Any = None
        if callable(assistant) and not hasattr(assistant, "handle"):
            self._load = BackgroundLoad(assistant, "ondol-assistant-load", self._ready, self._failed)
        else:
            self.assistant = assistant
        self.error: str | None = None
        self._lock = threading.Lock()  # handle() is not thread-safe

    @property
    def loading(self) -> bool:
        return self._load is not None and self.assistant is None and self.error is None

    def start(self) -> None:
        """Build the assistant in a background thread (once); no-op when there is nothing to load."""
        if self._load is not None:
            self._load.start()

    def _ready(self, assistant: Any) -> None:
        self.assistant = assistant

    def _failed(self, message: str) -> None:  # shown to every /commands request
        log.error("the home assistant failed to load: %s", message)
        self.error = message

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a loading assistant; True when one is ready."""
        if self._load is not None:
            self._load.join(timeout)
        return self.assistant is not None

    def require(self) -> Any:
        if self.assistant is not None:
            return self.assistant
        if self.error is not None:
            raise APIError(503, f"The home assistant failed to load: {self.error}", "service_unavailable",
                           code="assistant_failed")
        if self.loading:
            raise APIError(503, "The home assistant is still loading its model; retry in a moment.",
                           "service_unavailable", code="assistant_loading", headers={"Retry-After": "1"})
        raise APIError(503, "No assistant is configured on this server, so commands in words are not available; "
                            "send actions to POST /v1/homes/{home}/actions, or serve the home with "
                            "`ondol home serve`.", "service_unavailable", code="assistant_unavailable")

    def handle(self, text: str, dry_run: bool, source: str) -> Any:
        assistant = self.require()
        with self._lock:
            return assistant.handle(text, dry_run=dry_run, source=source)


def home_router(home: Home, assistant: Any = None) -> APIRouter:
    """Routes for ``home``; include it in a router that already checks the API key. ``assistant``
    (an Assistant, a function building one, or an AssistantSlot) answers ``/commands``; a slot
    whose assistant is built by a function must be ``start``ed by the app (its lifespan)."""
    router = APIRouter(prefix="/homes")
    slot = assistant if isinstance(assistant, AssistantSlot) else AssistantSlot(assistant)

    def check(name: str) -> None:
        if name != home.id:
            raise APIError(404, f"No home {name!r} is served here; this server serves {home.id!r}.",
                           code="home_not_found")

    @router.get("")
    async def homes() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [
            {"id": home.id, "language": home.spec.language, "devices": len(home.spec.devices),
             "areas": [{"id": a.id, "names": list(a.names)} for a in home.spec.areas]}]})

    @router.get("/{name}/devices")
    async def devices(name: str) -> JSONResponse:
        check(name)
        return JSONResponse({"object": "list", "data": home.devices()})

    @router.get("/{name}/tools")
    async def tools(name: str) -> JSONResponse:
        check(name)
        return JSONResponse({"object": "list", "data": home.tools()})

    @router.post("/{name}/actions")
    async def actions(name: str, request: Request) -> JSONResponse:
        check(name)
        body: ActionsRequest = await parse_body(request, ActionsRequest)
        result = await asyncio.to_thread(home.apply, body.actions, source=body.source, utterance=body.utterance)
        payload = {"ok": result.ok, "seq": result.seq, "error": result.error, "results": result.results}
        return JSONResponse(payload, status_code=200 if result.ok else 400)

    @router.post("/{name}/commands")
    async def commands(name: str, request: Request) -> JSONResponse:
        check(name)
        body: CommandRequest = await parse_body(request, CommandRequest)
        slot.require()  # 503 before queueing behind the lock when there is no assistant
        result = await asyncio.to_thread(slot.handle, body.text, body.dry_run, body.source)
        return JSONResponse(result.to_json())

    @router.get("/{name}/audit")
    async def audit(name: str, limit: int = Query(50, ge=1, le=MAX_AUDIT_ROWS)) -> JSONResponse:
        check(name)
        rows = await asyncio.to_thread(home.store.audit, home.id, limit=limit)
        return JSONResponse({"object": "list", "data": [_audit_row(r) for r in reversed(rows)]})

    @router.get("/{name}/events")
    async def events(name: str) -> EventStream:
        check(name)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[StateEvent] = asyncio.Queue(maxsize=1024)

        def deliver(event: StateEvent) -> None:  # called from the applying thread
            loop.call_soon_threadsafe(_offer, queue, event)

        unsubscribe = home.subscribe(deliver)

        async def stream() -> AsyncIterator[str]:
            yield ": connected\n\n"  # headers and a first byte now, so clients know they are subscribed
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                data = {"seq": event.seq, "device": event.device, "changed": event.changed, "state": event.state,
                        "source": event.source}
                yield f"id: {event.seq}\nevent: state\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

        return EventStream(stream(), unsubscribe)

    return router


def _audit_row(r: AuditRecord) -> dict[str, Any]:
    """An audit row as JSON; ``ok`` is whether the command was applied (all its results ok)."""
    return {"seq": r.seq, "time": r.time.isoformat(), "source": r.source, "utterance": r.utterance,
            "ok": all(x.get("ok") for x in r.results) if r.results else True,
            "error": next((x.get("error") for x in r.results if not x.get("ok")), None),
            "actions": r.actions, "results": r.results}


def _offer(queue: asyncio.Queue, event: StateEvent) -> None:
    """A listener that stopped reading loses events rather than holding memory without bound."""
    if not queue.full():
        queue.put_nowait(event)
