"""The v1 API: every resource's router under /api/v1."""

from fastapi import APIRouter

from src.api.v1.routes import audit, auth, members, users, workspaces

router = APIRouter(prefix="/api/v1")
for resource in (users, auth, workspaces, members, audit):
    router.include_router(resource.router)
