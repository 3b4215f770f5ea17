"""Officials' answers over HTTP [004: 10.2–10.3]: an answer recorded by hand, an
extension, the replies the mailbox reader left for an operator, and reply attachments."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from gateway.api.auth import ROLE_KEY, requires
from gateway.api.bodies import (
    NO_SUCH_CALL,
    path_id,
    read_json_object,
    uuid_or_404,
    validated,
)
from gateway.api.context import SERVICES_KEY, ApiServices
from gateway.api.errors import ApiError, json_response
from gateway.api.views import AttachmentOut, DeadlinesOut, UnmatchedMailOut, _local
from gateway.api.wire import AnswerIn, AssignIn, ExtensionIn
from gateway.domain.appeal import AnswerClosed, Appeal, ExtensionLimit, NoRequestSent
from gateway.services.mail_replies import (
    UnmatchedAlreadyAssigned,
    UnmatchedMailDesk,
    UnmatchedNotFound,
    UnmatchedWithoutText,
)
from gateway.services.official_answers import CallNotFound, OfficialAnswers

routes = web.RouteTableDef()

NO_SUCH_ATTACHMENT = "Вложение не найдено / no such attachment"



def _answers(services: ApiServices) -> OfficialAnswers:
    if services.answers is None:
        raise ApiError(503, "unavailable", "Ответы не настроены / answers not wired")
    return services.answers


def _desk(services: ApiServices) -> UnmatchedMailDesk:
    if services.unmatched_mail is None:
        raise ApiError(503, "unavailable", "Почта не настроена / mail desk not wired")
    return services.unmatched_mail


def _closed(exc: AnswerClosed) -> ApiError:
    return ApiError(409, "answer_closed",
                    f"Обращение уже не принимает ответ (статус {exc.status.value}) "
                    f"/ the call takes no answer any more (status {exc.status.value})")


def _answered(appeal: Appeal, services: ApiServices) -> dict[str, object]:
    zone = services.zone_of(appeal.hotline)
    ready = _local(appeal.answer_ready_at, zone)
    return {"id": appeal.id, "status": appeal.status.value,
            "answer_ready_at": ready.isoformat() if ready else None}


@routes.post("/api/v1/calls/{id}/answer")
@requires("operator")
async def record_answer(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    answer = validated(AnswerIn, await read_json_object(request),
                       "Ответ описан с ошибками / invalid answer")
    appeal_id = path_id(request)
    try:
        appeal = await _answers(services).record_answer(
            appeal_id, answer.text, answer.source, answer.received_at or services.clock.now(),
            actor=request[ROLE_KEY])
    except CallNotFound:
        raise ApiError(404, "not_found", NO_SUCH_CALL) from None
    except AnswerClosed as exc:
        raise _closed(exc) from None
    return json_response(_answered(appeal, services))


@routes.post("/api/v1/calls/{id}/extension")
@requires("operator", "supervisor")
async def record_extension(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    extension = validated(ExtensionIn, await read_json_object(request),
                          "Продление описано с ошибками / invalid extension")
    appeal_id = path_id(request)
    try:
        appeal = await _answers(services).extend(
            appeal_id, extension.until, extension.reason, extension.letter_ref,
            actor=request[ROLE_KEY])
    except CallNotFound:
        raise ApiError(404, "not_found", NO_SUCH_CALL) from None
    except ExtensionLimit as exc:
        raise ApiError(
            409, "extension_limit",
            "Срок ответа не может превышать пять рабочих дней с момента запроса [004: 10.3] "
            "/ the answer may not come later than 5 working days after the request",
            {"until": f"at most {exc.latest.isoformat()}"}) from None
    except NoRequestSent:
        raise ApiError(409, "no_request",
                       "Запрос ответственному лицу не направлялся "
                       "/ no request was sent to an official for this call") from None
    except AnswerClosed as exc:
        raise _closed(exc) from None
    except ValueError as exc:
        raise ApiError(422, "validation", "Продление описано с ошибками / invalid extension",
                       {"until": str(exc)}) from None
    zone = services.zone_of(appeal.hotline)
    return json_response({"id": appeal.id, "status": appeal.status.value,
                          "deadlines": DeadlinesOut.of(appeal, zone).body()})


@routes.get("/api/v1/mail/unmatched")
@requires("operator")
async def list_unmatched(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    items = await _desk(services).unmatched()
    zone = services.zone_of("")
    return json_response({"items": [UnmatchedMailOut.of(m, zone).body() for m in items]})


@routes.post("/api/v1/mail/unmatched/{id}/assign")
@requires("operator")
async def assign_unmatched(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    body = validated(AssignIn, await read_json_object(request),
                     "Назначение описано с ошибками / invalid assignment")
    mail_id = path_id(request, "Письмо не найдено / no such mail")
    appeal_id = uuid_or_404(body.call_id)
    try:
        await _desk(services).assign(mail_id, appeal_id, actor=request[ROLE_KEY])
    except UnmatchedNotFound:
        raise ApiError(404, "not_found", "Письмо не найдено / no such mail") from None
    except CallNotFound:
        raise ApiError(404, "not_found", NO_SUCH_CALL) from None
    except UnmatchedAlreadyAssigned:
        raise ApiError(409, "already_assigned",
                       "Письмо уже назначено / the mail was assigned already") from None
    except UnmatchedWithoutText:
        raise ApiError(409, "no_text",
                       "В письме нет текста ответа; внесите ответ вручную "
                       "/ the mail has no answer text; record the answer by hand") from None
    except AnswerClosed as exc:
        raise _closed(exc) from None
    return json_response({"id": mail_id, "call_id": appeal_id, "assigned": True})


@routes.get("/api/v1/calls/{id}/attachments")
@requires("operator", "delivery")
async def list_attachments(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    appeal_id = path_id(request)
    async with services.storage.read() as uow:
        found = await uow.mail.attachments_of(appeal_id)
    return json_response({"items": [AttachmentOut.of(a).body() for a in found]})


@routes.get("/api/v1/calls/{id}/attachments/{attachment}")
@requires("operator", "delivery")
async def download_attachment(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    appeal_id = path_id(request)
    attachment_id = path_id(request, NO_SUCH_ATTACHMENT, key="attachment")
    async with services.storage.read() as uow:
        found = await uow.mail.attachment(appeal_id, attachment_id)
    if found is None:
        raise ApiError(404, "not_found", NO_SUCH_ATTACHMENT)
    info, data = found
    return web.Response(body=data, content_type="application/octet-stream", headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(info.filename)}",
        "X-Content-Type-Options": "nosniff",
    })
