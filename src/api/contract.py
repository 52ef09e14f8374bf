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

from src.api.error_handling import ERROR_RESPONSES
from src.api.v1 import API_PREFIX

COMMITTED = Path(__file__).resolve().parents[2] / "openapi.json"

TAGS: list[dict[str, Any]] = [
    {"name": "users", "description": "Sign-up and the caller's own account."},
    {"name": "auth", "description": "Bearer tokens: the OAuth2 password form, as `/docs` uses it."},
    {"name": "workspaces", "description": "Workspaces the caller belongs to, with the caller's role in each."},
    {"name": "members", "description": "A workspace's members and their roles."},
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


# The 201 of every creating operation: where the new resource is read or changed from now on.
CREATED: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "Created",
        "headers": {
            "Location": {"description": "The new resource's path", "schema": {"type": "string"}},
            "Idempotent-Replayed": {
                "description": "`true` when this is the answer an earlier request with the same Idempotency-Key got",
                "schema": {"type": "string"},
            },
        },
    }
}


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


def implied_errors(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses an operation of this shape can answer whatever it does: a body can be malformed, too large
    or of another type, parameters invalid, credentials missing; an API operation meets a database that is down or a
    concurrent change; anything can fail unexpectedly."""
    statuses = {500}
    if "requestBody" in operation:
        statuses |= {400, 413, 415, 422}
    if operation.get("parameters"):
        statuses.add(422)
    if operation.get("security"):
        statuses.add(401)
    if path.startswith(API_PREFIX):
        statuses.add(503)
        if method != "get":
            statuses.add(409)
    return statuses


def list_every_status(app: FastAPI) -> None:
    """Make the app's document list each operation's implied error statuses beside those its route declares, added
    once, as FastAPI makes the document once and keeps it."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            add_implied_errors(generate())  # FastAPI keeps what it generates in app.openapi_schema
        return generate()

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's hook for a custom document


def add_implied_errors(openapi: dict[str, Any]) -> None:
    """Add each operation's implied error statuses to ``openapi``, in place."""
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status in sorted(implied_errors(path, method, operation) - {int(code) for code in responses}):
                model = ERROR_RESPONSES[status]["model"].__name__
                responses[str(status)] = {
                    "description": ERROR_RESPONSES[status]["description"],
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
                }
            operation["responses"] = dict(sorted(responses.items()))


def document(app: FastAPI) -> str:
    """The app's OpenAPI document as committed: indented, keys in the app's order, one newline at the end."""
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    from src.main import app

    COMMITTED.write_text(document(app))
    print(f"wrote {COMMITTED.name}", file=sys.stderr)
