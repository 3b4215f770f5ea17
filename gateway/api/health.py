"""Liveness, readiness and metrics: what the orchestrator and Prometheus scrape."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text

from gateway.api.context import SERVICES_KEY
from gateway.api.errors import error_response, json_response

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    try:
        async with services.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return error_response(
            503, "database_unreachable",
            f"База данных недоступна / database unreachable ({type(exc).__name__})")
    return json_response({"status": "ready"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    registry = REGISTRY
    if services.metrics is not None:
        await services.metrics.refresh(services.outbox)  # row counts as of this scrape
        registry = services.metrics.registry
    body = generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
