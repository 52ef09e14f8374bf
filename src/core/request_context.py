"""Who is asking, from where: set once per request, read where events are recorded; one log line per request.

Behind a proxy, set FORWARDED_ALLOW_IPS to the proxy's address (``make serve``)
so that the client address is the caller's, not the proxy's.
"""

import ipaddress
import itertools
import logging
import re
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from src.core.metrics import REQUESTS_IN_PROGRESS, observe_request

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Ids need to be unique, not secret: a random prefix per process and a counter cost no system call per request.
_ID_PREFIX = uuid.uuid4().hex[:16]
_id_counter = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):016x}"


logger = logging.getLogger("src.requests")
# Orchestrators call the probes every few seconds: a line for each would drown the rest, and costs a probe
# a third of its time. Their failures are logged, and every call is counted (src/core/metrics.py).
QUIET_ROUTES = frozenset({"/health", "/ready"})


@dataclass
class RequestContext:
    request_id: str
    ip: str | None
    user_agent: str | None
    # Set once the bearer token is checked (src/api/dependencies.py), for the request's log line.
    user_id: uuid.UUID | None = None

    def as_dict(self) -> dict[str, str | None]:
        """What an audit event keeps of the request."""
        return {"request_id": self.request_id, "ip": self.ip, "user_agent": self.user_agent}


_current: ContextVar[RequestContext | None] = ContextVar("request_context", default=None)


def client_address(host: str) -> str:
    """The client's address in one form: an IPv4 client of a dual-stack server (``::ffff:203.0.113.7``) as IPv4."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an address (a test client's name, a Unix socket)
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address)


def current_request_context() -> RequestContext | None:
    return _current.get()


class RequestContextMiddleware:
    """Keeps the caller's request id (or makes one), address and user agent for the request, echoes the id,
    and logs one line when the response has gone: method, route template, status, duration and who asked.
    """

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
        context = RequestContext(request_id, client_address(client[0]) if client else None, user_agent)
        echoed = (_REQUEST_ID_KEY, request_id.encode("latin-1"))
        status = 500  # what the client gets when the app fails before it answers

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        token = _current.set(context)
        started = time.perf_counter()
        REQUESTS_IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            _current.reset(token)
            REQUESTS_IN_PROGRESS.dec()
            record_request(scope, context, status, time.perf_counter() - started)


def route_template(scope: Scope) -> str | None:
    """The matched route as declared, e.g. /api/v1/workspaces/{workspace_id}; None when no route matched.

    Every route is the app's own (src/main.py), so its path is the whole template.
    """
    template: str | None = getattr(scope.get("route"), "path", None)
    return template


def record_request(scope: Scope, context: RequestContext, status: int, seconds: float) -> None:
    """The request's metrics and log line; a probe that answered well is counted, not logged."""
    route = route_template(scope)
    observe_request(scope["method"], route, status, seconds)
    if route in QUIET_ROUTES and status < 400:
        return
    fields = {
        "request_id": context.request_id,
        "method": scope["method"],
        # The template (/api/v1/workspaces/{workspace_id}), not the path: ids stay out of the counts.
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 1),
        "user_id": str(context.user_id) if context.user_id else None,
        "client": context.ip,
    }
    logger.info("%s %s %d", scope["method"], route or "(no route)", status, extra={"fields": fields})
