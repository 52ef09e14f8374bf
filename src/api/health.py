"""Liveness and readiness probes, outside the versioned API."""

from typing import Literal

from fastapi import Request, Response, status
from pydantic import BaseModel, ConfigDict

from src.api.contract import tagged_router
from src.services.readiness import Readiness

router = tagged_router("health")


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"]


# Written once: liveness probes come often, and the answer never changes.
ALIVE = Health(status="ok").model_dump_json().encode()


@router.get("/health", response_model=Health)
async def health() -> Response:
    """The process is alive; says nothing about the databases."""
    return Response(ALIVE, media_type="application/json")


@router.get("/ready", responses={503: {"model": Readiness}})
def ready(request: Request, response: Response) -> Readiness:
    """200 when the service can serve (ready, or degraded without audit); 503 otherwise.

    As checked at most READINESS_CACHE_SECONDS ago."""
    readiness: Readiness = request.app.state.readiness.get()
    if readiness.status == "not_ready":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return readiness
