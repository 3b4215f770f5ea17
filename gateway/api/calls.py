"""Intake and reading of calls: POST/GET /api/v1/calls."""

from __future__ import annotations

from aiohttp import web

from gateway.api.auth import ROLE_KEY, requires
from gateway.api.bodies import BAD_QUERY, appeal_id_of, read_json_object, validated
from gateway.api.context import SERVICES_KEY
from gateway.api.errors import ApiError, json_response
from gateway.api.views import AppealDetailOut, AppealPageOut, IntakeOut
from gateway.api.wire import CallIn, ListQuery
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
    key = _idempotency_key(request)
    try:
        result = await services.intake.accept(call.to_command(), key, actor=request[ROLE_KEY])
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
    view = IntakeOut.of(result.appeal, services.zone_of(result.appeal.hotline))
    return json_response(view.body(), status=201 if result.created else 200)


def _idempotency_key(request: web.Request) -> str | None:
    """The header, trimmed; 422 unless it is 1–200 printable characters. Bytes that are not
    UTF-8 reach us as surrogates, which no database column takes."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not (0 < len(key) <= MAX_IDEMPOTENCY_KEY and key.isprintable()):
        raise ApiError(422, "validation",
                       "Idempotency-Key: 1–200 печатных символов в UTF-8 "
                       "/ Idempotency-Key: 1 to 200 printable UTF-8 characters",
                       {"Idempotency-Key": "1 to 200 printable UTF-8 characters"})
    return key


@routes.get("/api/v1/calls/{id}")
@requires("operator", "delivery")
async def get_call(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    appeal_id = appeal_id_of(request)
    async with services.storage.read() as uow:
        appeal = await uow.appeals.get(appeal_id)
        attachments = await uow.mail.attachments_of(appeal_id) if appeal else []
    if appeal is None:
        raise ApiError(404, "not_found", "Обращение не найдено / no such call")
    zone = services.zone_of(appeal.hotline)
    return json_response(AppealDetailOut.of(appeal, zone, tuple(attachments)).body())


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
                flag=query.flag,
            )
    except BadCursor:
        raise ApiError(422, "validation", "Неверный cursor / bad cursor",
                       {"cursor": "not a cursor this API gave out"}) from None
    return json_response(AppealPageOut.of(page, services.zone_of).body())
