"""The home's HTTP routes, beside the OpenAI-compatible ones (and behind the same API key):

    GET  /v1/homes                      the served home
    GET  /v1/homes/{home}/devices       every device with its names, area, actions and state
    GET  /v1/homes/{home}/tools         the tool schemas derived from the home (ondol/home/tools.py)
    POST /v1/homes/{home}/actions       {"actions": [...], "source"?, "utterance"?} -> results
    GET  /v1/homes/{home}/events        server-sent events of state changes

These routes do not wait for the model: the device layer works without one. ``Home.apply`` takes
a lock and writes the store, so it runs in a worker thread. A refused command answers 400 with the
same body as an applied one (``ok`` false, the reason, a result per device); nothing changed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from ondol.home.home import Home, StateEvent
from ondol.server.errors import APIError, parse_body
from ondol.server.protocol import _Request
from ondol.server.sse import EventStream

MAX_ACTIONS = 64


class ActionsRequest(_Request):
    actions: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ACTIONS)
    source: str = Field("api", min_length=1, max_length=64)
    utterance: str | None = Field(None, max_length=4096)


def home_router(home: Home) -> APIRouter:
    """Routes for ``home``; include it in a router that already checks the API key."""
    router = APIRouter(prefix="/homes")

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


def _offer(queue: asyncio.Queue, event: StateEvent) -> None:
    """A listener that stopped reading loses events rather than holding memory without bound."""
    if not queue.full():
        queue.put_nowait(event)
