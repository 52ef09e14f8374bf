"""uvicorn's httptools protocol with limits a server facing the internet needs and uvicorn lacks.

uvicorn bounds neither the size of request headers nor the time a client may take
to send them or its body: a client sending a header a byte at a time holds its
connection for ever. This protocol answers such requests itself, in the one error
shape, and closes the connection. ``make serve`` runs uvicorn with it
(``--http src.core.http_protocol:LimitedHttpToolsProtocol``).
"""

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from src.core.config import settings


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the refusal is already chosen."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    _refusal: tuple[int, str, str] | None = None
    _deadline: asyncio.TimerHandle | None = None
    _header_bytes = 0
    _header_count = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never sends a request is held no longer than one whose headers are slow.
        self._start_deadline(settings.request_header_timeout_seconds, "the request headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = self._header_count = 0
        self._start_deadline(settings.request_header_timeout_seconds, "the request headers")

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url), headers=0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value), headers=1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._start_deadline(settings.request_body_timeout_seconds, "the request body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_deadline()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error with this; a refusal chosen in a callback is answered instead.
        if self._refusal is None:
            self._send_error(400, "bad_request", "the request is not valid HTTP")
        else:
            self._send_error(*self._refusal)

    def _count_header_bytes(self, size: int, *, headers: int) -> None:
        self._header_bytes += size
        self._header_count += headers
        if self._header_bytes > settings.max_request_header_bytes:
            limit = f"{settings.max_request_header_bytes} bytes (MAX_REQUEST_HEADER_BYTES)"
            self._refuse(f"the request line and headers are over {limit}")
        if self._header_count > settings.max_request_headers:
            self._refuse(f"the request has over {settings.max_request_headers} headers (MAX_REQUEST_HEADERS)")

    def _refuse(self, detail: str) -> None:
        self._refusal = (431, "headers_too_large", detail)
        raise _Refused

    def _start_deadline(self, seconds: float, part: str) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(seconds, self._deadline_passed, seconds, part)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self, seconds: float, part: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete:
            self.transport.close()  # the app is answering already: only the connection is left to end
            return
        self._send_error(408, "request_timeout", f"{part} did not arrive within {seconds:g}s")

    def _send_error(self, status: int, code: str, detail: str) -> None:
        body = json.dumps({"error": code, "detail": detail}, separators=(",", ":")).encode()
        if self.cycle is not None:
            self.cycle.disconnected = True  # the app, if it still reads the body, sees the client gone
            self.cycle.message_event.set()
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    b"content-type: application/json\r\n",
                    b"content-length: %d\r\n" % len(body),
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self.transport.close()
