"""Errors in OpenAI's JSON form, and request bodies parsed so that nothing a client sends is a 500."""


from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ondol.engine import async_engine as _async_engine
from ondol.engine.async_engine import QueueFullError
from ondol.errors import OndolError
from ondol.server import protocol as P

log = logging.getLogger("ondol.server")

MAX_BODY_BYTES = 32 << 20
# No request ondol takes nests deeper than a few levels (a JSON schema in response_format, the
# deepest, rarely passes 10); deeper bodies are refused before a validator or encoder recurses.
MAX_JSON_DEPTH = 64


# --- errors -----------------------------------------------------------------------------------------

class APIError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error", *, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code, self.headers = status, message, type, param, code, headers


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


def error_response(status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
           code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body = P.ErrorResponse(error=P.ErrorInfo(message=message, type=type, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


_STATUS_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
                 405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
                 503: "service_unavailable"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, e: APIError) -> JSONResponse:
        return error_response(e.status, e.message, e.type, e.param, e.code, e.headers)

    @app.exception_handler(QueueFullError)
    async def queue_full(_: Request, e: QueueFullError) -> JSONResponse:
        retry = str(max(1, round(float(getattr(e, "retry_after", 1) or 1))))
        return error_response(429, str(e) or "Too many requests are waiting; retry later.", "rate_limit_error",
                      code="server_busy", headers={"Retry-After": retry})

    stopped = getattr(_async_engine, "EngineStoppedError", None)
    if stopped is not None:
        @app.exception_handler(stopped)
        async def engine_stopped(_: Request, e: Exception) -> JSONResponse:
            return error_response(503, str(e) or "The server is shutting down.", "service_unavailable", code="shutting_down")

    @app.exception_handler(OndolError)
    async def ondol_error(_: Request, e: OndolError) -> JSONResponse:
        # Every OndolError is a user-facing problem (InvalidRequestError, ChatTemplateError, ...).
        return error_response(400, str(e))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        return error_response(400, _describe(errors), param=_loc(errors[0]) if errors else None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return error_response(e.status_code, str(e.detail), _STATUS_TYPES.get(e.status_code, "invalid_request_error"),
                      headers=getattr(e, "headers", None))

    @app.exception_handler(ClientGone)
    async def client_gone(_: Request, e: ClientGone) -> Response:
        return Response(status_code=499)  # nobody reads it; nginx's "client closed request"

    @app.exception_handler(Exception)
    async def bug(request: Request, e: Exception) -> JSONResponse:
        log.exception("Internal error while serving %s %s", request.method, request.url.path)
        return error_response(500, "Internal server error: this is a bug in ondol.", "server_error")


_UNION_TAG = re.compile(r"str|int|float|bool|none|dict|list|.*[\[(].*")


def _loc(err: dict) -> str:
    """The field a validation error is about, as a dotted path ("messages.0.role"), without the
    union-member tags pydantic adds ("stop.list[str]" is "stop")."""
    return ".".join(str(x) for x in err.get("loc", ()) if x != "body" and not (
        isinstance(x, str) and _UNION_TAG.fullmatch(x)))


def _describe(errors: list[dict]) -> str:
    parts = []
    for err in errors[:3]:
        loc = _loc(err)
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "Invalid request: " + "; ".join(parts) + more + "."


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _too_deep(data: Any) -> bool:
    level: list[Any] = [data]
    for _ in range(MAX_JSON_DEPTH):
        level = [v for x in level if isinstance(x, (dict, list)) for v in (x.values() if isinstance(x, dict) else x)]
        if not level:
            return False
    return any(isinstance(x, (dict, list)) for x in level)


async def parse_body(request: Request, model: type[BaseModel]) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise APIError(413, f"The request body is larger than {MAX_BODY_BYTES >> 20} MiB.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise APIError(413, f"The request body is larger than {MAX_BODY_BYTES >> 20} MiB.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise APIError(400, f"The request body is not valid UTF-8 (byte {e.start}).") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise APIError(400, f"The request body is not valid JSON: {e}.") from None
    if _too_deep(data):
        raise APIError(400, f"The request body is nested more than {MAX_JSON_DEPTH} levels deep.")
    if _SURROGATE_ESCAPE.search(text):
        try:  # a lone surrogate (a \ud800 escape with no pair) is no character: nothing can encode it
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise APIError(400, "The request body holds a lone UTF-16 surrogate escape, which is not a character.") \
                from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        raise APIError(400, _describe(errors), param=_loc(errors[0]) or None) from None


