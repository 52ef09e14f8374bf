"""Liveness and readiness probes, outside the versioned API."""

from typing import Literal

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel

from src.services.readiness import Readiness, check_readiness

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]


@router.get("/health")
async def health() -> Health:
    """The process is alive; says nothing about the databases."""
    return Health(status="ok")


@router.get("/ready", responses={503: {"model": Readiness}})
def ready(request: Request, response: Response) -> Readiness:
    """200 when the service can serve (ready, or degraded without audit); 503 otherwise."""
    readiness = check_readiness(request.app.state.schema_scripts)
    if readiness.status == "not_ready":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return readiness
