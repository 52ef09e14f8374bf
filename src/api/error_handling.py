"""One handler, one shape: ``{"error": <stable code>, "detail": <message>}``.

Services raise subclasses of ``AppError`` (src/core/errors.py); request validation
errors, unknown routes, database faults and unexpected exceptions are turned into
the same shape, so a client never sees a stack trace or a second format.
"""

import logging
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from src.core.databases import DATABASES, constraint_violation, database_error_reason
from src.core.errors import AppError
from src.services.readiness import check_database

logger = logging.getLogger(__name__)


class ErrorResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"error": "workspace_not_found", "detail": "workspace 97915d76-… not found"}]}
    )

    error: str = Field(description="a stable code to branch on (docs/api.md lists them)")
    detail: str = Field(description="for people: what happened and what to do")


class FieldError(BaseModel):
    loc: list[str | int]
    message: str
    type: str


class ValidationErrorResponse(ErrorResponse):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "validation_error",
                    "detail": "name: String should have at most 100 characters",
                    "fields": [
                        {
                            "loc": ["body", "name"],
                            "message": "String should have at most 100 characters",
                            "type": "string_too_long",
                        }
                    ],
                }
            ]
        }
    )

    fields: list[FieldError]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": model, "description": description}
    for status, model, description in [
        (400, ErrorResponse, "Bad request"),
        (401, ErrorResponse, "Missing, invalid or expired credentials"),
        (
            403,
            ErrorResponse,
            "Refused although signed in: a role too low in the workspace, or a wrong current password",
        ),
        (404, ErrorResponse, "Not found, or not visible to the caller"),
        (408, ErrorResponse, "The body did not arrive within the server's timeout (request_timeout)"),
        (409, ErrorResponse, "Conflicts with the current state"),
        (
            412,
            ErrorResponse,
            "If-Match names another version: it changed since it was read (precondition_failed)",
        ),
        (413, ErrorResponse, "The body is larger than MAX_REQUEST_BODY_BYTES (payload_too_large)"),
        (415, ErrorResponse, "The body is not sent as application/json (unsupported_media_type)"),
        (422, ValidationErrorResponse, "Invalid input"),
        (429, ErrorResponse, "Too many failed attempts; retry after the seconds in the Retry-After header"),
        (500, ErrorResponse, "An unexpected failure (internal_error); the server log has it under the X-Request-ID"),
        (
            503,
            ErrorResponse,
            "A database the endpoint needs is unreachable (database_unavailable), or its schema is older"
            " (schema_behind) or newer (schema_ahead) than this version of the service; try again later",
        ),
    ]
}


# Where error_responses leaves each status's codes for src/api/contract.py, which turns them into an enum.
ERROR_CODES = "x-error-codes"


def error_responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the errors an endpoint raises itself, each status with the codes it answers;
    src/api/contract.py adds the errors implied by the operation's shape (a body, a token, a database)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        response = responses.setdefault(error.status_code, {**ERROR_RESPONSES[error.status_code], ERROR_CODES: []})
        response[ERROR_CODES].append(error.code)
    return responses


# PostgreSQL's deadlock_detected and serialization_failure.
_CONCURRENT_CHANGE = frozenset({"40P01", "40001"})

_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _field_error(error: Any) -> FieldError:
    # Never echo the rejected input: it may be a password.
    return FieldError(
        loc=list(error.get("loc", ())), message=str(error.get("msg", "")), type=str(error.get("type", ""))
    )


def _validation_detail(fields: list[FieldError]) -> str:
    first = fields[0]
    where = ".".join(str(part) for part in first.loc[1:]) or ".".join(str(part) for part in first.loc)
    more = f" (and {len(fields) - 1} more)" if len(fields) > 1 else ""
    return f"{where}: {first.message}{more}" if where else f"{first.message}{more}"


# A column or table the models use is missing: the schema is older (or newer) than this code.
_SQLITE_SCHEMA_MISMATCH = re.compile(r"no such (?:column|table)|table \S+ has no column named ")
_POSTGRES_SCHEMA_MISMATCH = {"42703", "42P01"}  # undefined_column, undefined_table


def is_schema_mismatch(error: DBAPIError) -> bool:
    if getattr(error.orig, "pgcode", None) in _POSTGRES_SCHEMA_MISMATCH:
        return True
    return isinstance(error, OperationalError) and _SQLITE_SCHEMA_MISMATCH.match(str(error.orig)) is not None


def _databases_of(error: DBAPIError) -> list[str]:
    """The database the failing statement ran on: the one whose tables it names (no statement spans two)."""
    words = set(re.findall(r"\w+", error.statement or ""))
    return [name for name, database in DATABASES.items() if words & set(database.metadata.tables)] or list(DATABASES)


