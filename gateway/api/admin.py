"""Admin endpoints: the status page and the dead letters. Never any personal data here."""

from __future__ import annotations

from aiohttp import web

from gateway.api.auth import requires
from gateway.api.context import SERVICES_KEY
from gateway.api.errors import json_response

routes = web.RouteTableDef()


@routes.get("/status")
@requires("admin")
async def status(request: web.Request) -> web.Response:
    report = await request.app[SERVICES_KEY].status.report()
    return json_response(report)
