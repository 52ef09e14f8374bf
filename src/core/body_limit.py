"""A request body over the limit is refused while it streams in, before it is held in memory."""

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from src.core.errors import handle_error


class BodySizeLimitMiddleware:
    """413 ``payload_too_large`` for a body over ``max_bytes``: at once when Content-Length says so, else as soon
    as the bytes received pass it (the route reading the body then answers it through the one handler).
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A GET or HEAD body is never read (uvicorn pauses the socket until it is): nothing to count.
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = await handle_error(Request(scope), self.too_large())
            await response(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self.too_large()
            return message

        await self.app(scope, receive_within_limit, send)

    def too_large(self) -> HTTPException:
        return HTTPException(
            413, f"the request body is over the limit of {self.max_bytes} bytes (MAX_REQUEST_BODY_BYTES)"
        )
