"""JSON error bodies shared by the HTTP services (execution, arena): one shape everywhere,
encoded from the error catalogue (`vlarena.errors`)."""

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vlarena.errors import InvalidRequestError, UnknownNameError, VLArenaError, from_wire

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    error: str  # the wire name (vlarena.errors)
    detail: str
    retry_after_s: float | None = None  # set when a retry may succeed

    @classmethod
    def of(cls, exc: BaseException) -> "ErrorBody":
        """The body of any exception: a domain error's own, else an opaque internal error."""
        if not isinstance(exc, VLArenaError):
            log.error("unexpected error", exc_info=exc)
            return cls(error=VLArenaError.wire.name, detail="see the server log")
        return cls(error=exc.wire.name, detail=str(exc), retry_after_s=exc.retry_after_s)

    def to_error(self, http_status: int | None = None) -> VLArenaError:
        """The domain error this body describes (as the peer that sent it raised it)."""
        return from_wire(self.error, self.detail, self.retry_after_s, http_status=http_status)


def error_response(exc: BaseException) -> JSONResponse:
    """The HTTP response of any exception, with Retry-After when a retry may succeed."""
    body = ErrorBody.of(exc)
    status = exc.wire.http_status if isinstance(exc, VLArenaError) else 500
    headers = {}
    if body.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(body.retry_after_s)))
    return JSONResponse(body.model_dump(exclude_none=True), status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Domain errors and anything unexpected become `error_response`s; validation and routing
    errors become 422 invalid_request / 404 not_found / 405 with the same JSON shape."""

    @app.exception_handler(VLArenaError)
    async def domain_error(_: Request, exc: VLArenaError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
            for e in exc.errors()
        )
        return error_response(InvalidRequestError(detail))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        name = {404: UnknownNameError.wire.name, 405: "method_not_allowed"}.get(
            exc.status_code, "bad_request"
        )
        return JSONResponse({"error": name, "detail": str(exc.detail)}, exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)


class BodyLimit:
    """ASGI middleware: request bodies over `max_bytes` get 413 before anything parses them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:  # the server holds the body to its declared length
            if not declared.isdigit() or int(declared) > self.max_bytes:
                await self._reject(send)
                return
            await self.app(scope, receive, send)
            return
        body, more = b"", True  # chunked: read it here, up to the limit, then replay it
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._reject(send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _reject(self, send: Send) -> None:
        detail = f"request bodies are limited to {self.max_bytes} bytes"
        response = JSONResponse({"error": "payload_too_large", "detail": detail}, 413)
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})
