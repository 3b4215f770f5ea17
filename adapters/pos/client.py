"""The ПОС adapter: registers appeals, reads their progress, confirms deliveries.

It speaks `../shared/contracts/pos-api.md` over one pooled httpx.AsyncClient and turns
every answer into the outbox's vocabulary — return on success, else `Permanent`,
`Transient` (with `Retry-After` honoured) or `Ambiguous` — so the dispatcher, not the
adapter, owns retries. Reasons never carry response bodies or appeal fields: ПОС echoes
applicants' data, and reasons end up in the outbox table and logs (152-ФЗ).

Exactly-once creation rests on two things: every create carries the appeal id as
`Idempotency-Key` and `external_id`, and a create that may have taken effect is never
simply repeated — the next attempt first looks the message up by `external_id`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self
from urllib.parse import quote

import httpx
import structlog
from pydantic import ValidationError

from adapters.http_outcomes import status_outcome, transport_outcome
from adapters.pos import wire
from adapters.pos.mapping import PosMapping, load_mapping
from gateway.domain.appeal import Appeal, DeliveryChannel
from gateway.domain.ports import (
    Answer,
    ConfirmedDelivery,
    ExternalRef,
    ExternalUpdate,
    UpdatesPage,
)
from outbox import Ambiguous, HandlerOutcome, Permanent, Transient

SYSTEM = "pos"
MESSAGES_PATH = "/api/v1/messages"
MAX_PAGE_SIZE = 500  # the contract's upper bound for `limit`
_CURSOR_VERSION = 1
_SAFE_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

log = structlog.get_logger(__name__)


class AnswerNotReady(Permanent):
    """409 `answer_not_ready`: ПОС has no approved answer yet, so delivery cannot be confirmed.

    Permanent for this request — repeating it changes nothing — but a distinct type so the
    caller can tell the operator "not yet" rather than report a broken integration.
    """

    code = wire.ERROR_ANSWER_NOT_READY


class DeliveryConflict(Permanent):
    """409 other than `answer_not_ready`: ПОС already holds a delivery by another channel."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True, slots=True)
class _PollPosition:
    """What our stored cursor holds; see `PosClient.fetch_updates`."""

    since: str | None = None  # updated_since sent on every page of the walk
    cursor: str | None = None  # the remote's opaque next_cursor, mid-walk only
    max_seen: str | None = None  # largest updated_at seen so far in this walk

    def encode(self) -> str:
        return json.dumps(
            {"v": _CURSOR_VERSION, "since": self.since, "cursor": self.cursor,
             "max": self.max_seen},
            separators=(",", ":"), ensure_ascii=False,
        )

    @classmethod
    def decode(cls, stored: str | None) -> _PollPosition:
        if not stored:
            return cls()
        try:
            data = json.loads(stored)
            if not isinstance(data, dict) or data.get("v") != _CURSOR_VERSION:
                raise ValueError("unknown cursor layout")
            fields = [data.get(k) for k in ("since", "cursor", "max")]
            if any(f is not None and not isinstance(f, str) for f in fields):
                raise ValueError("cursor fields must be strings")
            for moment in (fields[0], fields[2]):
                if moment is not None:
                    datetime.fromisoformat(moment)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise Permanent("pos poll: stored cursor is unreadable; reset it") from exc
        return cls(since=fields[0], cursor=fields[1], max_seen=fields[2])


def cursor_since(moment: datetime) -> str:
    """A stored cursor that starts polling at `moment` rather than at ПОС's beginning.

    The first cycle without a cursor reads every operator message ПОС holds; a gateway
    joining an existing ПОС account may prefer to start from its oldest open appeal.
    """
    return _PollPosition(since=_aware(moment).isoformat()).encode()


