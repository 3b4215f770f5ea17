"""The services over the in-memory unit of work: what each one commits, and that it commits it
all at once or not at all. The SQL unit of work is covered by the integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapters.email.letters import TemplateLetters
from config.calendar import build_work_calendar
from gateway.clock import ManualClock
from gateway.domain.appeal import (
    AnswerChannel,
    Appeal,
    AppealStatus,
    Applicant,
    CallbacksExhausted,
    Delivery,
    DeliveryChannel,
    DeliveryResult,
    Urgency,
)
from gateway.domain.deadlines import CallbackRule
from gateway.domain.intake import NewCall
from gateway.domain.ports import (
    Answer,
    ConfirmedDelivery,
    ExternalRef,
    ExternalUpdate,
    OutgoingMail,
    UpdatesPage,
)
from gateway.domain.route import EmailTarget, Route, TargetSystem
from gateway.domain.routing import UnknownTopic
from gateway.services.delivery_desk import DeliveryDesk
from gateway.services.export_import import ExportedRow, import_rows
from gateway.services.forwarding import Forwarding
from gateway.services.intake import CallConflict, CallRefused, IntakeService
from gateway.services.planning import PlannedDeadlines
from gateway.services.polling import Poller
from gateway.services.sla import SlaWatch
from gateway.services.status import StatusReport
from gateway.services.unit_of_work import AlreadyStored, NewAppeal, PollerState
from outbox import Message, Transient
from outbox.testing import InMemoryStore
from tests.builders import POS_ROUTE, make_appeal
from tests.fakes import FakeStorage

MOSCOW = ZoneInfo("Europe/Moscow")
# Monday 2026-11-23, 10:00 in Moscow: 45 minutes after the builder's call.
NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
CALL_AT = datetime(2026, 11, 23, 6, 15, tzinfo=UTC)  # 09:15 in Moscow
HEATING = "Отопление"
ROADS = "Дороги"
INFORMATIONAL = "Справочная информация"
POS_ID = "100500"
POS_NUMBER = "ПОС-2026-100500"
ANSWER = "Отопление восстановлено 24.11.2026."
EMAIL_ROUTE = Route(system=TargetSystem.EMAIL, executor="Министерство транспорта",
                    email=(EmailTarget("roads", ("roads@gov.test",)),), deadline_policy="email")


def zone_of(hotline: str) -> tzinfo:
    return MOSCOW


# -- fakes of the ports the services call out through --------------------------------------


ROUTES = {HEATING: POS_ROUTE, ROADS: EMAIL_ROUTE, INFORMATIONAL: Route.none()}


class FakeRoutes:
    """Three topics of the dictionary: one to ПОС, one by e-mail, one answered on the spot."""

    def route(self, topic: str, hotline: str, informational: bool,
              at: datetime | None = None) -> Route:
        if topic not in ROUTES:
            raise UnknownTopic(topic)
        return Route.none() if informational else ROUTES[topic]

    def canonical_topic(self, name: str) -> str:
        if name not in ROUTES:
            raise UnknownTopic(name)
        return name


class FakeDeadlines:
    def plan(self, received_at: datetime, urgency: Urgency, route: Route,
             hotline: str) -> PlannedDeadlines:
        if route.system is TargetSystem.NONE:
            return PlannedDeadlines(due_at=None)
        return PlannedDeadlines(due_at=received_at + timedelta(days=5))


class FakeRegistrar:
    """A target system: creates a record once per appeal, finds it again by the appeal id.

    `lose_responses`: how many of the next answers are lost after the record was made.
    """

    def __init__(self, system: str = "pos") -> None:
        self.system = system
        self.records: dict[str, ExternalRef] = {}
        self.calls: list[tuple[str, bool]] = []
        self.lose_responses = 0

    async def register(self, appeal: Appeal, *, lookup_first: bool = False) -> ExternalRef:
        self.calls.append((appeal.id, lookup_first))
        if lookup_first and appeal.id in self.records:
            return self.records[appeal.id]
        serial = 100500 + len(self.records)
        ref = ExternalRef(self.system, str(serial), f"ПОС-2026-{serial}", "Зарегистрировано")
        self.records[appeal.id] = ref
        if self.lose_responses:
            self.lose_responses -= 1
            raise Transient("timeout")
        return ref


class FakeConfirmer:
    def __init__(self) -> None:
        self.confirmed: list[tuple[str, DeliveryChannel]] = []

    async def confirm_delivery(self, external_id: str, channel: DeliveryChannel,
                               confirmed_at: datetime, comment: str | None = None) -> None:
        self.confirmed.append((external_id, channel))


class FakeMailer:
    def __init__(self) -> None:
        self.sent: list[OutgoingMail] = []

    async def send(self, mail: OutgoingMail) -> None:
        self.sent.append(mail)

    def message_id(self, mail: OutgoingMail) -> str:
        return f"<{mail.idempotency_key}@gateway.test>"


class FakeSource:
    """A status source serving fixed pages by cursor; `failure` makes every fetch fail."""

    def __init__(self, pages: dict[str | None, UpdatesPage] | None = None) -> None:
        self.pages = pages or {}
        self.failure: Exception | None = None
        self.cursors: list[str | None] = []

    async def fetch_updates(self, cursor: str | None, limit: int) -> UpdatesPage:
        self.cursors.append(cursor)
        if self.failure is not None:
            raise self.failure
        return self.pages[cursor]


class SourceDown(Exception):
    reason = "HTTP 503"


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def storage(clock: ManualClock) -> FakeStorage:
    return FakeStorage(clock)


@pytest.fixture
async def intake(storage: FakeStorage, clock: ManualClock) -> AsyncIterator[IntakeService]:
    service = IntakeService(storage, FakeRoutes(), FakeDeadlines(), clock, frozenset({"122"}))
    yield service
    await service.aclose()


@pytest.fixture
def registrar() -> FakeRegistrar:
    return FakeRegistrar()


@pytest.fixture
def confirmer() -> FakeConfirmer:
    return FakeConfirmer()


@pytest.fixture
def mailer() -> FakeMailer:
    return FakeMailer()


@pytest.fixture
async def forwarding(storage: FakeStorage, clock: ManualClock, registrar: FakeRegistrar,
                     confirmer: FakeConfirmer, mailer: FakeMailer) -> AsyncIterator[Forwarding]:
    service = Forwarding(storage, clock, registrars={"pos": registrar},
                         confirmers={"pos": confirmer}, mailer=mailer,
                         letters=TemplateLetters())
    yield service
    await service.aclose()


@pytest.fixture
def desk(storage: FakeStorage, clock: ManualClock) -> DeliveryDesk:
    return DeliveryDesk(storage, clock, CallbackRule(), build_work_calendar(), zone_of)


def call(**changes: Any) -> NewCall:
    """The command intake takes, as the API builds it from a valid body."""
    command = NewCall(
        journal_id="KRS-2026-000123",
        hotline="122",
        received_at=CALL_AT,
        operator="Иванова А.А.",
        applicant=Applicant(last_name="Смирнов", first_name="Олег",
                            phone="+7 900 123-45-67", email="o.smirnov@example.ru"),
        problem_address=None,
        topic=HEATING,
        summary="В квартире нет отопления третий день",
        urgency=Urgency.URGENT,
    )
    return replace(command, **changes)


def message(appeal_id: str, target: str, action: str, *, attempt: int = 1,
            **payload: str) -> Message:
    return Message(id=1, ordering_key=appeal_id, target=target, action=action,
                   payload={"appeal_id": appeal_id, **payload}, idempotency_key=appeal_id,
                   attempt=attempt, created_at=0.0, window_start=0.0)


def ready(**changes: Any) -> Appeal:
    values: dict[str, Any] = {
        "status": AppealStatus.ANSWER_READY, "answer_text": ANSWER,
        "answer_ready_at": NOW - timedelta(hours=1),
        "external": ExternalRef("pos", POS_ID, POS_NUMBER, "Ответ готов")}
    return make_appeal(**{**values, **changes})


def remote(status: AppealStatus, stage: str, **fields: Any) -> ExternalUpdate:
    return ExternalUpdate(system="pos", external_id=POS_ID, appeal_id=None, stage=stage,
                          status=status, updated_at=NOW, **fields)


def poller(storage: FakeStorage, clock: ManualClock, source: FakeSource) -> Poller:
    return Poller("pos", source, storage, clock, zone_of=zone_of, interval_s=0.01,
                  page_size=2)


# -- intake ----------------------------------------------------------------------------------


async def test_a_call_is_stored_with_its_forwarding_row_and_audit_entry_in_one_commit(
        intake: IntakeService, storage: FakeStorage) -> None:
    result = await intake.accept(call(), "key-1", "operator")

    assert result.created
    appeal_id = result.appeal.id
    assert storage.commits == 1
    stored = storage.appeals[appeal_id]
    assert stored.status is AppealStatus.ACCEPTED
    assert stored.applicant.phone == "+79001234567"  # normalised at intake
    assert stored.due_at == datetime(2026, 11, 28, 6, 15, tzinfo=UTC)  # the planner's
    assert storage.statuses(appeal_id) == [AppealStatus.ACCEPTED]
    assert storage.actions() == [("pos", "register")]
    assert storage.messages[0].idempotency_key == appeal_id
    assert storage.audit_actions(appeal_id) == ["call.accepted"]
    assert storage.keys[appeal_id] == "key-1"
    assert result.appeal.events == []


async def test_an_informational_call_is_journaled_and_not_forwarded(
        intake: IntakeService, storage: FakeStorage) -> None:
    """[002: 2.8.2] answered on the spot: journaled only."""
    result = await intake.accept(call(topic=INFORMATIONAL, informational=True), None,
                                 "operator")
    assert storage.appeals[result.appeal.id].status is AppealStatus.JOURNALED
    assert storage.statuses(result.appeal.id) == [AppealStatus.JOURNALED]
    assert storage.messages == []
    assert storage.audit_actions() == ["call.accepted"]


async def test_an_email_route_call_queues_one_request_per_authority(
        intake: IntakeService, storage: FakeStorage) -> None:
    """[004: 10.1]"""
    result = await intake.accept(call(topic=ROADS), None, "operator")
    assert storage.actions() == [("email", "request")]
    assert storage.messages[0].idempotency_key == f"{result.appeal.id}:request:roads"


async def test_a_repeat_of_a_call_returns_the_original_and_stores_nothing_new(
        intake: IntakeService, storage: FakeStorage) -> None:
    first = await intake.accept(call(), "key-1", "operator")
    again = await intake.accept(call(), "key-1", "operator")

    assert not again.created
    assert again.appeal.id == first.appeal.id
    assert [c.status for c in again.appeal.history] == [AppealStatus.ACCEPTED]
    assert len(storage.appeals) == 1
    assert storage.actions() == [("pos", "register")]
    assert storage.audit_actions() == ["call.accepted"]


async def test_a_different_call_under_a_used_journal_entry_is_a_conflict(
        intake: IntakeService, storage: FakeStorage) -> None:
    first = await intake.accept(call(), None, "operator")
    with pytest.raises(CallConflict) as conflict:
        await intake.accept(call(summary="Протекает крыша"), None, "operator")
    assert (conflict.value.existing_id, conflict.value.by) == (first.appeal.id, "journal_id")
    assert len(storage.appeals) == 1 and len(storage.messages) == 1


async def test_a_used_idempotency_key_on_another_call_is_a_conflict(
        intake: IntakeService, storage: FakeStorage) -> None:
    first = await intake.accept(call(), "key-1", "operator")
    with pytest.raises(CallConflict) as conflict:
        await intake.accept(call(journal_id="KRS-2026-000124"), "key-1", "operator")
    assert (conflict.value.existing_id, conflict.value.by) == (first.appeal.id,
                                                              "Idempotency-Key")


async def test_two_identical_calls_at_the_same_moment_store_one_appeal(
        intake: IntakeService, storage: FakeStorage) -> None:
    # Both go in one group commit, which the unique journal entry refuses; each is then
    # tried alone, and the second finds the first.
    results = await asyncio.gather(intake.accept(call(), None, "operator"),
                                   intake.accept(call(), None, "operator"))
    assert sorted(r.created for r in results) == [False, True]
    assert results[0].appeal.id == results[1].appeal.id
    assert len(storage.appeals) == 1
    assert storage.actions() == [("pos", "register")]
    assert len(storage.history) == 1


async def test_a_new_call_batched_with_a_repeat_is_stored_with_all_its_rows(
        intake: IntakeService, storage: FakeStorage) -> None:
    # The batch's first commit fails on the repeat; the new call's events must survive it
    # so that its own commit still writes its history, audit entry and outbox row.
    first = await intake.accept(call(), None, "operator")
    repeat, new = await asyncio.gather(
        intake.accept(call(), None, "operator"),
        intake.accept(call(journal_id="KRS-2026-000124"), None, "operator"))

    assert (repeat.created, repeat.appeal.id) == (False, first.appeal.id)
    assert new.created
    assert storage.statuses(new.appeal.id) == [AppealStatus.ACCEPTED]
    assert storage.audit_actions(new.appeal.id) == ["call.accepted"]
    assert [m.ordering_key for m in storage.messages] == [first.appeal.id, new.appeal.id]


async def test_a_call_stored_alone_after_a_batch_failed_is_reported_created_whatever_follows(
        intake: IntakeService, storage: FakeStorage) -> None:
    # The batch [new, repeat, other] fails on the repeat; each is then tried alone. The
    # first is stored; the third's own commit fails. Only the third may report a failure.
    original = await intake.accept(call(), None, "operator")
    storage.failing_commits = [None, None, None, ConnectionError("lost")]
    new, repeat, other = await asyncio.gather(
        intake.accept(call(journal_id="KRS-2026-000124"), None, "operator"),
        intake.accept(call(), None, "operator"),
        intake.accept(call(journal_id="KRS-2026-000125"), None, "operator"),
        return_exceptions=True)

    assert not isinstance(new, BaseException) and new.created
    assert new.appeal.id in storage.appeals
    assert not isinstance(repeat, BaseException)
    assert (repeat.created, repeat.appeal.id) == (False, original.appeal.id)
    assert isinstance(other, ConnectionError)
    assert len(storage.appeals) == 2


async def test_a_refused_call_stores_nothing(intake: IntakeService, storage: FakeStorage) -> None:
    with pytest.raises(CallRefused) as refused:
        await intake.accept(call(hotline="999"), None, "operator")
    assert refused.value.refusal.code == "validation"
    with pytest.raises(CallRefused) as unknown:
        await intake.accept(call(topic="Нет такой темы"), None, "operator")
    assert unknown.value.refusal.code == "unknown_topic"
    assert storage.commits == 0 and storage.appeals == {}


# -- the unit of work ------------------------------------------------------------------------


async def test_a_unit_of_work_left_by_an_exception_commits_nothing(
        storage: FakeStorage) -> None:
    appeal = storage.put(make_appeal(due_at=NOW - timedelta(hours=1)))
    with pytest.raises(RuntimeError):
        async with storage.write() as uow:
            loaded = await uow.appeals.get(appeal.id)
            assert loaded is not None and loaded.mark_overdue(NOW)
            await uow.cursors.save("pos", "c-1", NOW)
            raise RuntimeError("boom")
    assert not uow.committed
    assert storage.appeals[appeal.id].overdue is False
    assert storage.audit == [] and storage.cursors == {} and storage.commits == 0


async def test_a_failed_commit_keeps_the_appeals_events_so_a_retry_writes_them(
        storage: FakeStorage) -> None:
    appeal = make_appeal()
    appeal.accepted(NOW, "operator", registered_late=False)
    new = NewAppeal(appeal, "hash", None)
    storage.failing_commits.append(ConnectionError("connection lost"))

    with pytest.raises(ConnectionError):
        async with storage.write() as uow:
            uow.appeals.add(new)
    assert appeal.events != []
    assert storage.appeals == {} and storage.messages == []

    async with storage.write() as uow:
        uow.appeals.add(new)
    assert uow.committed
    assert appeal.events == []
    assert storage.statuses(appeal.id) == [AppealStatus.ACCEPTED]
    assert storage.audit_actions() == ["call.accepted"]
    assert storage.actions() == [("pos", "register")]


async def test_a_repeated_journal_entry_in_one_commit_refuses_the_whole_commit(
        storage: FakeStorage) -> None:
    first, second = make_appeal(id="a-1"), make_appeal(id="a-2")
    with pytest.raises(AlreadyStored):
        async with storage.write() as uow:
            uow.appeals.add(NewAppeal(first, "h", None))
            uow.appeals.add(NewAppeal(second, "h", None))
    assert storage.appeals == {}


async def test_a_reading_unit_of_work_cannot_save_changes(storage: FakeStorage) -> None:
    appeal = storage.put(make_appeal(due_at=NOW - timedelta(hours=1)))
    with pytest.raises(RuntimeError):
        async with storage.read() as uow:
            loaded = await uow.appeals.get(appeal.id)
            assert loaded is not None
            loaded.mark_overdue(NOW)
    assert storage.appeals[appeal.id].overdue is False


async def test_an_appeal_loaded_but_not_changed_is_not_written(
        storage: FakeStorage, clock: ManualClock) -> None:
    appeal = storage.put(make_appeal())
    async with storage.write() as uow:
        await uow.appeals.get(appeal.id)
    assert storage.appeals[appeal.id].updated_at is None  # no commit stamped it


# -- forwarding ------------------------------------------------------------------------------


async def test_register_records_the_reference_and_the_registered_status(
        forwarding: Forwarding, storage: FakeStorage, registrar: FakeRegistrar) -> None:
    appeal = storage.put(make_appeal())
    await forwarding.register(message(appeal.id, "pos", "register"))

    stored = storage.appeals[appeal.id]
    assert stored.status is AppealStatus.REGISTERED
    assert stored.external == registrar.records[appeal.id]
    assert registrar.calls == [(appeal.id, False)]
    assert storage.statuses(appeal.id) == [AppealStatus.REGISTERED]
    assert storage.audit_actions(appeal.id) == ["call.registered"]


async def test_a_retry_after_a_lost_response_looks_the_record_up_and_creates_no_second(
        forwarding: Forwarding, storage: FakeStorage, registrar: FakeRegistrar) -> None:
    appeal = storage.put(make_appeal())
    registrar.lose_responses = 1
    with pytest.raises(Transient):
        await forwarding.register(message(appeal.id, "pos", "register"))
    assert storage.appeals[appeal.id].status is AppealStatus.ACCEPTED

    await forwarding.register(message(appeal.id, "pos", "register", attempt=2))

    assert registrar.calls == [(appeal.id, False), (appeal.id, True)]
    assert len(registrar.records) == 1
    assert storage.appeals[appeal.id].external == registrar.records[appeal.id]
    assert storage.statuses(appeal.id) == [AppealStatus.REGISTERED]


async def test_a_registration_an_earlier_try_recorded_is_not_repeated(
        forwarding: Forwarding, storage: FakeStorage, registrar: FakeRegistrar) -> None:
    appeal = storage.put(make_appeal(status=AppealStatus.REGISTERED,
                                     external=ExternalRef("pos", POS_ID, POS_NUMBER)))
    await forwarding.register(message(appeal.id, "pos", "register", attempt=2))
    assert registrar.calls == []
    assert storage.commits == 0


async def test_a_record_the_poller_saw_first_is_looked_up_and_keeps_its_progress(
        forwarding: Forwarding, storage: FakeStorage, registrar: FakeRegistrar) -> None:
    appeal = storage.put(make_appeal(status=AppealStatus.IN_PROGRESS,
                                     external=ExternalRef("pos", POS_ID, None, "В работе")))
    registrar.records[appeal.id] = ExternalRef("pos", POS_ID, POS_NUMBER)

    await forwarding.register(message(appeal.id, "pos", "register"))

    assert registrar.calls == [(appeal.id, True)]
    stored = storage.appeals[appeal.id]
    assert stored.status is AppealStatus.IN_PROGRESS
    assert stored.external == ExternalRef("pos", POS_ID, POS_NUMBER, "В работе")
    assert storage.statuses(appeal.id) == []
    assert storage.audit_actions(appeal.id) == ["call.registered"]


async def test_the_answer_letter_is_not_sent_when_pos_already_sent_it(
        forwarding: Forwarding, storage: FakeStorage, mailer: FakeMailer) -> None:
    appeal = storage.put(ready(status=AppealStatus.ANSWER_SENT,
                               answer_channel=AnswerChannel.EMAIL))
    await forwarding.send_answer(message(appeal.id, "email", "answer"))
    assert mailer.sent == []
    assert storage.commits == 0
    assert storage.appeals[appeal.id].status is AppealStatus.ANSWER_SENT


async def test_the_answer_letter_is_sent_and_recorded_as_an_email_delivery(
        forwarding: Forwarding, storage: FakeStorage, mailer: FakeMailer) -> None:
    appeal = storage.put(ready(answer_channel=AnswerChannel.EMAIL))
    await forwarding.send_answer(message(appeal.id, "email", "answer"))

    (letter,) = mailer.sent
    assert letter.to == ("o.smirnov@example.ru",)
    assert ANSWER in letter.text
    stored = storage.appeals[appeal.id]
    assert (stored.status, stored.delivery_channel) == (AppealStatus.DELIVERED, "email")
    (delivery,) = [d for _, d, _ in storage.deliveries]
    assert (delivery.channel, delivery.outcome, delivery.source) == ("email", "delivered",
                                                                    "email")
    # The gateway delivered it: ПОС is told how.
    assert storage.actions() == [("pos", "confirm_delivery")]
    assert storage.messages[0].payload["channel"] == "email"


async def test_a_delivery_confirmation_is_passed_on_and_audited(
        forwarding: Forwarding, storage: FakeStorage, confirmer: FakeConfirmer) -> None:
    appeal = storage.put(ready(status=AppealStatus.DELIVERED, delivery_channel="phone"))
    await forwarding.confirm_delivery(message(
        appeal.id, "pos", "confirm_delivery", channel="phone", delivered_at=NOW.isoformat()))
    assert confirmer.confirmed == [(POS_ID, DeliveryChannel.PHONE)]
    assert storage.audit_actions(appeal.id) == ["delivery.confirmed_remote"]


async def test_an_email_request_registers_the_appeal(
        forwarding: Forwarding, storage: FakeStorage, mailer: FakeMailer) -> None:
    """[004: 10.1]"""
    appeal = storage.put(make_appeal(route=EMAIL_ROUTE))
    await forwarding.send_request(message(appeal.id, "email", "request", authority="roads"))
    assert [m.to for m in mailer.sent] == [("roads@gov.test",)]
    assert storage.appeals[appeal.id].status is AppealStatus.REGISTERED
    assert storage.audit_actions(appeal.id) == ["email.request_sent"]


# -- the delivery desk -----------------------------------------------------------------------


async def test_failed_callbacks_are_counted_across_commits_until_the_supervisor_decides(
        desk: DeliveryDesk, storage: FakeStorage, clock: ManualClock) -> None:
    """[001: 13] three tries, then the supervisor: each try in its own request."""
    appeal = storage.put(ready(answer_ready_at=NOW - timedelta(minutes=30)))
    outcomes = []
    for _ in range(3):
        outcomes.append(await desk.record_attempt(appeal.id, "no_answer", None, "delivery"))
        clock.advance(timedelta(minutes=35))

    assert [o.attempts for o in outcomes] == [1, 2, 3]
    assert [o.needs_supervisor for o in outcomes] == [False, False, True]
    assert outcomes[0].next_attempt_at == NOW + timedelta(minutes=30)
    assert outcomes[0].next_attempt_by == NOW + timedelta(minutes=60)
    assert [d.outcome for i, d, _ in storage.deliveries if i == appeal.id] == ["no_answer"] * 3
    assert storage.audit_actions(appeal.id) == ["delivery.attempt_failed"] * 3
    assert storage.appeals[appeal.id].needs_supervisor
    with pytest.raises(CallbacksExhausted):
        await desk.record_attempt(appeal.id, "no_answer", None, "delivery")
    assert len(storage.deliveries) == 3


async def test_a_delivery_to_a_pos_applicant_is_confirmed_to_pos(
        desk: DeliveryDesk, storage: FakeStorage) -> None:
    appeal = storage.put(ready())
    delivered_at = NOW - timedelta(minutes=5)
    outcome = await desk.deliver(
        appeal.id, Delivery(DeliveryChannel.PHONE, delivered_at, "Петрова", "gateway"),
        "delivery")

    assert outcome.result is DeliveryResult.RECORDED
    assert storage.statuses(appeal.id) == [AppealStatus.DELIVERED]
    assert storage.audit_actions(appeal.id) == ["delivery.recorded"]
    (confirm,) = storage.messages
    assert (confirm.target, confirm.action) == ("pos", "confirm_delivery")
    assert confirm.idempotency_key == f"{appeal.id}:confirm_delivery"
    assert confirm.payload == {"appeal_id": appeal.id, "channel": "phone",
                               "delivered_at": delivered_at.isoformat()}


async def test_the_same_delivery_twice_is_recorded_and_confirmed_once(
        desk: DeliveryDesk, storage: FakeStorage) -> None:
    appeal = storage.put(ready())
    delivery = Delivery(DeliveryChannel.PHONE, NOW, None, "gateway")
    await desk.deliver(appeal.id, delivery, "delivery")
    again = await desk.deliver(appeal.id, delivery, "delivery")
    assert again.result is DeliveryResult.ALREADY_RECORDED
    assert len(storage.messages) == 1 and len(storage.deliveries) == 1


async def test_a_delivery_for_an_unknown_appeal_is_a_lookup_error(desk: DeliveryDesk) -> None:
    with pytest.raises(LookupError):
        await desk.deliver("no-such-id", Delivery(DeliveryChannel.PHONE, NOW, None, "gateway"),
                           "delivery")


async def test_answers_waiting_for_delivery_list_the_supervisors_first(
        desk: DeliveryDesk, storage: FakeStorage) -> None:
    storage.put(ready(id="a-1", next_callback_at=NOW + timedelta(hours=1)))
    storage.put(ready(id="a-2", journal_id="J-2", needs_supervisor=True))
    storage.put(ready(id="a-3", journal_id="J-3", next_callback_at=NOW))
    storage.put(make_appeal(id="a-4", journal_id="J-4"))
    assert [a.id for a in await desk.ready()] == ["a-2", "a-3", "a-1"]


# -- polling ---------------------------------------------------------------------------------


def two_pages(storage: FakeStorage) -> FakeSource:
    """Two registered appeals, each changed on its own page, and a change not ours."""
    for number in ("1", "2"):
        storage.put(make_appeal(id=f"a-{number}", journal_id=f"J-{number}",
                                status=AppealStatus.REGISTERED,
                                external=ExternalRef("pos", number, f"ПОС-2026-{number}")))
    progress = remote(AppealStatus.IN_PROGRESS, "В работе")
    return FakeSource({
        # "999": entered in ПОС by hand, not ours: skipped.
        None: UpdatesPage([replace(progress, external_id="1"),
                           replace(progress, external_id="999")], "c-1"),
        "c-1": UpdatesPage([replace(progress, external_id="2")], None, resume_from="c-2"),
    })


async def test_each_page_commits_with_the_cursor_after_it(
        storage: FakeStorage, clock: ManualClock) -> None:
    source = two_pages(storage)
    result = await poller(storage, clock, source).poll_once()

    assert (result.requests, result.updates, result.applied) == (2, 3, 2)
    assert source.cursors == [None, "c-1"]
    assert storage.commits == 2
    assert storage.cursors["pos"] == PollerState("pos", "c-2", NOW, None)
    assert storage.appeals["a-1"].status is AppealStatus.IN_PROGRESS
    assert storage.appeals["a-2"].status is AppealStatus.IN_PROGRESS


async def test_a_page_whose_commit_fails_keeps_neither_its_changes_nor_its_cursor(
        storage: FakeStorage, clock: ManualClock) -> None:
    source = two_pages(storage)
    the_poller = poller(storage, clock, source)
    storage.failing_commits = [None, ConnectionError("lost")]

    with pytest.raises(ConnectionError):
        await the_poller.poll_once()
    assert storage.cursors["pos"].cursor == "c-1"
    assert storage.appeals["a-1"].status is AppealStatus.IN_PROGRESS
    assert storage.statuses("a-2") == []

    # The next cycle repeats only the page that was lost.
    await the_poller.poll_once()
    assert source.cursors == [None, "c-1", "c-1"]
    assert storage.statuses("a-2") == [AppealStatus.IN_PROGRESS]
    assert storage.statuses("a-1") == [AppealStatus.IN_PROGRESS]


async def test_a_failing_source_records_its_error_for_status_and_keeps_the_cursor(
        storage: FakeStorage, clock: ManualClock) -> None:
    async with storage.write() as uow:
        await uow.cursors.save("pos", "c-7", NOW - timedelta(minutes=5))
    source = FakeSource()
    source.failure = SourceDown()
    task = asyncio.create_task(poller(storage, clock, source).run())
    try:
        for _ in range(1000):
            if storage.cursors["pos"].last_error is not None:
                break
            await asyncio.sleep(0)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    state = storage.cursors["pos"]
    assert (state.cursor, state.last_error) == ("c-7", "HTTP 503")
    assert state.last_success_at == NOW - timedelta(minutes=5)
    assert source.cursors[0] == "c-7"


async def test_a_poller_error_the_database_cannot_record_still_shows_in_status(
        storage: FakeStorage, clock: ManualClock) -> None:
    """Issue 12: with the disk full the poller cannot write its error; /status must not
    then say all is well."""
    async with storage.write() as uow:
        await uow.cursors.save("pos", "c-7", NOW - timedelta(minutes=5))
    source = FakeSource()
    source.failure = SourceDown()
    storage.failing_commits = [OSError("disk full")] * 50
    polling = poller(storage, clock, source)
    task = asyncio.create_task(polling.run())
    try:
        for _ in range(1000):
            if polling.health.last_error is not None:
                break
            await asyncio.sleep(0)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert storage.cursors["pos"].last_error is None  # nothing could be written

    report = await StatusReport(storage, InMemoryStore(), clock, "test",
                                {"pos": polling.health}).report()

    assert report["pollers"]["pos"]["last_error"] == "HTTP 503"


async def test_a_delivery_reported_by_pos_is_recorded_and_not_confirmed_back(
        storage: FakeStorage, clock: ManualClock) -> None:
    appeal = storage.put(make_appeal(status=AppealStatus.IN_PROGRESS,
                                     external=ExternalRef("pos", POS_ID, POS_NUMBER)))
    confirmed = NOW - timedelta(minutes=20)
    source = FakeSource({None: UpdatesPage([remote(
        AppealStatus.DELIVERED, "Ответ передан заявителю", answer=Answer(ANSWER),
        delivery=ConfirmedDelivery(DeliveryChannel.POST, confirmed))], None)})

    await poller(storage, clock, source).poll_once()

    assert storage.statuses(appeal.id) == [AppealStatus.ANSWER_READY, AppealStatus.DELIVERED]
    assert [(d.channel, d.source, d.at) for _, d, _ in storage.deliveries] == [
        ("post", "pos", confirmed)]
    assert storage.audit_actions(appeal.id) == ["answer.ready", "delivery.recorded"]
    assert storage.messages == []


async def test_an_answer_for_an_email_applicant_queues_the_answer_letter(
        storage: FakeStorage, clock: ManualClock) -> None:
    appeal = storage.put(make_appeal(status=AppealStatus.IN_PROGRESS,
                                     answer_channel=AnswerChannel.EMAIL,
                                     external=ExternalRef("pos", POS_ID, POS_NUMBER)))
    source = FakeSource({None: UpdatesPage([remote(
        AppealStatus.ANSWER_READY, "Ответ готов", answer=Answer(ANSWER))], None)})
    await poller(storage, clock, source).poll_once()
    assert storage.actions() == [("email", "answer")]
    assert storage.messages[0].idempotency_key == f"{appeal.id}:answer"


async def test_an_imported_export_row_is_matched_by_its_number_with_or_without_prefix(
        storage: FakeStorage, clock: ManualClock) -> None:
    storage.put(make_appeal(status=AppealStatus.REGISTERED,
                            external=ExternalRef("pos", POS_ID, POS_NUMBER)))
    rows = [ExportedRow(2, "100500", remote(AppealStatus.IN_PROGRESS, "В работе")),
            ExportedRow(3, POS_NUMBER, remote(AppealStatus.IN_PROGRESS, "В работе")),
            ExportedRow(4, "ПОС-2026-777", remote(AppealStatus.IN_PROGRESS, "В работе"))]
    report = await import_rows(storage, "pos", rows, clock=clock, zone_of=zone_of)
    assert (report.applied, report.unchanged, report.unmatched) == (1, 1, [4])


# -- deadlines -------------------------------------------------------------------------------


async def test_the_sla_watch_marks_an_overdue_appeal_once_across_sweeps(
        storage: FakeStorage, clock: ManualClock) -> None:
    late = storage.put(make_appeal(id="a-1", due_at=NOW - timedelta(minutes=1)))
    storage.put(make_appeal(id="a-2", journal_id="J-2", due_at=NOW + timedelta(days=3)))
    storage.put(make_appeal(id="a-3", journal_id="J-3", due_at=NOW - timedelta(days=1),
                            status=AppealStatus.DELIVERED))
    watch = SlaWatch(storage, clock, reminder_lead=timedelta(hours=24))

    first = await watch.sweep()
    clock.advance(timedelta(minutes=1))
    second = await watch.sweep()

    assert first.overdue == [late.id] and second.overdue == []
    assert storage.appeals[late.id].overdue
    assert storage.audit_actions().count("sla.overdue") == 1


async def test_the_sla_watch_reminds_of_an_interim_answer_once(
        storage: FakeStorage, clock: ManualClock) -> None:
    """[002: 2.8.10]"""
    soon = storage.put(make_appeal(due_at=NOW + timedelta(hours=3)))
    watch = SlaWatch(storage, clock, reminder_lead=timedelta(hours=24))
    first, second = await watch.sweep(), await watch.sweep()
    assert (first.reminded, second.reminded) == ([soon.id], [])
    assert storage.appeals[soon.id].interim_reminded_at == NOW
    assert storage.audit_actions() == ["sla.interim_answer_due"]
