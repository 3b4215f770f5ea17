"""Liveness, readiness and metrics: what the orchestrator and Prometheus scrape.

/healthz and /readyz are open and say only ready or not (contract v1.1); why not is
logged, never shown. /metrics needs the admin token, or is served open on a listener
of its own for the scraper (`metrics_app`).
"""

from __future__ import annotations

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from gateway.api.auth import requires
from gateway.api.context import SERVICES_KEY, ApiServices
from gateway.api.errors import RETRY_AFTER_S, error_response, json_response
from gateway.storage.readiness import WriteProbe

log = structlog.get_logger(__name__)

routes = web.RouteTableDef()

PROBE_KEY = web.AppKey("readiness_probe", WriteProbe)


@routes.get("/healthz")
async def healthz(_request: web.Request) -> web.Response:
    """The process runs and answers; no database work, so a slow database never fails it."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    reason = await request.app[PROBE_KEY].not_ready()
    if reason is not None:
        log.warning("readyz.not_ready", reason=reason)
        return error_response(503, "not_ready", "Не готов / not ready",
                              headers={"Retry-After": str(RETRY_AFTER_S)})
    return json_response({"status": "ready"})


def install_probe(app: web.Application, services: ApiServices) -> None:
    app[PROBE_KEY] = services.readiness


async def _metrics(services: ApiServices) -> web.Response:
    registry = REGISTRY
    if services.metrics is not None:
        # Row counts are a GROUP BY over the outbox: one per cache period, not per scrape.
        await services.metrics.refresh_if_stale(services.outbox)
        registry = services.metrics.registry
    body = generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/metrics")
@requires("admin")
async def metrics(request: web.Request) -> web.Response:
    return await _metrics(request.app[SERVICES_KEY])


def metrics_app(services: ApiServices) -> web.Application:
    """/metrics alone, open: for a listener only the scraper can reach (metrics.port)."""

    async def scrape(_request: web.Request) -> web.Response:
        return await _metrics(services)

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    return app
