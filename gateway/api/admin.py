"""Admin endpoints: the status page and the outbox. Never any personal data here.

Outbox rows carry only ids and small parameters (never the applicant's data), and their
last errors are written by adapters that keep personal data out of them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.api.auth import ROLE_KEY, requires
from gateway.api.bodies import BAD_QUERY, read_json_object, validated
from gateway.api.context import SERVICES_KEY
from gateway.api.errors import ApiError, json_response
from gateway.api.wire import MAX_ROW_ID, FoundInPos, OutboxQuery
from gateway.services.outbox_admin import NotDead
from outbox import MessageRecord, State

routes = web.RouteTableDef()


@routes.get("/status")
@requires("admin")
async def status(request: web.Request) -> web.Response:
    report = await request.app[SERVICES_KEY].status.report()
    return json_response(report)


@routes.get("/api/v1/outbox")
@requires("admin")
async def list_outbox(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    query = validated(OutboxQuery, dict(request.query), BAD_QUERY)
    rows = await services.outbox.list_messages(
        State(query.state) if query.state else None, target=query.target,
        limit=query.limit + 1, after_id=query.after_id)
    items = [outbox_body(row) for row in rows[:query.limit]]
    next_after = rows[query.limit - 1].id if len(rows) > query.limit else None
    return json_response({"items": items, "next_after_id": next_after})


@routes.post("/api/v1/outbox/{id}/retry")
@requires("admin")
async def retry_outbox(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    try:
        message_id = int(request.match_info["id"])
    except ValueError:
        message_id = 0
    if not 0 < message_id <= MAX_ROW_ID:
        raise ApiError(404, "not_found", "Нет такой записи / no such outbox row")
    try:
        row = await services.outbox_admin.redrive(message_id, request[ROLE_KEY])
    except LookupError:
        raise ApiError(404, "not_found", "Нет такой записи / no such outbox row") from None
    except NotDead as exc:
        raise ApiError(409, "not_dead",
                       f"Запись в состоянии {exc.state}; повторить можно только dead "
                       f"/ the row is {exc.state}; only dead rows can be re-driven") from None
    return json_response(outbox_body(row))


@routes.post("/api/v1/calls/{id}/pos-record")
@requires("supervisor", "admin")
async def record_found_in_pos(request: web.Request) -> web.Response:
    """A parked (ambiguous) ПОС create was found in ПОС: record its id, send nothing."""
    services = request.app[SERVICES_KEY]
    body = validated(FoundInPos, await read_json_object(request),
                     "Номер ПОС указан с ошибками / invalid ПОС id")
    found = await services.outbox_admin.record_found(
        request.match_info["id"], "pos", body.pos_id, request[ROLE_KEY])
    if not found:
        raise ApiError(404, "not_found", "Обращение не найдено / no such appeal")
    return json_response({"appeal_id": request.match_info["id"], "system": "pos",
                          "external_id": body.pos_id})


def outbox_body(row: MessageRecord) -> dict[str, Any]:
    return {
        "id": row.id,
        "appeal_id": row.ordering_key,
        "target": row.target,
        "action": row.action,
        "state": str(row.state),
        "attempts": row.attempts,
        "last_error": row.last_error,
        "available_at": _iso(row.available_at),
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "finished_at": _iso(row.finished_at),
    }


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch is not None else None
