"""Report files for supervisors [001: 18–19, appendices 1 and 3; 000]: GET returns the .xlsx.

Weeks and months are the hotline's local ones; `to` is inclusive (the API contract).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from gateway.api.auth import requires
from gateway.api.context import SERVICES_KEY
from gateway.api.errors import ApiError
from gateway.domain.reporting import BadPeriod, Period, date_range, iso_week, month
from gateway.services.reports import ReportService, UnknownHotline

routes = web.RouteTableDef()

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _need(query: Mapping[str, str], *names: str) -> list[str]:
    missing = {n: "required" for n in names if not query.get(n, "").strip()}
    if missing:
        raise ApiError(422, "invalid", "Не хватает параметров / missing query parameters",
                       missing)
    return [query[n].strip() for n in names]


def _period(make: Callable[[], Period], field: str) -> Period:
    try:
        return make()
    except BadPeriod as exc:
        raise ApiError(422, "invalid", "Неверный период / bad period", {field: str(exc)}) from None


def _service(request: web.Request) -> ReportService:
    reports = request.app[SERVICES_KEY].reports
    if reports is None:
        raise ApiError(503, "unavailable", "Отчёты не настроены / reports are not configured")
    return reports


async def _file(name: str, produce: Awaitable[bytes]) -> web.Response:
    try:
        content = await produce
    except UnknownHotline as exc:
        raise ApiError(422, "invalid", "Неизвестная линия / unknown hotline",
                       {"hotline": str(exc)}) from None
    return web.Response(body=content, content_type=XLSX,
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


@routes.get("/api/v1/reports/weekly")
@requires("supervisor", "admin")
async def weekly(request: web.Request) -> web.Response:
    hotline, week = _need(request.query, "hotline", "week")
    period = _period(lambda: iso_week(week), "week")
    return await _file(f"weekly-{hotline}-{period.label}.xlsx",
                       _service(request).weekly_file(hotline, period))


@routes.get("/api/v1/reports/monthly")
@requires("supervisor", "admin")
async def monthly(request: web.Request) -> web.Response:
    hotline, label = _need(request.query, "hotline", "month")
    period = _period(lambda: month(label), "month")
    return await _file(f"monthly-{hotline}-{period.label}.xlsx",
                       _service(request).monthly_file(hotline, period))


@routes.get("/api/v1/reports/reconcile")
@requires("supervisor", "admin")
async def reconcile(request: web.Request) -> web.Response:
    first, last = _need(request.query, "from", "to")
    period = _period(lambda: date_range(first, last), "from")
    hotline = request.query.get("hotline", "").strip() or None
    return await _file(f"reconcile-{first}-{last}.xlsx",
                       _service(request).reconcile_file(hotline, period))


@routes.get("/api/v1/reports/callload")
@requires("supervisor", "admin")
async def callload(request: web.Request) -> web.Response:
    hotline, first, last = _need(request.query, "hotline", "from", "to")
    period = _period(lambda: date_range(first, last), "from")
    return await _file(f"callload-{hotline}-{first}-{last}.xlsx",
                       _service(request).callload_file(hotline, period))
