"""The OpenAI-compatible HTTP server: routes, errors, streaming, metrics, loading and shutdown.

No model logic lives here: requests are validated and converted in ``protocol``, prompts are
rendered by ``LLM``, and every token comes from ``AsyncEngine``, which batches all requests.

* The model loads in a background thread once the server is up: ``/health`` and every ``/v1``
  route answer 503 until it is ready.
* Every error is OpenAI's ``{"error": {...}}``: 400 for anything malformed (bad JSON or UTF-8,
  wrong types, a prompt longer than the context), 401 without the API key, 404 for an unknown
  model, 429 with Retry-After when too many requests wait, 503 while loading or shutting down.
  A 500 means a bug in ondol and is logged.
* ``n`` choices are ``n`` engine requests ``{id}-{i}``, with seed + i. When a client goes away,
  its engine requests are aborted at once (the stream's tasks are cancelled, which closes the
  engine's generators), during a stream or while a non-streamed answer is being generated.
* Shutdown (SIGTERM under ``serve``, or the lifespan's end under any ASGI server): stop admitting
  (503), let requests in flight finish within the grace period, abort the rest, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from ondol.constrained.chat import ChatConstraints, chat_constraints, finish_reason
from ondol.engine.async_engine import AsyncEngine
from ondol.engine.request import RequestOutput
from ondol.errors import ChatTemplateError
from ondol.home.home import Home
from ondol.server import protocol as P
from ondol.server.errors import APIError, ClientGone, parse_body
from ondol.server.metrics import CountRequests
from ondol.server.home_routes import home_router
from ondol.server.sse import EventStream
from ondol.server.metrics import Metrics
from ondol.server.shell import Access, new_app
from ondol.server.state import ModelSource, ServerState

log = logging.getLogger("ondol.server")

DEFAULT_GRACE_SECONDS = 10.0


# --- running engine requests --------------------------------------------------------------------

_END = object()


class _Choices:
    """The engine requests behind one API request (one per choice), merged into one stream of
    (choice index, RequestOutput). ``start`` waits for every request's first output, so a request
    the engine refuses (bad prompt, queue full) raises before any response is sent. ``close``
    cancels the tasks that drive the engine's generators, which aborts unfinished requests at once,
    and then closes every generator (from a task of its own, so it completes even when called from
    a cancelled scope)."""

    _finalizers: set[asyncio.Task] = set()

    def __init__(self, engine: AsyncEngine, metrics: Metrics, request_id: str,
                 jobs: list[tuple[list[int], Any]], prompt_of: list[int], arrival: float) -> None:
        self.gens = [engine.generate(f"{request_id}-{i}", ids, params) for i, (ids, params) in enumerate(jobs)]
        self.metrics, self.prompt_of, self.arrival = metrics, prompt_of, arrival
        self.queue: asyncio.Queue = asyncio.Queue()
        self.tasks: list[asyncio.Task] = []
        self.pending = len(self.gens)
        n = len(self.gens)
        self.last_token_time: list[float | None] = [None] * n
        self.prompt_tokens = [0] * n
        self.completion_tokens = [0] * n
        self.cached_tokens = [0] * n
        self.closed = False

    async def start(self) -> None:
        async def first(g: Any) -> RequestOutput | None:
            try:
                return await g.__anext__()
            except StopAsyncIteration:
                return None

        firsts = [asyncio.ensure_future(first(g)) for g in self.gens]
        self.tasks += firsts
        done, pending = await asyncio.wait(firsts, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if t.exception() is not None:
                raise t.exception()
        for i, (t, g) in enumerate(zip(firsts, self.gens)):
            out = t.result()
            if out is None:
                self.queue.put_nowait((i, _END))
                continue
            self._record(i, out)
            self.queue.put_nowait((i, out))
            if out.finished:
                self.queue.put_nowait((i, _END))
            else:
                self.tasks.append(asyncio.ensure_future(self._pump(i, g)))

    async def _pump(self, i: int, g: Any) -> None:
        try:
            async for out in g:
                self._record(i, out)
                self.queue.put_nowait((i, out))
        except Exception as e:  # a bug in the engine: reported to the consumer
            self.queue.put_nowait((i, e))
        self.queue.put_nowait((i, _END))

    def _record(self, i: int, out: RequestOutput) -> None:
        now = time.monotonic()
        m = self.metrics
        if out.token_ids:
            last = self.last_token_time[i]
            if last is None:
                m.ttft.observe(now - self.arrival)
                m.prompt_tokens.inc(out.prompt_tokens)
            else:
                per = (now - last) / len(out.token_ids)
                for _ in out.token_ids:
                    m.itl.observe(per)
            self.last_token_time[i] = now
            m.generation_tokens.inc(len(out.token_ids))
        if out.finished:
            m.e2e.observe(now - self.arrival)
        self.prompt_tokens[i] = out.prompt_tokens
        self.completion_tokens[i] = out.completion_tokens
        self.cached_tokens[i] = out.cached_tokens

    async def events(self) -> AsyncIterator[tuple[int, RequestOutput]]:
        while self.pending:
            i, item = await self.queue.get()
            if item is _END:
                self.pending -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield i, item

    def usage(self) -> P.Usage:
        """Prompt tokens once per prompt (n choices share one), completion tokens of every choice."""
        first_choice: dict[int, int] = {}
        for i, p in enumerate(self.prompt_of):
            first_choice.setdefault(p, i)
        prompt = sum(self.prompt_tokens[i] for i in first_choice.values())
        cached = sum(self.cached_tokens[i] for i in first_choice.values())
        return P.Usage.of(prompt, sum(self.completion_tokens), cached)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for t in self.tasks:
            t.cancel()
        fin = asyncio.get_running_loop().create_task(self._finalize())
        self._finalizers.add(fin)
        fin.add_done_callback(self._finalizers.discard)

    async def _finalize(self) -> None:
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for g in self.gens:
            with contextlib.suppress(Exception):
                await g.aclose()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(request: Request, work: Any) -> Any:
    """Await ``work``; if the client disconnects first, cancel it and raise ClientGone."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
    if task.done() and not task.cancelled():
        return task.result()
    raise ClientGone()


