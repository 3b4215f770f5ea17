"""Intake and reading of calls: POST/GET /api/v1/calls."""

from __future__ import annotations

import uuid
from datetime import tzinfo
from typing import Any

from aiohttp import web

from gateway.api.auth import ROLE_KEY, requires
from gateway.api.bodies import BAD_QUERY, read_json_object, validated
from gateway.api.context import SERVICES_KEY
from gateway.api.errors import ApiError, json_response
from gateway.api.wire import CallIn, ListQuery, iso
from gateway.domain.appeal import Appeal
from gateway.services.intake import CallConflict, CallRefused
from gateway.services.unit_of_work import BadCursor

routes = web.RouteTableDef()

MAX_IDEMPOTENCY_KEY = 200


@routes.post("/api/v1/calls")
@requires("operator")
async def post_call(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    call = validated(CallIn, await read_json_object(request),
                     "Обращение заполнено с ошибками / the call has invalid fields")
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key.strip()) <= MAX_IDEMPOTENCY_KEY):
        raise ApiError(422, "validation", "Idempotency-Key: 1–200 characters",
                       {"Idempotency-Key": "1 to 200 characters"})
    try:
        result = await services.intake.accept(call, key.strip() if key else None,
                                              actor=request[ROLE_KEY])
    except CallRefused as exc:
        refusal = exc.refusal
        raise ApiError(422, refusal.code, refusal.message, refusal.fields) from None
    except CallConflict as exc:
        raise ApiError(
            409, "conflict",
            f"Этот {exc.by} уже использован для другого обращения "
            f"/ this {exc.by} was already used for a different call",
            {exc.by: f"already used by appeal {exc.existing_id}"},
        ) from None
    appeal = result.appeal
    zone = services.zone_of(appeal.hotline)
    return json_response(intake_body(appeal, zone), status=201 if result.created else 200)


def intake_body(appeal: Appeal, zone: tzinfo) -> dict[str, Any]:
    return {
        "id": appeal.id,
        "status": "accepted",
        "route": {
            "system": appeal.route.system.value,
            "executor": appeal.route.executor,
            "due_at": iso(appeal.due_at, zone),
        },
    }


@routes.get("/api/v1/calls/{id}")
@requires("operator", "delivery")
async def get_call(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    appeal_id = request.match_info["id"]
    if not _is_uuid(appeal_id):
        raise ApiError(404, "not_found", "Обращение не найдено / no such call")
    async with services.storage.read() as uow:
        appeal = await uow.appeals.get(appeal_id)
    if appeal is None:
        raise ApiError(404, "not_found", "Обращение не найдено / no such call")
    zone = services.zone_of(appeal.hotline)
    return json_response(appeal_body(appeal, zone, with_history=True))


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@routes.get("/api/v1/calls")
@requires("operator", "delivery")
async def list_calls(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    query = validated(ListQuery, dict(request.query), BAD_QUERY)
    try:
        async with services.storage.read() as uow:
            page = await uow.appeals.page(
                status=query.status, updated_since=query.updated_since,
                overdue=query.overdue, limit=query.limit, cursor=query.cursor,
            )
    except BadCursor:
        raise ApiError(422, "validation", "Неверный cursor / bad cursor",
                       {"cursor": "not a cursor this API gave out"}) from None
    return json_response(
        {"items": [appeal_body(a, services.zone_of(a.hotline), with_history=False)
                   for a in page.items],
         "next_cursor": page.next_cursor},
    )


def appeal_body(appeal: Appeal, zone: tzinfo, *, with_history: bool) -> dict[str, Any]:
    """An appeal for people allowed to see personal data (operator, delivery, admin)."""
    external = appeal.external
    applicant = appeal.applicant
    body: dict[str, Any] = {
        "id": appeal.id,
        "journal_id": appeal.journal_id,
        "hotline": appeal.hotline,
        "received_at": iso(appeal.received_at, zone),
        "operator": appeal.operator,
        "applicant": {
            "last_name": applicant.last_name, "first_name": applicant.first_name,
            "middle_name": applicant.middle_name, "phone": applicant.phone,
            "email": applicant.email, "postal_address": applicant.postal_address,
        },
        "problem_address": appeal.problem_address,
        "topic": appeal.topic,
        "summary": appeal.summary,
        "repeat": appeal.repeat,
        "urgency": appeal.urgency.value,
        "answer_channel": appeal.answer_channel.value if appeal.answer_channel else None,
        "informational": appeal.informational,
        "status": appeal.status.value,
        "route": {
            "system": appeal.route.system.value,
            "executor": appeal.route.executor,
            "due_at": iso(appeal.due_at, zone),
        },
        "external": {
            "system": external.system,
            "id": external.id,
            "number": external.number,
            "stage": external.stage,
        } if external else None,
        "deadlines": {
            "due_at": iso(appeal.due_at, zone),
            "feedback_due_at": iso(appeal.feedback_due_at, zone),
            "request_due_at": iso(appeal.request_due_at, zone),
            "overdue": appeal.overdue,
        },
        "answer": {"text": appeal.answer_text, "ready_at": iso(appeal.answer_ready_at, zone)}
        if appeal.answer_text is not None else None,
        "created_at": iso(appeal.created_at, zone),
        "updated_at": iso(appeal.updated_at, zone),
    }
    if with_history:
        body["history"] = [
            {"status": c.status.value, "at": iso(c.at, zone), "source": c.source, "note": c.note}
            for c in appeal.history
        ]
        body["deliveries"] = [
            {"channel": d.channel, "outcome": d.outcome, "at": iso(d.at, zone), "by": d.by,
             "source": d.source}
            for d in appeal.deliveries
        ]
    return body
