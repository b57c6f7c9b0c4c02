"""ASGI middleware: upload size limit and per-route request counting.

The multipart parser spools the whole body before the endpoint runs, so the size limit is
enforced while the body is received: by Content-Length when given, else by counting the
chunks of a chunked transfer. Either way the client gets 413 and no more is read.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plugin.metrics import Registry

MULTIPART_OVERHEAD = 64 * 1024  # headers, boundaries and small form fields


class RequestGuard:
    def __init__(self, app: ASGIApp, limited_path: str, max_body: int, registry: Registry) -> None:
        self.app = app
        self.registry = registry
        self.limited_path = limited_path
        self.max_body = max_body + MULTIPART_OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def send_counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            if scope["path"] == self.limited_path:
                await self._limited(scope, receive, send_counting)
            else:
                await self.app(scope, receive, send_counting)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.registry.inc_http(template, scope.get("method", ""), status["code"])

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = _content_length(scope)
        if length is not None and length > self.max_body:
            await _send_413(send, self.max_body - MULTIPART_OVERHEAD)
            return
        seen = 0

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise HTTPException(413, "upload too large")
            return message

        await self.app(scope, receive_limited, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Send, limit: int) -> None:
    body = b'{"detail":"upload larger than ' + str(limit).encode() + b' bytes","code":"too_large"}'
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
