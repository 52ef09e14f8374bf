"""The application factory: routes, error handling and the lifespan."""

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from src.api import contract, docs, health, metrics
from src.api.allowed_hosts import AllowedHostsMiddleware
from src.api.body_limit import BodyLimitMiddleware
from src.api.error_handling import register_error_handler
from src.api.head_requests import HeadAsGetMiddleware
from src.api.v1.models import load_models
from src.api.v1.router import routers as v1_routers
from src.core.config import get_settings
from src.core.databases import DATABASES
from src.core.engines import dispose_engines
from src.core.logs import configure_logging
from src.core.metrics import forget_this_process
from src.core.request_context import REQUEST_ID_HEADER, RequestContextMiddleware
from src.core.schema_versions import script_directory
from src.core.sessions import RequestSessions, size_worker_threads
from src.services.audit_relay import relay_forever
from src.services.mail_outbox import mail_forever
from src.services.readiness import RecentReadiness


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    load_models()
    # /ready holds each database against these revision files. Reading them now fails the start on a broken file;
    # several heads (branches not yet merged) do not: /ready reports them.
    scripts = script_directory()
    scripts.get_heads()
    app.state.schema_scripts = scripts
    app.state.readiness = RecentReadiness(scripts, max_age=get_settings().readiness_cache_seconds)
    # Admission to each database follows its pool (src/core/sessions.py); the dependencies find them by name.
    app.state.sessions = {name: RequestSessions.for_database(name) for name in DATABASES}
    size_worker_threads(sessions.capacity for sessions in app.state.sessions.values())
    settings = get_settings()
    workers = []
    if settings.audit_relay_enabled:
        workers.append(
            relay_forever(
                interval=settings.audit_relay_interval_seconds,
                batch_size=settings.audit_relay_batch_size,
                busy_share=settings.audit_relay_busy_share,
            )
        )
    if settings.mail_worker_enabled:
        workers.append(mail_forever(interval=settings.mail_worker_interval_seconds))
    tasks = [asyncio.create_task(worker) for worker in workers]
    # What startup made lives as long as the app: full collections, which under load took tens of
    # milliseconds each, need not walk it again while the app serves.
    gc.freeze()
    yield
    gc.unfreeze()
    for task in tasks:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
    dispose_engines()
    forget_this_process()


def create_app() -> FastAPI:
    settings = get_settings()
    configure_logging(settings.effective_log_format, settings.log_level)
    app = FastAPI(
        title="FastAPI starter",
        lifespan=lifespan,
        docs_url=None,  # served by src/api/docs.py, from local assets
        redoc_url=None,
        openapi_url="/openapi.json" if settings.serves_docs else None,
        openapi_tags=contract.TAGS,
    )
    register_error_handler(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_request_body_bytes,
        timeout_seconds=settings.request_body_timeout_seconds,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER],
        )
    # Nothing but the request's log line and metrics sees a request for a host the service does not answer to.
    if settings.allowed_hosts and "*" not in settings.allowed_hosts:
        app.add_middleware(AllowedHostsMiddleware, allowed=settings.allowed_hosts)
    # Inside the request context: a HEAD is logged and counted as HEAD, under the GET route that answered it.
    app.add_middleware(HeadAsGetMiddleware)
    # Outermost: every answer, a refused host's included, carries the request id and is logged and counted.
    app.add_middleware(RequestContextMiddleware)
    add_routes(app, health.router)
    if settings.serves_docs:
        add_routes(app, docs.router)
    if settings.metrics_enabled:
        add_routes(app, metrics.router)
    for router in v1_routers:
        add_routes(app, router)
    contract.list_every_status(app)
    return app


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """The router's routes become the app's own.

    ``include_router`` keeps a router as a branch that is matched route by route, through every level, on each
    request: that cost a small request a third of its time. The app's own routes are one pattern each.
    """
    app.router.routes.extend(router.routes)


app = create_app()