async def _schema_mismatch(request: Request, error: DBAPIError) -> JSONResponse:
    """A table or column this code uses is missing: the schema is older than the code, or newer (a rolling deploy
    replaced the code's schema, or the code was rolled back without it)."""
    scripts = request.app.state.schema_scripts
    ahead = await run_in_threadpool(
        lambda: [name for name in _databases_of(error) if check_database(name, scripts).status == "unknown_revision"]
    )
    if ahead:
        logger.warning("database schema ahead of the code (%s): %s", ", ".join(ahead), database_error_reason(error))
        detail = "the database schema is newer than this version of the service; try again: a deploy is replacing it"
        return _json(503, ErrorResponse(error="schema_ahead", detail=detail))
    logger.warning("database schema behind the code: %s", database_error_reason(error))
    detail = (
        "the database schema is older than this version of the service; try again once the deploy's migrations have run"
    )
    return _json(503, ErrorResponse(error="schema_behind", detail=detail))


def _json_body_sent_as_other_type(request: Request, error: RequestValidationError) -> bool:
    """A JSON body under another declared type: FastAPI hands validation the raw bytes, which fail as a whole."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if not media_type or media_type == "application/json" or media_type.endswith("+json"):
        return False
    return any(tuple(item.get("loc", ())) == ("body",) for item in error.errors())


def _json(status_code: int, body: BaseModel, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body.model_dump(), status_code=status_code, headers=headers)


def _allowed_methods(request: Request) -> str:
    """Every method served at the request's path, HEAD wherever GET (src/api/head_requests.py): RFC 9110's Allow.

    Starlette's 405 names only the methods of the first route whose path matched.
    """
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


async def handle_error(request: Request, error: Exception) -> JSONResponse:
    """The one handler: every error the app answers with goes through here."""
    if isinstance(error, AppError):
        # A 422 has the shape of every 422, its fields empty: the error is the request's as a whole.
        shape = (
            ValidationErrorResponse(error=error.code, detail=error.detail, fields=[])
            if error.status_code == 422
            else ErrorResponse(error=error.code, detail=error.detail)
        )
        return _json(error.status_code, shape, error.response_headers())
    if isinstance(error, RequestValidationError) and any(item.get("type") == "json_invalid" for item in error.errors()):
        return _json(400, ErrorResponse(error="bad_request", detail="the request body is not valid JSON"))
    if isinstance(error, RequestValidationError) and _json_body_sent_as_other_type(request, error):
        detail = "send the body as application/json"
        return _json(415, ErrorResponse(error="unsupported_media_type", detail=detail))
    if isinstance(error, RequestValidationError):
        fields = [_field_error(item) for item in error.errors()] or [
            FieldError(loc=[], message="invalid request", type="value_error")
        ]
        body = ValidationErrorResponse(error="validation_error", detail=_validation_detail(fields), fields=fields)
        return _json(422, body)
    if isinstance(error, DBAPIError) and is_schema_mismatch(error):
        return await _schema_mismatch(request, error)
    if isinstance(error, IntegrityError):
        violated = constraint_violation(error)
        logger.warning("database refused a change: %s", violated)
        detail = f"the database refused the change: it violates {violated}"
        return _json(409, ErrorResponse(error="constraint_violation", detail=detail))
    if isinstance(error, OperationalError) and getattr(error.orig, "pgcode", None) in _CONCURRENT_CHANGE:
        # Two transactions got in each other's way and the database rolled one back: the state is fine, try again.
        logger.warning("concurrent change refused: %s", database_error_reason(error))
        detail = "another request changed the same data at the same time; nothing was changed, try again"
        return _json(409, ErrorResponse(error="concurrent_change", detail=detail))
    if isinstance(error, OperationalError | PoolTimeout):
        # The database is down, unreachable or saturated: the client may retry; the server log names the cause.
        reason = database_error_reason(error) if isinstance(error, OperationalError) else str(error)
        logger.warning("database unavailable: %s", reason)
        return _json(503, ErrorResponse(error="database_unavailable", detail="a database is unavailable; try again"))
    if isinstance(error, StarletteHTTPException):
        code = _HTTP_CODES.get(error.status_code, "http_error")
        headers = error.headers
        if error.status_code == 405 and (allowed := _allowed_methods(request)):
            headers = {**(headers or {}), "Allow": allowed}
        return _json(error.status_code, ErrorResponse(error=code, detail=str(error.detail)), headers)
    if isinstance(error, ProgrammingError):
        # Registered to answer schema_behind, it never reaches ServerErrorMiddleware: its traceback is logged here.
        logger.error("unexpected database error", exc_info=error)
    # Anything else: Starlette's ServerErrorMiddleware re-raises after this response, so the server logs the traceback.
    return _json(500, ErrorResponse(error="internal_error", detail="internal server error"))


def register_error_handler(app: FastAPI) -> None:
    for error_class in (
        AppError,
        RequestValidationError,
        StarletteHTTPException,
        OperationalError,
        ProgrammingError,
        IntegrityError,
        PoolTimeout,
        Exception,
    ):
        app.add_exception_handler(error_class, handle_error)