def _sse(model: BaseModel) -> str:
    return f"data: {model.model_dump_json()}\n\n"


def _sse_error(message: str) -> str:
    body = P.ErrorResponse(error=P.ErrorInfo(message=message, type="server_error"))
    return f"data: {body.model_dump_json()}\n\n"


# --- the app ------------------------------------------------------------------------------------

def create_app(model: ModelSource, *, served_model_name: str | None = None, api_key: str | None = None,
               max_waiting: int = 256, shutdown_grace_seconds: float = DEFAULT_GRACE_SECONDS,
               home: Home | None = None, assistant: Any = None, access: Access | None = None,
               **llm_options: Any) -> FastAPI:
    """The server for one model: a path (loaded in a background thread once the server is up, with
    ``llm_options`` such as dtype, max_model_len, kv_cache_bytes, max_num_seqs passed to LLM), a
    loaded LLM, or a function returning one (called in that thread). ``app.state.ondol`` is the
    ServerState (its ``on_ready``/``on_failed`` callbacks, ``shutdown``, the engine). With ``home``,
    its device routes are served under /v1/homes (ondol/server/home_routes.py), and with
    ``assistant`` (an Assistant of that home) its ``/commands`` route. ``access`` (default: ``api_key``
    with the shell's defaults) says who may call it (ondol/server/shell.py)."""
    state = ServerState(model, served_model_name, max_waiting, llm_options, shutdown_grace_seconds)
    access = access or Access(api_key=api_key)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        await state.start()
        try:
            yield
        finally:
            await state.shutdown()

    app = new_app("ondol", access, lifespan=lifespan)
    app.state.ondol = state
    app.add_middleware(CountRequests, metrics=state.metrics)

    @app.get("/health")
    async def health() -> JSONResponse:
        ok = state.phase == "ready"
        body = {"status": "ok" if ok else state.phase}
        if state.error:
            body["error"] = state.error
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.export(), media_type=CONTENT_TYPE_LATEST)

    v1 = APIRouter(prefix="/v1")

    def model_card() -> P.ModelCard:
        return P.ModelCard(id=state.model_name, created=state.loaded_at, root=state.model_name,
                           max_model_len=state.max_model_len or None)

    @v1.get("/models")
    async def list_models() -> JSONResponse:
        state.require_ready()
        return JSONResponse(P.ModelList(data=[model_card()]).model_dump())

    @v1.get("/models/{name:path}")
    async def get_model(name: str) -> JSONResponse:
        state.require_ready()
        state.check_model(name)
        return JSONResponse(model_card().model_dump())

    async def admit(request: Request, body: type[P.ChatCompletionRequest | P.CompletionRequest]) -> tuple:
        """The start of every generation route: the engine (503 until ready), the validated body,
        its structure and its sampling params (one per choice), its grammar compiled."""
        engine = state.require_ready()
        req = await parse_body(request, body)
        state.check_model(req.model)
        chat = isinstance(req, P.ChatCompletionRequest)
        constraints = chat_constraints(state.llm.tokenizer, tools=req.tools if chat else None,
                                       tool_choice=req.tool_choice if chat else None,
                                       parallel_tool_calls=req.parallel_tool_calls if chat else True,
                                       response_format=req.response_format)
        params = [constraints.apply(p) for p in P.sampling_params(req, state.defaults, state.max_model_len)]
        if constraints.grammar is not None:
            # A schema not seen before takes milliseconds to compile, and the first one also builds
            # the grammar tokenizer (up to ~1 s at 128k tokens): in a thread, so other streams go on.
            await asyncio.to_thread(state.llm.engine.grammars.compile, constraints.grammar)
        return engine, req, constraints, params

    @v1.post("/chat/completions")
    async def chat_completions(request: Request) -> Response:
        arrival = time.monotonic()
        engine, req, constraints, params = await admit(request, P.ChatCompletionRequest)
        try:
            # In a thread, always: tokenizing a long prompt takes a while, and a chat template may
            # take its whole time budget (ondol.tokenizer.bounded); other streams go on meanwhile.
            prompt = await asyncio.to_thread(state.llm.chat_prompt, req.template_messages(),
                                             tools=constraints.template_tools())
        except ChatTemplateError as e:
            raise APIError(400, str(e), param="messages") from None
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        choices = _Choices(engine, state.metrics, rid, [(prompt, p) for p in params], [0] * req.n, arrival)
        return await _respond(request, choices, lambda: _chat_stream(state, req, rid, choices, constraints),
                              lambda: _chat_response(state, req, rid, choices, constraints), req.stream)

    @v1.post("/completions")
    async def completions(request: Request) -> Response:
        arrival = time.monotonic()
        engine, req, _, params = await admit(request, P.CompletionRequest)
        prompts = await asyncio.to_thread(lambda: [state.llm.encode(p) for p in req.prompts()])
        if len(prompts) * req.n > 64:
            raise APIError(400, "At most 64 completions (prompts × n) per request.", param="prompt")
        jobs = [(ids, p) for ids in prompts for p in params]
        prompt_of = [k for k in range(len(prompts)) for _ in params]
        rid = f"cmpl-{uuid.uuid4().hex}"
        choices = _Choices(engine, state.metrics, rid, jobs, prompt_of, arrival)
        return await _respond(request, choices, lambda: _completion_stream(state, req, rid, choices),
                              lambda: _completion_response(state, req, rid, choices), req.stream)

    if home is not None:
        v1.include_router(home_router(home, assistant))
    app.include_router(v1)
    return app


