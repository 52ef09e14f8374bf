"""Liveness and readiness probes, outside the versioned API."""

from typing import Literal

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel

from src.services.readiness import DatabaseReadiness, check_databases

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    databases: dict[str, DatabaseReadiness]


@router.get("/health")
def health() -> Health:
    """The process is alive; says nothing about the databases."""
    return Health(status="ok")


@router.get("/ready", responses={503: {"model": Readiness}})
def ready(request: Request, response: Response) -> Readiness:
    """Every database is reachable and at the migrations' head; 503 otherwise."""
    databases = check_databases(request.app.state.schema_head)
    is_ready = all(database.status == "ok" for database in databases.values())
    if not is_ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(status="ready" if is_ready else "not_ready", databases=databases)
