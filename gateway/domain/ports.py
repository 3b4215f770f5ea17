"""The small interfaces the core owns; adapters implement them, `gateway.bootstrap` wires them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from gateway.domain.status import AppealStatus

if TYPE_CHECKING:
    from gateway.domain.appeal import Appeal, DeliveryChannel


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware datetime (UTC)."""
        ...


class WorkCalendar(Protocol):
    """The official production calendar: days off, transferred days, working Saturdays."""

    def is_working_day(self, day: date) -> bool: ...

    def add_working_days(self, day: date, n: int) -> date:
        """The n-th working day after `day` (n >= 0; n == 0 gives `day` or the next working day)."""
        ...

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after `day`."""
        ...


@dataclass(frozen=True, slots=True)
class ExternalRef:
    """The record an appeal became in another system."""

    system: str
    id: str
    number: str | None = None
    stage: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    approved_at: datetime | None = None
    organization: str | None = None


@dataclass(frozen=True, slots=True)
class ConfirmedDelivery:
    channel: DeliveryChannel
    confirmed_at: datetime
    confirmed_by: str | None = None


@dataclass(frozen=True, slots=True)
class ExternalUpdate:
    """What a status source says about one record, already mapped to our vocabulary."""

    system: str
    external_id: str
    appeal_id: str | None  # our id as the remote keeps it (external_id / annotation)
    stage: str  # the remote's stage, kept for the history
    status: AppealStatus  # ours, the stage mapped by the adapter's configuration
    updated_at: datetime
    planned_completion: date | None = None
    answer: Answer | None = None
    delivery: ConfirmedDelivery | None = None


@dataclass(frozen=True, slots=True)
class UpdatesPage:
    updates: Sequence[ExternalUpdate]
    next_cursor: str | None
    # The position to resume from next cycle when next_cursor is None.
    resume_from: str | None = None


class Registrar(Protocol):
    """Creates the appeal in the target system with exactly-once effect.

    Raises the outbox's Transient / Permanent / Ambiguous outcomes. `lookup_first` is set
    on every try after the first (an earlier one may have taken effect before its answer
    was lost, even in a process that has since died): the record is then looked up by the
    appeal id before it is created.
    """

    async def register(self, appeal: Appeal, *, lookup_first: bool = False) -> ExternalRef: ...


class StatusSource(Protocol):
    """Reads changes since a stored cursor; cost grows with changes, not open appeals."""

    async def fetch_updates(self, cursor: str | None, limit: int) -> UpdatesPage: ...


class RecordReader(Protocol):
    """Reads one record's current state by its id: the periodic reconciliation's way to
    catch a change the cursor missed (committed upstream later than the overlap window)."""

    async def get_update(self, external_id: str) -> ExternalUpdate | None: ...


@runtime_checkable
class ReadBacklog(Protocol):
    """A reader that reads records on its own schedule (ПОС EAS, one request per appeal):
    how long the most overdue record has waited past its due read, for /status."""

    def due_lag_s(self, now: datetime) -> float: ...


class DeliveryConfirmer(Protocol):
    """Tells the target system how the answer reached the applicant."""

    async def confirm_delivery(
        self, external_id: str, channel: DeliveryChannel, confirmed_at: datetime,
        comment: str | None = None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a letter (the weekly report's .xlsx [001: 19])."""

    filename: str
    media_type: str  # "maintype/subtype"
    content: bytes


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    to: tuple[str, ...]
    subject: str
    text: str
    html: str | None = None
    idempotency_key: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()


class Mailer(Protocol):
    async def send(self, mail: OutgoingMail) -> None: ...

    def message_id(self, mail: OutgoingMail) -> str:
        """The Message-ID `send` gives a letter with an idempotency key: kept, so that the
        official's reply (In-Reply-To / References) finds its request."""
        ...


class LetterComposer(Protocol):
    """Renders the letters from the templates in config/ (Russian, text and HTML)."""

    def request(self, appeal: Appeal, authority: str, recipients: tuple[str, ...],
                due_at: datetime | None) -> OutgoingMail:
        """[004: 10.1] the request to a responsible person, with a matchable reference."""
        ...

    def answer(self, appeal: Appeal, answer_text: str) -> OutgoingMail:
        """The answer to an applicant who chose e-mail."""
        ...

    def reminder(self, appeal: Appeal, authority: str, recipients: tuple[str, ...],
                 due_at: datetime, sent_at: datetime) -> OutgoingMail:
        """[004: 10.2] the official's answer is late: a reminder to the same persons."""
        ...


@dataclass(frozen=True, slots=True)
class MailAttachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class IncomingMail:
    """One message of the contact centre's mailbox, read and decoded by the adapter.

    Everything but `uid`, `message_id` and `problem` is personal data: never logged.
    `problem` says why the message could not be read as a reply (malformed, too large);
    such a message is still processed once, and left for an operator.
    """

    uid: int
    message_id: str | None
    in_reply_to: tuple[str, ...]  # In-Reply-To, then References, newest first
    sender: str  # the From address, lower-cased
    subject: str
    text: str  # the reply's own text: plain part or HTML as text, quoted request removed
    received_at: datetime | None
    attachments: tuple[MailAttachment, ...] = ()
    skipped_attachments: int = 0  # not a document type the regulation names, or too big
    reference: str | None = None  # the appeal-id prefix the subject's [ГЛ-…] gives
    problem: str | None = None  # malformed | too_large


@dataclass(frozen=True, slots=True)
class MailBatch:
    uidvalidity: int
    messages: Sequence[IncomingMail]


class Mailbox(Protocol):
    """The contact centre's mailbox where officials' replies arrive [004: 10.2]."""

    name: str  # the folder read, for the processed-messages record

    async def fetch_after(self, uidvalidity: int | None, last_uid: int,
                          limit: int) -> MailBatch:
        """Messages with a UID above `last_uid` (all of them when the mailbox's UIDVALIDITY
        is not `uidvalidity`), oldest first, at most `limit`. Never deletes anything."""
        ...

    async def settle(self, uids: Sequence[int]) -> None:
        """Processed and committed: the mailbox may mark them (or delete them, if so
        configured)."""
        ...

    async def aclose(self) -> None: ...
