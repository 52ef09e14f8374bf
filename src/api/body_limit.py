"""A request body over the size limit, or slower than the time limit, is refused while it streams in."""

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from src.api.error_handling import handle_error


class BodyLimitMiddleware:
    """413 ``payload_too_large`` for a body over ``max_bytes``: at once when Content-Length says so, else as soon
    as the bytes received pass it. 408 ``request_timeout`` when the body has not all arrived ``timeout_seconds``
    after the app began to read it. The route reading the body answers either through the one handler.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_seconds: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds

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
        deadline: float | None = None

        async def receive_within_limits() -> Message:
            nonlocal received, deadline
            # Timed while the app waits for the body, not while it works: a slow client, not a slow app.
            deadline = deadline or anyio.current_time() + self.timeout_seconds
            with anyio.move_on_after(deadline - anyio.current_time()):
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_bytes:
                        raise self.too_large()
                return message
            raise HTTPException(
                408,
                f"the request body did not arrive within {self.timeout_seconds:g}s (REQUEST_BODY_TIMEOUT_SECONDS)",
                headers={"Connection": "close"},
            )

        await self.app(scope, receive_within_limits, send)

    def too_large(self) -> HTTPException:
        return HTTPException(
            413, f"the request body is over the limit of {self.max_bytes} bytes (MAX_REQUEST_BODY_BYTES)"
        )
