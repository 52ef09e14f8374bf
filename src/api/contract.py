"""What the OpenAPI document names for clients: operation ids, tag descriptions, and the committed copy.

A generator names each method and model after the operation id: ``tag-function`` (``users-sign_up``, the full-stack
FastAPI template's scheme) becomes ``api.users.users_sign_up`` in a client openapi-python-client generates.
``openapi.json`` at the repository's root is the document as the app serves it, checked by
tests/api/test_contract.py, so that a change to the contract shows in review; ``make openapi`` writes it again.
"""

import json
import sys
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from src.api.allowed_hosts import ANY_HOST_PATHS, InvalidHost
from src.api.error_handling import ERROR_CODES, ERROR_RESPONSES, ErrorResponse, ValidationErrorResponse
from src.api.v1 import API_PREFIX
from src.core.errors import (
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InvalidToken,
    PreconditionFailed,
    Unauthorized,
)

COMMITTED = Path(__file__).resolve().parents[2] / "openapi.json"

TAGS: list[dict[str, Any]] = [
    {"name": "users", "description": "Sign-up and the caller's own account."},
    {"name": "auth", "description": "Bearer tokens: the OAuth2 password form, as `/docs` uses it."},
    {"name": "workspaces", "description": "Workspaces the caller belongs to, with the caller's role in each."},
    {"name": "members", "description": "A workspace's members and their roles."},
    {"name": "invitations", "description": "Invitations to a workspace: sent by its admins, answered by the invitee."},
    {"name": "keys", "description": "A workspace's API keys for programs, sent as bearer tokens."},
    {"name": "audit", "description": "Audit trails read from the audit database, their export and activity counts."},
    {"name": "health", "description": "Liveness and readiness for load balancers and orchestrators."},
]


def operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def tagged_router(tag: str, prefix: str = "") -> APIRouter:
    """A router whose operations are named ``tag-function``: set on the router, as its routes name their body
    models when they are made. Under API_PREFIX, its operations refuse query parameters the document does not list."""
    strict = [Depends(refuse_undeclared_query_parameters)] if prefix.startswith(API_PREFIX) else []
    return APIRouter(prefix=prefix, tags=[tag], generate_unique_id_function=operation_id, dependencies=strict)


async def refuse_undeclared_query_parameters(request: Request) -> None:
    """422 for a query parameter the operation does not take: a misspelt filter (``action_prefx=``) would otherwise
    be ignored, and the answer would look like no event matched."""
    route = request.scope["route"]
    unknown = sorted(set(request.query_params) - declared_query_parameters(request.app)[route.path, request.method])
    if unknown:
        message = "this operation takes no such query parameter (the OpenAPI document lists those it takes)"
        raise RequestValidationError(
            [{"type": "unknown_query_parameter", "loc": ("query", name), "msg": message} for name in unknown]
        )


def declared_query_parameters(app: FastAPI) -> dict[tuple[str, str], frozenset[str]]:
    """Each operation's query parameters, as the document lists them, by path and method; read once."""
    declared: dict[tuple[str, str], frozenset[str]] | None = getattr(app.state, "declared_query_parameters", None)
    if declared is None:
        declared = {
            (path, method.upper()): frozenset(p["name"] for p in operation.get("parameters", []) if p["in"] == "query")
            for path, operations in app.openapi()["paths"].items()
            for method, operation in operations.items()
        }
        app.state.declared_query_parameters = declared
    return declared


