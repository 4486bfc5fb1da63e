"""What the HTTP services (execution, arena) share: JSON error bodies, one shape everywhere,
encoded from the error catalogue (`vlarena.errors`); and the middleware in front of both apps
(request size limit, security headers, forwarded headers from trusted proxies only)."""

import ipaddress
import logging
import math
import unicodedata
from collections.abc import Mapping
from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

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


def unstorable(text: str) -> bool:
    """Whether `text` holds control characters other than tab and newline, or lone surrogates:
    no client text needs them, and PostgreSQL cannot store NUL or a surrogate."""
    return any(unicodedata.category(c) in ("Cc", "Cs") and c not in "\t\n" for c in text)


def error_response(exc: BaseException) -> JSONResponse:
    """The HTTP response of any exception, with Retry-After when a retry may succeed."""
    body = ErrorBody.of(exc)
    status = exc.wire.http_status if isinstance(exc, VLArenaError) else 500
    return body_response(body, status)


def body_response(
    body: ErrorBody, status: int, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An error body as a response, with Retry-After when a retry may succeed."""
    headers = dict(headers or {})
    if body.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(body.retry_after_s)))
    return JSONResponse(body.model_dump(exclude_none=True), status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Domain errors and anything unexpected become `error_response`s; validation and routing
    errors become 422 invalid_request / 404 not_found / 405 with the same JSON shape (and the
    HTTP error's own headers)."""

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
        if exc.status_code == 400:  # a body that is not even text: invalid, like broken JSON
            return error_response(InvalidRequestError(str(exc.detail)))
        name = {404: UnknownNameError.wire.name, 405: "method_not_allowed"}.get(
            exc.status_code, "bad_request"
        )
        body = ErrorBody(error=name, detail=str(exc.detail))
        return body_response(body, exc.status_code, exc.headers)  # with its Allow, say

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        response = error_response(exc)  # answered outside every middleware (Starlette's
        response.headers.update(SECURITY_HEADERS)  # ServerErrorMiddleware): add them here
        return response


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


def _trusted_proxies(value: str) -> str:
    """A comma list of IPs and CIDRs, checked and normalized ("" for none)."""
    try:
        networks = [
            ipaddress.ip_network(p, strict=False) for p in value.replace(" ", "").split(",") if p
        ]
    except ValueError as exc:
        raise ValueError(f"trusted proxies must be IPs or CIDRs: {exc}") from None
    return ",".join(map(str, networks))


# Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (a comma list of IPs and CIDRs;
# empty: nobody's, the TCP peer is the client).
TrustedProxies = Annotated[str, AfterValidator(_trusted_proxies)]

# What the web UI loads: its own scripts, styles and scene files, and MuJoCo compiled from its
# WebAssembly ('wasm-unsafe-eval'), whose embind glue builds its call wrappers with Function()
# ('unsafe-eval'); no inline scripts or styles, frames, plugins or foreign origins.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval' 'unsafe-eval'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeaders:
    """ASGI middleware: every response carries `SECURITY_HEADERS`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_middleware(app: FastAPI, max_body_bytes: int, trusted_proxies: str) -> None:
    """Outermost first: forwarded headers (from `trusted_proxies` only), security headers on
    every answer, then the body size limit. Run under uvicorn with proxy_headers=False, so
    only this decides whom to trust."""
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(SecurityHeaders)
    if trusted_proxies:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=trusted_proxies.split(","))
