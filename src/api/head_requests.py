"""``HEAD`` answers what ``GET`` would, without the body (RFC 9110 9.3.2), on every GET route.

The request runs as a GET and its body is dropped, so no route declares HEAD and
the OpenAPI schema shows no HEAD operations.
"""

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGetMiddleware:
    """Runs a HEAD request as GET: same status and headers (Content-Length included), an empty body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] in ("http.response.body", "http.response.pathsend"):
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        # A copy: the server still sees HEAD in its own scope, and sends no body for a Content-Length it announced.
        as_get = {**scope, "method": "GET"}
        try:
            await self.app(as_get, receive, send_without_body)
        finally:
            # The route the router matched, for the request's log line and metrics (src/core/request_context.py).
            if "route" in as_get:
                scope["route"] = as_get["route"]
