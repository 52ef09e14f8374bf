"""Who is asking, from where: set once per request, read where events are recorded.

Behind a proxy, run uvicorn with ``--proxy-headers --forwarded-allow-ips=<proxy>``
so that the client address is the caller's, not the proxy's.
"""

import itertools
import re
import uuid
from contextvars import ContextVar
from dataclasses import asdict, dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()
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
        # The raw header list, read once: this runs on every request, /health included.
        given, user_agent = None, None
        for name, value in scope["headers"]:  # the first of each, as Starlette's Headers.get
            if name == _REQUEST_ID_KEY and given is None:
                given = value.decode("latin-1")
            elif name == b"user-agent" and user_agent is None:
                user_agent = value[:256].decode("latin-1")
        request_id = given if given and _VALID_REQUEST_ID.fullmatch(given) else new_request_id()
        client = scope.get("client")
        context = RequestContext(request_id, client[0] if client else None, user_agent)
        echoed = (_REQUEST_ID_KEY, request_id.encode("latin-1"))

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        token = _current.set(context)
        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            _current.reset(token)