async def _respond(request: Request, choices: _Choices, stream: Callable[[], AsyncIterator[str]],
                   collect: Callable[[], Any], streaming: bool) -> Response:
    try:
        await _unless_disconnected(request, choices.start())
        if streaming:
            return EventStream(stream(), choices.close)
        return JSONResponse((await _unless_disconnected(request, collect())).model_dump(mode="json"))
    except BaseException:
        choices.close()
        raise
    finally:
        if not streaming:
            choices.close()


async def _collect(choices: _Choices) -> tuple[list[str], list[list], list[str | None]]:
    """Every choice's whole text, logprobs and finish reason."""
    n = len(choices.gens)
    texts: list[list[str]] = [[] for _ in range(n)]
    lps: list[list] = [[] for _ in range(n)]
    reasons: list[str | None] = [None] * n
    async for i, out in choices.events():
        texts[i].append(out.text)
        if out.logprobs:
            lps[i] += out.logprobs
        if out.finished:
            reasons[i] = out.finish_reason
    return ["".join(t) for t in texts], lps, reasons


async def _chat_response(state: ServerState, req: P.ChatCompletionRequest, rid: str, choices: _Choices,
                         constraints: ChatConstraints) -> P.ChatCompletionResponse:
    texts, lps, reasons = await _collect(choices)
    out = []
    for i, text in enumerate(texts):
        content, calls = constraints.parse(text)
        message = P.AssistantMessage(content=content, tool_calls=[P.ToolCallOut.of(c) for c in calls] or None)
        out.append(P.ChatCompletionChoice(
            index=i, message=message, finish_reason=finish_reason(reasons[i], bool(calls)),
            logprobs=P.ChatLogprobs(content=state.formatter.chat(lps[i])) if req.logprobs else None))
    return P.ChatCompletionResponse(id=rid, model=state.model_name, usage=choices.usage(), choices=out)



