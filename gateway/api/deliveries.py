"""The delivery desk over HTTP: the worklist, failed callbacks, confirmations [001: 13]."""

from __future__ import annotations

from aiohttp import web

from gateway.api.auth import ROLE_KEY, requires
from gateway.api.bodies import BAD_QUERY, appeal_id_of, read_json_object, validated
from gateway.api.context import SERVICES_KEY, ApiServices
from gateway.api.errors import ApiError, json_response
from gateway.api.views import AttemptOut, DeliveryOut, ReadyListOut, ReadyOut
from gateway.api.wire import AttemptIn, DeliveriesQuery, DeliveryIn
from gateway.domain.appeal import (
    AnswerNotReady,
    CallbacksExhausted,
    Delivery,
    DeliveryConflict,
)
from gateway.services.delivery_desk import DeliveryDesk, ImplausibleTime

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
    return json_response(ReadyListOut(
        items=[ReadyOut.of(a, services.zone_of(a.hotline)) for a in ready],
    ).body())


def _implausible(exc: ImplausibleTime) -> ApiError:
    refusal = exc.refusal
    return ApiError(422, refusal.code, refusal.message, refusal.fields)


@routes.post("/api/v1/calls/{id}/attempts")
@requires("operator", "delivery")
async def record_attempt(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    attempt = validated(AttemptIn, await read_json_object(request),
                        "Попытка описана с ошибками / invalid attempt")
    desk = _desk(services)
    appeal_id = appeal_id_of(request)
    try:
        result = await desk.record_attempt(
            appeal_id, attempt.outcome, attempt.at, actor=request[ROLE_KEY])
    except LookupError:
        raise ApiError(404, "not_found", "Обращение не найдено / no such call") from None
    except ImplausibleTime as exc:
        raise _implausible(exc) from None
    except AnswerNotReady as exc:
        raise _not_ready(exc) from None
    except CallbacksExhausted as exc:
        raise ApiError(409, "attempts_exhausted",
                       f"Уже {exc.attempts} неудачные попытки; решение за руководителем "
                       f"/ {exc.attempts} failed tries already; the supervisor decides next",
                       ) from None
    zone = services.zone_of(result.appeal.hotline)
    return json_response(AttemptOut.of(appeal_id, result, zone).body(), status=201)


@routes.post("/api/v1/calls/{id}/delivery")
@requires("operator", "delivery")
async def confirm_delivery(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    delivery = validated(DeliveryIn, await read_json_object(request),
                         "Доставка описана с ошибками / invalid delivery")
    desk = _desk(services)
    appeal_id = appeal_id_of(request)
    try:
        outcome = await desk.deliver(
            appeal_id,
            Delivery(delivery.channel, delivery.delivered_at or services.clock.now(),
                     delivery.by, "gateway"),
            actor=request[ROLE_KEY])
    except LookupError:
        raise ApiError(404, "not_found", "Обращение не найдено / no such call") from None
    except ImplausibleTime as exc:
        raise _implausible(exc) from None
    except AnswerNotReady as exc:
        raise _not_ready(exc) from None
    except DeliveryConflict as exc:
        raise ApiError(409, "channel_conflict",
                       f"Доставка уже подтверждена другим каналом ({exc.recorded}) "
                       f"/ delivery already confirmed by another channel ({exc.recorded})",
                       {"channel": f"already confirmed as {exc.recorded}"}) from None
    appeal = outcome.appeal
    zone = services.zone_of(appeal.hotline)
    return json_response(DeliveryOut.of(appeal, outcome.result, zone).body())


def _not_ready(exc: AnswerNotReady) -> ApiError:
    return ApiError(409, "answer_not_ready",
                    f"Ответ ещё не готов к передаче (статус {exc.status.value}) "
                    f"/ no answer is ready yet (status {exc.status.value})")
