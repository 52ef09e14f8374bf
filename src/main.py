"""The application factory: routers, error handling and the lifespan."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from src.api import health
from src.api.v1.models import load_models
from src.core.databases import dispose_engines
from src.core.schema_versions import script_directory


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    load_models()
    app.state.schema_head = script_directory().get_current_head()
    yield
    dispose_engines()


def create_app() -> FastAPI:
    app = FastAPI(title="FastAPI starter", lifespan=lifespan)
    app.include_router(health.router)
    return app


app = create_app()
