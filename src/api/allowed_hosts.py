"""Requests are answered only for the host names the service is reached by (ALLOWED_HOSTS).

A forged Host header would otherwise reach every URL the app builds from the
request, such as the Location of a redirect. The probes and the metrics are
answered whatever the Host: orchestrators and scrapers call each instance by its
own address, and these build no URL.
"""

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from src.api.error_handling import handle_error
from src.core.errors import AppError

ANY_HOST_PATHS = frozenset({"/health", "/ready", "/metrics"})


class InvalidHost(AppError):
    code = "invalid_host"


def host_name(host_header: str) -> str:
    """The name in a Host header, without its port; an IPv6 address keeps its brackets."""
    name, colon, port = host_header.rpartition(":")
    if colon and port.isdigit() and not name.endswith(":"):
        return name.lower()
    return host_header.lower()


class AllowedHostsMiddleware:
    """400 ``invalid_host`` unless the Host header names an allowed host; ``*.example.com`` allows its subdomains."""

    def __init__(self, app: ASGIApp, *, allowed: list[str]) -> None:
        self.app = app
        self.names = frozenset(host.lower() for host in allowed if not host.startswith("*."))
        self.suffixes = tuple(host[1:].lower() for host in allowed if host.startswith("*."))

    def allows(self, host_header: str) -> bool:
        name = host_name(host_header)
        return name in self.names or (bool(self.suffixes) and name.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in ANY_HOST_PATHS:
            await self.app(scope, receive, send)
            return
        host = next((value for name, value in scope["headers"] if name == b"host"), b"").decode("latin-1")
        if self.allows(host):
            await self.app(scope, receive, send)
            return
        # The host given is not repeated: the answer must not carry what an attacker wrote.
        refusal = InvalidHost("the Host header does not name a host this service answers to (ALLOWED_HOSTS)")
        response = await handle_error(Request(scope), refusal)
        await response(scope, receive, send)