def _aware(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC, the gateway's clock (ports.Clock)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _later(a: str | None, b: datetime) -> str:
    if a is not None and datetime.fromisoformat(a) >= b:
        return a
    return b.isoformat()


def message_text(prefix: str, summary: str) -> str:
    """«Центр мониторинга 112. <summary>» [003]: the marker starts every hotline message."""
    summary = summary.strip()
    marker = prefix.strip().rstrip(".").strip()
    if not marker or summary.startswith(marker):
        return summary
    return f"{marker}. {summary}"


def _error_code(response: httpx.Response) -> str:
    """The contract's error code, and only that: the message may quote the applicant."""
    try:
        code = wire.ErrorBody.model_validate_json(response.content).error.code
    except ValidationError:
        return "unrecognised"
    return code if _SAFE_CODE.fullmatch(code) else "unrecognised"


def _failure(op: str, response: httpx.Response, *, write: bool = False) -> HandlerOutcome:
    """The outcome for a non-success status; the body is read only for the error code."""
    status = response.status_code
    refused = None
    if status == 422:
        refused = f"pos {op}: rejected ({_error_code(response)})"
    elif status in (401, 403):
        refused = f"configuration: pos {op} answered {status}; check the token and its rights"
    elif 300 <= status < 400:
        refused = f"configuration: pos {op} answered {status} redirect; check the base URL"
    elif status < 500 and status not in (408, 429):
        refused = f"pos {op}: unexpected answer {status}"
    return status_outcome(response, f"pos {op}", write=write, refused=refused)


class PosClient:
    """Registrar, StatusSource and DeliveryConfirmer for ПОС.

    Holds one connection pool; create it once per process and `aclose()` it at shutdown.
    `transport` lets tests substitute respx or an in-process transport.
    """

    system = SYSTEM

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        mapping: PosMapping | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        pool_timeout: float = 5.0,
        max_connections: int = 100,
        max_keepalive_connections: int = 20,
        keepalive_expiry: float = 30.0,
        max_in_flight: int = 8,
        source: str = wire.SOURCE_OPERATOR,
        remember_uncertain: int = 10_000,
        overlap_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.mapping = mapping if mapping is not None else load_mapping()
        self._source = source
        self._overlap = timedelta(seconds=max(0.0, overlap_s))
        self._uncertain: dict[str, None] = {}
        self._uncertain_cap = remember_uncertain
        # httpcore's pool does work per queued request on every state change, so hundreds
        # of requests queued inside it cost more CPU than the requests themselves; callers
        # wait here instead, cheaply, with the pool timeout as the bound.
        self._in_flight = asyncio.Semaphore(max(1, min(max_in_flight, max_connections)))
        self._pool_timeout = pool_timeout
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": "hotline-gateway",
            },
            timeout=httpx.Timeout(timeout, connect=connect_timeout, pool=pool_timeout),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_keepalive_connections,
                keepalive_expiry=keepalive_expiry,
            ),
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- Registrar -------------------------------------------------------------------

    async def register(self, appeal: Appeal, *, lookup_first: bool = False) -> ExternalRef:
        """Create the message for `appeal` once, whatever happened to earlier attempts.

        `lookup_first=True` is the caller saying "an earlier attempt may have taken effect"
        — the outbox passes it on every retry, because only the outbox's attempt counter
        survives a restart. Within one process the adapter also remembers appeals whose
        last create ended uncertain and looks those up regardless; the idempotency key
        is the third guard.
        """
        body = self.create_body(appeal)
        key = appeal.registration_key  # the appeal id; another one after a re-route
        if lookup_first or key in self._uncertain:
            found = await self._lookup_before_retry(key)
            if found is not None:
                self._uncertain.pop(key, None)
                return self._ref(found)
        message = await self._create(key, body)
        self._uncertain.pop(key, None)
        return self._ref(message)

    def create_body(self, appeal: Appeal) -> wire.CreateMessage:
        """The contract's create body; the problem address and the applicant's stay apart [003]."""
        target = appeal.route.pos
        if target is None:
            raise Permanent("configuration: the appeal's route has no ПОС target")
        applicant = appeal.applicant
        try:
            return wire.CreateMessage(
                source=self._source,
                external_id=appeal.registration_key,
                category_id=target.category_id,
                subcategory_id=target.subcategory_id,
                organization_id=target.organization_id,
                text=message_text(target.text_prefix, appeal.summary),
                problem_address=appeal.problem_address or None,
                applicant=wire.WireApplicant(
                    last_name=applicant.last_name,
                    first_name=applicant.first_name,
                    middle_name=applicant.middle_name or None,
                    phone=applicant.phone or None,
                    email=applicant.email or None,
                    address=applicant.postal_address or None,
                ),
                received_at=_aware(appeal.received_at),
            )
        except ValidationError as exc:
            # Field names only: pydantic's messages quote the offending values.
            fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
            raise Permanent(f"pos create: appeal cannot be sent, invalid {fields}") from None

    async def find_by_external_id(self, external_id: str) -> wire.Message | None:
        """The message created for our appeal id, if ПОС has one."""
        response = await self._get(MESSAGES_PATH, {"external_id": external_id}, op="lookup")
        page = self._page(response, op="lookup")
        for raw in page.items:
            try:
                message = wire.Message.model_validate(raw)
            except ValidationError:
                continue
            # Trust, but verify: a lax server filter must not hand us someone else's message.
            if message.external_id is None or message.external_id == external_id:
                return message
        return None

    async def _lookup_before_retry(self, appeal_id: str) -> wire.Message | None:
        try:
            return await self.find_by_external_id(appeal_id)
        except Permanent:
            raise
        except Transient as exc:
            # The earlier create is still unaccounted for: keep saying so.
            self._remember_uncertain(appeal_id)
            raise Ambiguous(f"{exc.reason} (before re-creating)", exc.retry_after) from None

    async def _create(self, appeal_id: str, body: wire.CreateMessage) -> wire.Message:
        try:
            response = await self._send(
                "POST", MESSAGES_PATH,
                content=body.model_dump_json(exclude_none=True).encode(),
                headers={"Idempotency-Key": appeal_id, "Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            outcome = transport_outcome(exc, "pos create", write=True)
            if isinstance(outcome, Ambiguous):
                self._remember_uncertain(appeal_id)
            raise outcome from None
        if response.status_code in (200, 201):
            try:
                return wire.Message.model_validate_json(response.content)
            except ValidationError:
                self._remember_uncertain(appeal_id)
                raise Ambiguous(
                    f"pos create: unreadable {response.status_code} answer"
                ) from None
        if response.status_code >= 500:
            # Even a plain 500 may have come after the row was written.
            self._remember_uncertain(appeal_id)
        raise _failure("create", response, write=True)

    def _remember_uncertain(self, appeal_id: str) -> None:
        self._uncertain.pop(appeal_id, None)
        self._uncertain[appeal_id] = None
        while len(self._uncertain) > self._uncertain_cap:
            del self._uncertain[next(iter(self._uncertain))]

    def _ref(self, message: wire.Message) -> ExternalRef:
        return ExternalRef(
            system=SYSTEM, id=str(message.id), number=message.number, stage=message.stage,
            status=message.status,
        )

    # --- StatusSource ----------------------------------------------------------------

    async def fetch_updates(self, cursor: str | None, limit: int) -> UpdatesPage:
        """One page of messages changed since the stored cursor.

        Our cursor is a small JSON string holding the `updated_since` of the walk, the
        remote's opaque `next_cursor`, and the largest `updated_at` seen so far, so a walk
        interrupted mid-way resumes where it stopped. While the remote has more pages,
        `next_cursor` is set; at the end it is None and `resume_from` is the cursor to
        store for the next cycle (`updated_since` = the largest `updated_at` seen).

        Each walk starts `overlap_s` before the stored `updated_since`: a change committed
        late upstream carries an `updated_at` older than changes already read, and would
        otherwise never be fetched. Re-reads are harmless (applying an update is
        idempotent) but not free: a walk makes one request per page, so a cycle costs
        ceil((changed + recent) / limit) + 1 requests, where `recent` counts the messages
        changed within `overlap_s` before the previous cycle's newest change.
        """
        position = self._walk_start(_PollPosition.decode(cursor))
        params = {"source": self._source, "limit": str(max(1, min(MAX_PAGE_SIZE, limit)))}
        if position.since is not None:
            params["updated_since"] = position.since
        if position.cursor is not None:
            params["cursor"] = position.cursor
        response = await self._get(MESSAGES_PATH, params, op="poll")
        page = self._page(response, op="poll")

        updates: list[ExternalUpdate] = []
        max_seen = position.max_seen
        for raw in page.items:
            try:
                message = wire.Message.model_validate(raw)
            except ValidationError:
                log.warning("pos_item_unreadable")
                continue
            max_seen = _later(max_seen, _aware(message.updated_at))
            update = self.to_update(message)
            if update is not None:
                updates.append(update)

        more = page.next_cursor is not None and not (
            page.next_cursor == position.cursor and not page.items  # a remote stuck in place
        )
        if more:
            following = _PollPosition(position.since, page.next_cursor, max_seen)
            return UpdatesPage(updates=updates, next_cursor=following.encode())
        resume = _PollPosition(since=max_seen if max_seen is not None else position.since)
        return UpdatesPage(updates=updates, next_cursor=None, resume_from=resume.encode())

    def _walk_start(self, position: _PollPosition) -> _PollPosition:
        """At the start of a walk, reach back by the overlap; never resume behind `since`."""
        if position.cursor is not None or position.since is None:
            return position
        since = datetime.fromisoformat(position.since)
        return _PollPosition(since=(since - self._overlap).isoformat(),
                             max_seen=_later(position.max_seen, since))

    async def get_update(self, external_id: str) -> ExternalUpdate | None:
        """One message by its ПОС id, mapped; None when ПОС does not know it. The port
        `RecordReader`: the daily reconciliation of open appeals reads through it."""
        response = await self._send_read(f"{MESSAGES_PATH}/{quote(external_id, safe='')}", {})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _failure("read", response)
        try:
            message = wire.Message.model_validate_json(response.content)
        except ValidationError:
            raise Transient("pos read: unreadable answer") from None
        return self.to_update(message)

    def to_update(self, message: wire.Message) -> ExternalUpdate | None:
        """A remote message in our vocabulary; None when its stage maps to nothing."""
        status = self.mapping.status_for(message.stage, message.status)
        if not self.mapping.is_known_stage(message.stage):
            log.warning("pos_unknown_stage", stage=message.stage, pos_id=str(message.id))
        if status is None:
            return None
        answer = None
        if message.answer is not None:
            answer = Answer(
                text=message.answer.text,
                approved_at=_aware(message.answer.approved_at)
                if message.answer.approved_at is not None else None,
                organization=message.answer.organization,
            )
        delivery = None
        if message.delivery is not None:
            try:
                channel = DeliveryChannel(message.delivery.channel)
            except ValueError:
                log.warning("pos_unknown_delivery_channel", pos_id=str(message.id))
            else:
                delivery = ConfirmedDelivery(
                    channel=channel,
                    confirmed_at=_aware(message.delivery.confirmed_at),
                    confirmed_by=message.delivery.confirmed_by,
                )
        return ExternalUpdate(
            system=SYSTEM,
            external_id=str(message.id),
            appeal_id=message.external_id,
            stage=message.stage,
            status=status,
            updated_at=_aware(message.updated_at),
            planned_completion=message.planned_completion,
            answer=answer,
            delivery=delivery,
        )

    # --- DeliveryConfirmer -----------------------------------------------------------

    async def confirm_delivery(
        self, external_id: str, channel: DeliveryChannel, confirmed_at: datetime,
        comment: str | None = None,
    ) -> None:
        """Tell ПОС how the answer reached the applicant («Ответ передан заявителю»).

        Safe to repeat: the same channel again is 200, so a lost answer is `Ambiguous`
        and the retry simply posts again. `AnswerNotReady` and `DeliveryConflict` are the
        two 409s the caller must tell apart.
        """
        body = wire.ConfirmDelivery(
            channel=channel.value, confirmed_at=_aware(confirmed_at), comment=comment or None,
        )
        try:
            response = await self._send(
                "POST", f"{MESSAGES_PATH}/{quote(external_id, safe='')}/delivery",
                content=body.model_dump_json(exclude_none=True).encode(),
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise transport_outcome(exc, "pos delivery", write=True) from None
        status = response.status_code
        if status in (200, 201, 204):
            return
        if status == 409:
            code = _error_code(response)
            if code == wire.ERROR_ANSWER_NOT_READY:
                raise AnswerNotReady("pos delivery: answer not ready in ПОС yet (answer_not_ready)")
            raise DeliveryConflict(
                f"pos delivery: ПОС already holds a different delivery ({code})", code
            )
        if status == 404:
            raise Permanent("pos delivery: message not found in ПОС")
        raise _failure("delivery", response, write=True)

    # --- plumbing --------------------------------------------------------------------

    async def _send(self, method: str, path: str, *, content: bytes | None = None,
                    params: Mapping[str, str] | None = None,
                    headers: Mapping[str, str] | None = None) -> httpx.Response:
        try:
            async with asyncio.timeout(self._pool_timeout):
                await self._in_flight.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("all request slots busy") from None
        try:
            return await self._http.request(
                method, path, content=content, params=params, headers=headers
            )
        finally:
            self._in_flight.release()

    async def _send_read(self, path: str, params: Mapping[str, str]) -> httpx.Response:
        try:
            return await self._send("GET", path, params=params)
        except httpx.HTTPError as exc:
            # Reads have no effect: any transport failure is simply worth another try.
            raise transport_outcome(exc, "pos read", write=False) from None

    async def _get(self, path: str, params: Mapping[str, str], *, op: str) -> httpx.Response:
        response = await self._send_read(path, params)
        if response.status_code != 200:
            raise _failure(op, response)
        return response

    @staticmethod
    def _page(response: httpx.Response, *, op: str) -> wire.MessagesPage:
        try:
            return wire.MessagesPage.model_validate_json(response.content)
        except ValidationError:
            raise Transient(f"pos {op}: unreadable answer") from None
