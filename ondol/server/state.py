"""The server's lifecycle: loading the model in the background, readiness, draining on shutdown, and running under uvicorn."""


from __future__ import annotations

import asyncio
import os
import sys
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from ondol.engine.async_engine import AsyncEngine
from ondol.errors import OndolError
from ondol.llm import LLM
from ondol.server import protocol as P
from ondol.server.errors import APIError
from ondol.server.metrics import Metrics

log = logging.getLogger("ondol.server")

ModelSource = str | Path | LLM | Callable[[], LLM]


# --- state: loading, readiness, shutdown --------------------------------------------------------

class ServerState:
    """What the routes share: the model once loaded, the engine, the metrics, and the phase."""

    def __init__(self, source: ModelSource, served_model_name: str | None, api_key: str | None, max_waiting: int,
                 llm_options: dict[str, Any], grace_seconds: float) -> None:
        self.source = source
        if served_model_name is None:
            if isinstance(source, LLM):
                served_model_name = str(source.checkpoint.path)
            elif isinstance(source, str | Path):
                served_model_name = str(source)
            else:
                served_model_name = "ondol"
        self.model_name = served_model_name
        self.api_key = api_key
        self.max_waiting = max_waiting
        self.llm_options = llm_options
        self.grace_seconds = grace_seconds
        self.phase = "loading"  # loading -> ready -> draining -> stopped; or failed
        self.error: str | None = None
        self.llm: LLM | None = None
        self.engine: AsyncEngine | None = None
        self.formatter: P.LogprobFormatter | None = None
        self.defaults = None
        self.max_model_len = 0
        self.loaded_at = int(time.time())
        self.on_ready: list[Callable[[], None]] = []
        self.on_failed: list[Callable[[str], None]] = []
        self.metrics = Metrics(self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.loader: threading.Thread | None = None
        self._shutdown: asyncio.Task | None = None

    # loading

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if isinstance(self.source, LLM):
            await self._loaded(self.source)
        else:
            self.loader = threading.Thread(target=self._load, name="ondol-load", daemon=True)
            self.loader.start()

    def _load(self) -> None:
        try:
            if isinstance(self.source, str | Path):
                llm = LLM(self.source, **self.llm_options)
            else:
                llm = self.source()
        except BaseException as e:  # noqa: BLE001 - reported, the server stays up answering 503
            msg = str(e) if isinstance(e, OndolError) else f"{type(e).__name__}: {e}"
            if not isinstance(e, OndolError):
                log.exception("Loading the model failed")
            with contextlib.suppress(RuntimeError):  # the server stopped meanwhile: its loop is closed
                self._loop.call_soon_threadsafe(self._failed, msg)
            return
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self._loaded(llm), self._loop)

    async def _loaded(self, llm: LLM) -> None:
        if self.phase != "loading":
            return  # shut down while loading
        try:
            engine = AsyncEngine(llm.engine, max_waiting=self.max_waiting)
            await engine.start()
        except Exception as e:
            log.exception("Starting the engine failed")
            self._failed(f"{type(e).__name__}: {e}")
            return
        self.llm, self.engine = llm, engine
        self.formatter = P.LogprobFormatter(llm.tokenizer)
        self.defaults = llm.default_sampling_params()
        self.max_model_len = engine.engine.max_model_len
        self.phase = "ready"
        log.info("Model %s is ready", self.model_name)
        for cb in self.on_ready:
            cb()

    def _failed(self, message: str) -> None:
        if self.phase != "loading":
            return
        self.phase, self.error = "failed", message
        log.error("The model failed to load: %s", message)
        for cb in self.on_failed:
            cb(message)

    # serving

    def require_ready(self) -> AsyncEngine:
        if self.phase == "ready":
            return self.engine
        if self.phase == "loading":
            raise APIError(503, "The model is still loading; retry shortly.", "service_unavailable",
                           code="model_loading", headers={"Retry-After": "1"})
        if self.phase == "failed":
            raise APIError(503, f"The model failed to load: {self.error}", "service_unavailable", code="model_failed")
        raise APIError(503, "The server is shutting down.", "service_unavailable", code="shutting_down")

    def check_model(self, name: str) -> None:
        if name != self.model_name:
            raise APIError(404, f"The model `{name}` does not exist; this server serves `{self.model_name}`.",
                           param="model", code="model_not_found")

    # shutdown

    async def shutdown(self, grace_seconds: float | None = None) -> None:
        """Stop admitting, let requests in flight finish within the grace period, abort the rest.
        Idempotent: a second call waits for the first."""
        if self._shutdown is None:
            self._shutdown = asyncio.ensure_future(self._do_shutdown(
                self.grace_seconds if grace_seconds is None else grace_seconds))
        await asyncio.shield(self._shutdown)

    async def _do_shutdown(self, grace: float) -> None:
        self.phase = "draining" if self.phase in ("ready", "loading") else self.phase
        if self.engine is not None:
            log.info("Shutting down: waiting up to %.0f s for requests in flight", grace)
            await self.engine.shutdown(grace)
        self.phase = "stopped"



# --- running it -----------------------------------------------------------------------------------

def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info",
          on_ready: Callable[[str], None] | None = None) -> int:
    """Run ``app`` with uvicorn until SIGTERM or Ctrl-C; returns the exit status (0, or 1 when the
    model failed to load). The first signal drains (new requests get 503, requests in flight get
    the grace period), a second one exits at once."""
    import uvicorn

    state: ServerState = app.state.ondol
    status = 0

    class _Server(uvicorn.Server):
        draining = False

        def handle_exit(self, sig: int, frame: Any) -> None:  # never re-raise the signal: exit 0
            loop = state._loop
            if self.draining or loop is None or not self.started:
                self.should_exit = True
                if self.draining:
                    self.force_exit = True
                return
            self.draining = True
            loop.call_soon_threadsafe(lambda: loop.create_task(self._drain()))

        async def _drain(self) -> None:
            try:
                await state.shutdown()
            finally:
                self.should_exit = True

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if state.phase == "ready":
                announce()

    server = _Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                                    timeout_graceful_shutdown=max(1, int(state.grace_seconds) + 5)))

    def announce() -> None:
        if server.started and on_ready is not None:
            on_ready(f"http://{host}:{port}")

    def failed(message: str) -> None:
        nonlocal status
        status = 1
        server.should_exit = True

    state.on_ready.append(announce)
    state.on_failed.append(failed)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} \
        if threading.current_thread() is threading.main_thread() else {}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if state.loader is not None and state.loader.is_alive():
        # Stopped while the model was still loading: tearing the interpreter down under a thread
        # that is inside torch aborts the process, so leave at once (nothing is left to flush).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def ondol_version() -> str:
    from ondol import __version__

    return __version__