def created_response(*, replayable: bool, **links: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """The 201 of a creating operation: where the new resource is read or changed from now on, whether it may be
    an earlier request's answer again (``replayable``: the operation takes an Idempotency-Key), and OpenAPI links
    (``name={"operationId": ..., "parameters": {...}}``) to the operations that take it next."""
    headers = {"Location": {"description": "The new resource's path", "schema": {"type": "string"}}}
    if replayable:
        headers["Idempotent-Replayed"] = {
            "description": "`true` when this is the answer an earlier request with the same Idempotency-Key got",
            "schema": {"type": "string"},
        }
    return {201: {"description": "Created", "headers": headers} | ({"links": links} if links else {})}


def link(operation: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link to ``operation``, its parameters taken from the request or the response
    (``"$response.body#/id"``)."""
    return {"operationId": operation, "parameters": parameters}


# The 200 of an operation that answers one resource which If-Match can name.
VERSIONED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Successful Response",
        "headers": {
            "ETag": {"description": "This version of the resource, for If-Match", "schema": {"type": "string"}},
        },
    }
}


def location(request: Request, operation: str, **path_params: str) -> str:
    """The path of the route named ``operation`` (its function's name) with these parameters, under the app's root
    path: relative, so that it holds behind a proxy that changes the scheme or host."""
    root: str = request.scope.get("root_path", "")
    return root + str(request.app.url_path_for(operation, **path_params))


def implied_errors(path: str, method: str, operation: dict[str, Any]) -> dict[int, set[str]]:
    """The error codes, by status, an operation of this shape can answer whatever it does: a body can be malformed,
    too large, late or of another type, parameters invalid, credentials missing, a version or an idempotency key
    in another state; an API operation meets a database that is down or a concurrent change; a host not allowed;
    anything can fail unexpectedly."""
    errors: dict[int, set[str]] = {500: {"internal_error"}}

    def add(status: int, *codes: str) -> None:
        errors.setdefault(status, set()).update(codes)

    if path not in ANY_HOST_PATHS:
        add(400, InvalidHost.code)
    if "requestBody" in operation:
        add(400, "bad_request")
        add(408, "request_timeout")
        add(413, "payload_too_large")
        add(415, "unsupported_media_type")
        add(422, "validation_error")
    parameters = {parameter["name"] for parameter in operation.get("parameters", [])}
    if parameters:
        add(422, "validation_error")
    if "If-Match" in parameters:
        add(412, PreconditionFailed.code)
    if "Idempotency-Key" in parameters:
        add(409, IdempotencyKeyInUse.code)
        add(422, IdempotencyKeyReused.code)
    if operation.get("security"):
        add(401, Unauthorized.code, InvalidToken.code)
    if path.startswith(API_PREFIX):
        add(422, "validation_error")  # a query parameter the operation does not take, at least
        add(503, "database_unavailable", "schema_behind", "schema_ahead")
        if method != "get":
            add(409, "constraint_violation", "concurrent_change")
    return errors


def list_every_status(app: FastAPI) -> None:
    """Make the app's document list each operation's errors, implied and declared, with their codes, and its
    parameters as a client sends them; done once, as FastAPI makes the document once and keeps it."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()  # FastAPI keeps it in app.openapi_schema
            for path, operations in document["paths"].items():
                for method, operation in operations.items():
                    add_implied_errors(path, method, operation)
                    drop_null_from_parameters(operation)
            use_error_models(document["components"]["schemas"])
        return generate()

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's hook for a custom document


def add_implied_errors(path: str, method: str, operation: dict[str, Any]) -> None:
    """Give each error status of ``operation`` its codes, the declared and the implied, as an enum, in place."""
    responses = operation["responses"]
    declared = {int(status): response.pop(ERROR_CODES, []) for status, response in responses.items()}
    errors = implied_errors(path, method, operation)
    for status, codes in declared.items():
        if codes:
            errors.setdefault(status, set()).update(codes)
    for status, codes in errors.items():
        model = ERROR_RESPONSES[status]["model"].__name__
        response = responses.setdefault(str(status), {})
        response["description"] = ERROR_RESPONSES[status]["description"]
        response["content"] = {
            "application/json": {
                "schema": {
                    "allOf": [
                        {"$ref": f"#/components/schemas/{model}"},
                        {"properties": {"error": {"type": "string", "enum": sorted(codes)}}},
                    ]
                }
            }
        }
    operation["responses"] = dict(sorted(responses.items()))


def use_error_models(schemas: dict[str, Any]) -> None:
    """The error models every error response refers to, in place of FastAPI's own 422 models, which none does."""
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for model in (ErrorResponse, ValidationErrorResponse):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas |= schema.pop("$defs", {}) | {model.__name__: schema}


def drop_null_from_parameters(operation: dict[str, Any]) -> None:
    """A parameter is sent or left out, never sent as null: FastAPI documents an optional one as string-or-null,
    which a client or fuzzer sends as an empty value or the text "null"."""
    for parameter in operation.get("parameters", []):
        schema = parameter["schema"]
        kinds = schema.get("anyOf", [])
        if {"type": "null"} in kinds and len(kinds) == 2:
            schema |= next(kind for kind in schema.pop("anyOf") if kind != {"type": "null"})


def document(app: FastAPI) -> str:
    """The app's OpenAPI document as committed: indented, keys in the app's order, one newline at the end."""
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    from src.main import app

    COMMITTED.write_text(document(app))
    print(f"wrote {COMMITTED.name}", file=sys.stderr)
