"""The delivery desk over HTTP: the worklist, failed callbacks, confirmations [001: 13]."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from gateway.api.auth import ROLE_KEY, requires
from gateway.api.bodies import BAD_QUERY, appeal_id_of, read_json_object, validated
from gateway.api.callbacks import exhausted, implausible_at, too_soon
from gateway.api.context import SERVICES_KEY, ApiServices
from gateway.api.errors import ApiError, json_response
from gateway.api.views import AttemptOut, DeliveryOut, InterimDueOut, ReadyListOut, ReadyOut
from gateway.api.wire import AttemptIn, DeliveriesQuery, DeliveryIn
from gateway.domain.appeal import (
    AnswerChannel,
    AnswerNotReady,
    Appeal,
    CallbacksExhausted,
    Delivery,
    DeliveryConflict,
)
from gateway.domain.callbacks import CallbackTooSoon, ImplausibleAttemptTime
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
    desk = _desk(services)
    ready = await desk.ready(query.limit)
    callbacks = services.callbacks
    now = services.clock.now()

    def first_due(appeal: Appeal) -> datetime | None:
        # [001: 13] shown before the first try, not only once the sweep stored it.
        if callbacks is None or appeal.answer_channel is not AnswerChannel.PHONE \
                or appeal.callback_attempts or appeal.needs_supervisor:
            return None
        return callbacks.first_due(appeal.answer_ready_at or now, appeal.hotline)

    return json_response(ReadyListOut(
        items=[ReadyOut.of(a, services.zone_of(a.hotline), first_due(a)) for a in ready],
        interim_due=[InterimDueOut.of(a, services.zone_of(a.hotline))
                     for a in await desk.interim_due(query.limit)],
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
    except ImplausibleAttemptTime as exc:
        raise implausible_at(exc) from None
    except AnswerNotReady as exc:
        raise _not_ready(exc) from None
    except CallbackTooSoon as exc:
        async with services.storage.read() as uow:
            found = await uow.appeals.get_many([appeal_id])
        hotline = found[appeal_id].hotline if appeal_id in found else ""
        raise too_soon(exc, services, hotline) from None
    except CallbacksExhausted as exc:
        raise exhausted(exc.attempts) from None
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
