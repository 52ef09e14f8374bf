"""Who is asking, from where: set once per request, read where events are recorded.

Behind a proxy, run uvicorn with ``--proxy-headers --forwarded-allow-ips=<proxy>``
so that the client address is the caller's, not the proxy's.
"""

import itertools
import re
import uuid
from contextvars import ContextVar
from dataclasses import asdict, dataclass

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Ids need to be unique, not secret: a random prefix per process and a counter cost no system call per request.
_ID_PREFIX = uuid.uuid4().hex[:16]
_id_counter = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):016x}"


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    ip: str | None
    user_agent: str | None

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


_current: ContextVar[RequestContext | None] = ContextVar("request_context", default=None)


def current_request_context() -> RequestContext | None:
    return _current.get()


class RequestContextMiddleware:
    """Keeps the caller's request id (or makes one), address and user agent for the request, and echoes the id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        given = headers.get(REQUEST_ID_HEADER, "")
        request_id = given if _VALID_REQUEST_ID.fullmatch(given) else new_request_id()
        client = scope.get("client")
        user_agent = headers.get("user-agent")
        context = RequestContext(request_id, client[0] if client else None, user_agent[:256] if user_agent else None)

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        token = _current.set(context)
        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            _current.reset(token)
