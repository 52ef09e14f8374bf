"""uvicorn's httptools protocol with the limits a server facing the internet needs and uvicorn lacks.

uvicorn bounds neither the size of request headers nor the time a client may take
to send them: a client sending a header a byte at a time holds its connection,
and the memory of the header so far, for ever. This protocol answers such requests
itself, in the one error shape, and closes the connection. A connection whose
request was answered before its body arrived whole is closed too: a client that
never sends the rest would hold it for ever. ``make serve`` runs uvicorn with it
(``--http src.core.http_protocol:LimitedHttpToolsProtocol``). A slow body is
timed where the app reads it (src/api/body_limit.py).
"""

import asyncio
import json
import logging
import resource
import time

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from src.core.config import get_settings
from src.core.databases import DATABASES

logger = logging.getLogger(__name__)
# Descriptors a worker keeps for other things than client connections: pooled database connections, log and
# metrics files, the listening socket.
RESERVED_DESCRIPTORS = 128


def connection_limit() -> int:
    """The client connections a worker holds at most: MAX_CONNECTIONS_PER_WORKER, and fewer when the descriptor
    limit leaves no room for them beside what the worker needs besides."""
    descriptors, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    settings = get_settings()
    pooled = len(DATABASES) * (settings.db_pool_size + settings.db_max_overflow)
    limit = settings.max_connections_per_worker
    if descriptors != resource.RLIM_INFINITY:
        limit = min(limit, descriptors - RESERVED_DESCRIPTORS - pooled)
    return max(1, limit)


_last_warning = 0.0


def _log_limit_reached() -> None:
    global _last_warning
    if time.monotonic() - _last_warning >= 1:  # once a second at most: a flood must not flood the log too
        _last_warning = time.monotonic()
        logger.warning(
            "connection limit reached: %d connections held (MAX_CONNECTIONS_PER_WORKER and the descriptor limit);"
            " new connections are closed",
            connection_limit(),
        )


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the refusal is already chosen."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    _refusal: tuple[int, str, str] | None = None
    _deadline: asyncio.TimerHandle | None = None
    # From a request's first byte (or the connection's opening) to the end of its headers.
    _awaiting_headers = True
    _message_began = False
    _header_bytes = 0  # the request line and headers, as the parser hands them over
    _unparsed_bytes = 0  # what the parser holds of an unfinished line, counted as it arrives
    _header_count = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > connection_limit():
            # Past it the worker would run out of descriptors, and fail everything that opens one (a database
            # connection included): a new connection is closed at once instead.
            _log_limit_reached()
            transport.close()
            return
        # A connection that never sends a request is held no longer than one whose headers are slow.
        self._start_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._message_began = False
        super().data_received(data)
        # The parser keeps an unfinished header line without calling back. The chunk a request begins in
        # may end the one before, so counting starts with the next: memory stays within one chunk of the limit.
        if self._awaiting_headers and not self._message_began and not self.transport.is_closing():
            self._unparsed_bytes += len(data)
            if self._unparsed_bytes > get_settings().max_request_header_bytes:
                self._send_error(431, "headers_too_large", self._too_many_bytes())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = self._message_began = True
        self._header_bytes = self._unparsed_bytes = self._header_count = 0
        self._start_header_deadline()

    def on_url(self, url: bytes) -> None:
        self._header_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        self._header_count += 1
        settings = get_settings()
        if self._header_bytes > settings.max_request_header_bytes:
            self._refuse(self._too_many_bytes())
        if self._header_count > settings.max_request_headers:
            self._refuse(f"the request has over {settings.max_request_headers} headers (MAX_REQUEST_HEADERS)")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._cancel_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        if self.cycle is not None and self.cycle.more_body and not self.transport.is_closing():
            # Answered before its body arrived whole (the app had no use for it): the rest would have to be read
            # before the next request could be, and a client may never send it. The connection ends here.
            self.transport.close()
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error with this; a refusal chosen in a callback is answered instead.
        self._send_error(*(self._refusal or (400, "bad_request", "the request is not valid HTTP")))

    def _too_many_bytes(self) -> str:
        limit = get_settings().max_request_header_bytes
        return f"the request line and headers are over {limit} bytes (MAX_REQUEST_HEADER_BYTES)"

    def _refuse(self, detail: str) -> None:
        """From a parser callback: stop parsing; uvicorn then calls send_400_response."""
        self._refusal = (431, "headers_too_large", detail)
        raise _Refused

    def _start_header_deadline(self) -> None:
        self._cancel_deadline()
        seconds = get_settings().request_header_timeout_seconds
        self._deadline = self.loop.call_later(seconds, self._header_deadline_passed)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _header_deadline_passed(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or not self._awaiting_headers:
            return
        if (self.cycle is not None and not self.cycle.response_complete) or self.flow.read_paused:
            # A pipelined request waits, unread, behind the one being answered: its time starts after.
            self._start_header_deadline()
            return
        seconds = get_settings().request_header_timeout_seconds
        self._send_error(408, "request_timeout", f"the request headers did not arrive within {seconds:g}s")

    def _send_error(self, status: int, code: str, detail: str) -> None:
        body = json.dumps({"error": code, "detail": detail}, separators=(",", ":")).encode()
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
