"""``GET /metrics``: Prometheus text, outside the versioned API; METRICS_ENABLED=false leaves it out."""

import hmac
from collections.abc import Iterator

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import DBAPIError

from src.api.contract import tagged_router
from src.core.config import get_settings
from src.core.errors import Unauthorized
from src.core.metrics import collected_registry
from src.core.timestamps import utcnow
from src.services.audit_relay import outbox_state
from src.services.mail_outbox import mail_state
from src.services.readiness import RecentReadiness

router = tagged_router("health")


class DatabaseCollector(Collector):
    """What the databases say at scrape time: whether each answers and its schema, the outboxes and their lag."""

    def __init__(self, readiness: RecentReadiness) -> None:
        self.readiness = readiness

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("database_up", "1 when the database answers", labels=["database"])
        schema = GaugeMetricFamily(
            "database_schema_info",
            "Always 1; the revision recorded in the database, this code's head and the readiness status",
            labels=["database", "revision", "head", "status"],
        )
        for name, state in self.readiness.get().databases.items():
            up.add_metric([name], 0 if state.status == "unreachable" else 1)
            revision = "+".join(state.revisions) if state.revisions is not None else ""
            schema.add_metric([name, revision, "+".join(state.heads), state.status], 1)
        yield up
        yield schema
        try:
            waiting, oldest = outbox_state()
        except DBAPIError:
            return  # core does not answer: database_up says so
        yield GaugeMetricFamily("audit_outbox_backlog", "Audit events waiting in the core outbox", value=waiting)
        lag = (utcnow() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily("audit_relay_lag_seconds", "Age of the oldest undelivered audit event", value=lag)
        queued, failed = mail_state()
        yield GaugeMetricFamily(
            "mail_outbox_backlog", "Messages queued in the core mail outbox, not sent yet", value=queued
        )
        yield GaugeMetricFamily(
            "mail_outbox_failed", "Messages given up after MAIL_MAX_ATTEMPTS attempts", value=failed
        )


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    token = get_settings().metrics_token
    if token and not hmac.compare_digest(request.headers.get("authorization", ""), f"Bearer {token}"):
        raise Unauthorized("send Authorization: Bearer <METRICS_TOKEN> to read the metrics")
    registry = CollectorRegistry()
    registry.register(collected_registry())
    registry.register(DatabaseCollector(request.app.state.readiness))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
