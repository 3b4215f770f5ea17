"""The delivery desk over HTTP: the worklist, failed callbacks, confirmations [001: 13]."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from aiohttp import web

from gateway.api.auth import ROLE_KEY, requires
from gateway.api.bodies import BAD_QUERY, read_json_object, validated
from gateway.api.context import SERVICES_KEY, ApiServices
from gateway.api.errors import ApiError, json_response
from gateway.api.wire import AttemptIn, DeliveriesQuery, DeliveryIn, iso
from gateway.domain.appeal import (
    AnswerNotReady,
    Appeal,
    CallbacksExhausted,
    Delivery,
    DeliveryConflict,
)
from gateway.services.delivery_desk import DeliveryDesk

routes = web.RouteTableDef()


def _desk(services: ApiServices) -> DeliveryDesk:
    if services.deliveries is None:
        raise ApiError(503, "unavailable", "Доставка не настроена / delivery desk not wired")
    return services.deliveries


@routes.get("/api/v1/deliveries")
@requires("operator", "delivery")
async def worklist(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    query = validated(DeliveriesQuery, dict(request.query), BAD_QUERY)
    ready = await _desk(services).ready(query.limit)
    return json_response({"items": [
        ready_item(a, services.zone_of(a.hotline)) for a in ready]})


def ready_item(appeal: Appeal, zone: tzinfo) -> dict[str, Any]:
    applicant = appeal.applicant
    external = appeal.external
    return {
        "id": appeal.id,
        "journal_id": appeal.journal_id,
        "external": {"system": external.system if external else None,
                     "id": external.id if external else None,
                     "number": external.number if external else None},
        "answer_text": appeal.answer_text,
        "answer_ready_at": iso(appeal.answer_ready_at, zone),
        "applicant": {"last_name": applicant.last_name, "first_name": applicant.first_name,
                      "middle_name": applicant.middle_name, "phone": applicant.phone,
                      "email": applicant.email, "postal_address": applicant.postal_address},
        "answer_channel": appeal.answer_channel.value if appeal.answer_channel else None,
        "due_at": iso(appeal.feedback_due_at or appeal.due_at, zone),
        "attempts": appeal.callback_attempts,
        "next_attempt_at": iso(appeal.next_callback_at, zone),
        "needs_supervisor": appeal.needs_supervisor,
    }


@routes.post("/api/v1/calls/{id}/attempts")
@requires("operator", "delivery")
async def record_attempt(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    attempt = validated(AttemptIn, await read_json_object(request),
                        "Попытка описана с ошибками / invalid attempt")
    appeal_id = request.match_info["id"]
    try:
        result = await _desk(services).record_attempt(
            appeal_id, attempt.outcome, attempt.at, actor=request[ROLE_KEY])
    except LookupError:
        raise ApiError(404, "not_found", "Обращение не найдено / no such call") from None
    except AnswerNotReady as exc:
        raise _not_ready(exc) from None
    except CallbacksExhausted as exc:
        raise ApiError(409, "attempts_exhausted",
                       f"Уже {exc.attempts} неудачные попытки; решение за руководителем "
                       f"/ {exc.attempts} failed tries already; the supervisor decides next",
                       ) from None
    zone = services.zone_of(result.appeal.hotline)
    return json_response({
        "id": appeal_id,
        "attempts": result.attempts,
        "next_attempt_at": iso(result.next_attempt_at, zone),
        "next_attempt_by": iso(result.next_attempt_by, zone),
        "needs_supervisor": result.needs_supervisor,
    }, status=201)


@routes.post("/api/v1/calls/{id}/delivery")
@requires("operator", "delivery")
async def confirm_delivery(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    delivery = validated(DeliveryIn, await read_json_object(request),
                         "Доставка описана с ошибками / invalid delivery")
    appeal_id = request.match_info["id"]
    try:
        outcome = await _desk(services).deliver(
            appeal_id,
            Delivery(delivery.channel, delivery.delivered_at or services.clock.now(),
                     delivery.by, "gateway"),
            actor=request[ROLE_KEY])
    except LookupError:
        raise ApiError(404, "not_found", "Обращение не найдено / no such call") from None
    except AnswerNotReady as exc:
        raise _not_ready(exc) from None
    except DeliveryConflict as exc:
        raise ApiError(409, "channel_conflict",
                       f"Доставка уже подтверждена другим каналом ({exc.recorded}) "
                       f"/ delivery already confirmed by another channel ({exc.recorded})",
                       {"channel": f"already confirmed as {exc.recorded}"}) from None
    appeal = outcome.appeal
    zone = services.zone_of(appeal.hotline)
    return json_response({
        "id": appeal_id,
        "status": appeal.status.value,
        "channel": appeal.delivery_channel,
        "delivered_at": iso(appeal.delivered_at, zone),
        "result": outcome.result.value,
    })


def _not_ready(exc: AnswerNotReady) -> ApiError:
    return ApiError(409, "answer_not_ready",
                    f"Ответ ещё не готов к передаче (статус {exc.status.value}) "
                    f"/ no answer is ready yet (status {exc.status.value})")
