"""The errors the service raises on purpose: one root, each with a stable code and the HTTP status it means.

Services raise them without knowing about the web framework; src/api/error_handling.py
turns them, and every other error, into the one response shape.
"""

from typing import ClassVar


class AppError(Exception):
    """Base of every error the app raises on purpose; ``code`` is stable, ``detail`` is for people."""

    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    headers: ClassVar[dict[str, str] | None] = None
    # True when the request's changes stand although it answers with this error (see src/core/sessions.py).
    keeps_changes: ClassVar[bool] = False

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def response_headers(self) -> dict[str, str] | None:
        return self.headers


class Unauthorized(AppError):
    status_code = 401
    code = "not_authenticated"
    # RFC 6750: a 401 for a bearer-protected resource names the scheme.
    headers: ClassVar[dict[str, str] | None] = {"WWW-Authenticate": "Bearer"}


class InvalidToken(Unauthorized):
    code = "invalid_token"


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    keeps_changes = True  # the failed attempt's audit event


class TooManyAttempts(AppError):
    status_code = 429
    code = "too_many_attempts"
    keeps_changes = True  # the throttled attempt's audit event

    def __init__(self, detail: str, *, retry_after_seconds: int) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds

    def response_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class Busy(AppError):
    """Too much password work is waiting already: refused at once, before any of it is done."""

    status_code = 503
    code = "busy"
    retry_after_seconds = 1

    def response_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class WrongPassword(AppError):
    """The current password, asked again before a change that needs it, is wrong: refused although signed in."""

    status_code = 403
    code = "wrong_password"
    keeps_changes = True  # the failed check, counted and recorded


class Forbidden(AppError):
    status_code = 403
    code = "insufficient_role"


class AdminOnly(Forbidden):
    """Only an admin of the service (``make create-admin``) may do this."""

    code = "admin_only"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class IdempotencyKeyInUse(Conflict):
    code = "idempotency_key_in_use"


class IdempotencyKeyReused(AppError):
    status_code = 422
    code = "idempotency_key_reused"


class PreconditionFailed(AppError):
    """If-Match named another version than the current one: someone changed the resource since it was read."""

    status_code = 412
    code = "precondition_failed"