async def _completion_response(state: ServerState, req: P.CompletionRequest, rid: str,
                               choices: _Choices) -> P.CompletionResponse:
    texts, lps, reasons = await _collect(choices)
    return P.CompletionResponse(id=rid, model=state.model_name, usage=choices.usage(), choices=[
        P.CompletionChoice(index=i, text=texts[i], finish_reason=reasons[i],
                           logprobs=state.formatter.completion(lps[i], P.TextOffsets())
                           if req.logprobs is not None else None)
        for i in range(len(texts))])


async def _sse_stream(rid: str, choices: _Choices, body: AsyncIterator[str],
                      usage: Callable[[], str] | None) -> AsyncIterator[str]:
    """A stream's events, then the usage chunk if asked for and [DONE]; an error mid-way is one
    error event (the status line is long gone), and the engine requests are closed either way."""
    try:
        async for event in body:
            yield event
        if usage is not None:
            yield usage()
        yield "data: [DONE]\n\n"
    except Exception as e:
        log.exception("Error while streaming %s", rid)
        yield _sse_error(f"Internal error while generating: {type(e).__name__}.")
        yield "data: [DONE]\n\n"
    finally:
        choices.close()


def _chat_stream(state: ServerState, req: P.ChatCompletionRequest, rid: str, choices: _Choices,
                 constraints: ChatConstraints) -> AsyncIterator[str]:
    created = int(time.time())
    fmt = constraints.tool_format
    parsers = [fmt.stream_parser() for _ in choices.gens] if fmt else None

    def chunk(items: list[P.ChatStreamChoice], usage: P.Usage | None = None) -> str:
        return _sse(P.ChatCompletionChunk(id=rid, created=created, model=state.model_name, choices=items, usage=usage))

    async def body() -> AsyncIterator[str]:
        for i in range(len(choices.gens)):
            yield chunk([P.ChatStreamChoice(index=i, delta=P.DeltaMessage(role="assistant", content=""))])
        async for i, out in choices.events():
            lp = P.ChatLogprobs(content=state.formatter.chat(out.logprobs or [])) if req.logprobs else None
            text, deltas = out.text, []
            if parsers is not None:  # tool calls are taken out of the text as they stream
                text, deltas = parsers[i].feed(out.text)
                if out.finished:
                    rest, more = parsers[i].finish()
                    text, deltas = text + rest, deltas + more
            reason = finish_reason(out.finish_reason, bool(parsers and parsers[i].calls)) if out.finished else None
            if text or deltas or out.finished or (lp and lp.content):
                delta = P.DeltaMessage(content=text or None,
                                       tool_calls=[P.DeltaToolCall.of(d) for d in deltas] or None)
                yield chunk([P.ChatStreamChoice(index=i, delta=delta, logprobs=lp, finish_reason=reason)])

    return _sse_stream(rid, choices, body(), (lambda: chunk([], usage=choices.usage())) if req.include_usage else None)


def _completion_stream(state: ServerState, req: P.CompletionRequest, rid: str,
                             choices: _Choices) -> AsyncIterator[str]:
    created = int(time.time())
    offsets = [P.TextOffsets() for _ in choices.gens]

    def chunk(items: list[P.CompletionChoice], usage: P.Usage | None = None) -> str:
        return _sse(P.CompletionResponse(id=rid, created=created, model=state.model_name, choices=items, usage=usage))

    async def body() -> AsyncIterator[str]:
        async for i, out in choices.events():
            lp = state.formatter.completion(out.logprobs or [], offsets[i]) if req.logprobs is not None else None
            if out.text or out.finished or (lp and lp.tokens):
                yield chunk([P.CompletionChoice(index=i, text=out.text, logprobs=lp,
                                                finish_reason=out.finish_reason if out.finished else None)])

    return _sse_stream(rid, choices, body(), (lambda: chunk([], usage=choices.usage())) if req.include_usage else None)


