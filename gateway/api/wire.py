"""The JSON shapes the gateway's own API reads (contracts/gateway-api.md), checked by pydantic.

Unknown fields are refused: a misspelt field would otherwise be silently dropped, and
an operator's data would be lost without anyone noticing. Invisible characters are taken
out of every text before any check, and in what an operator fills in, a blank optional
field is an absent one (the contract: "A blank string is absent").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from gateway.domain.appeal import (
    AnswerChannel,
    AppealStatus,
    Applicant,
    ConsultationOutcome,
    DeliveryChannel,
    JournalEntry,
    OverdueKind,
    ReviewResult,
    Urgency,
)
from gateway.domain.intake import NewCall, without_invisible

# Largest id a BIGINT column holds; a larger one in a path or query is no row of ours.
MAX_ROW_ID = 2**63 - 1

Short = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]
Long = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]
Required128 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Required200 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _representable(value: datetime) -> datetime:
    """Refuses times that cannot be stored or compared in UTC (year 1 at +14:00, year 9999
    at -14:00); the value keeps its own offset."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None
    return value


Moment = Annotated[AwareDatetime, AfterValidator(_representable)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    # What an operator fills in: a blank optional field is an absent one.
    _blank_is_absent: ClassVar[bool] = False

    @field_validator("*", mode="before")
    @classmethod
    def _visible_text(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        value = without_invisible(value)
        if cls._blank_is_absent and not value.strip() and info.field_name is not None \
                and cls.model_fields[info.field_name].default is None:
            return None
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        # PostgreSQL cannot store U+0000 in text; no person types it either.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL (U+0000) characters")
        return value


class ApplicantIn(_Strict):
    _blank_is_absent = True

    last_name: Name = ""
    first_name: Name = ""
    middle_name: Name | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)] | None = None
    email: EmailStr | None = None
    postal_address: Long | None = None
    epgu_id: Annotated[int, Field(ge=1, le=10**15)] | None = None

    def to_domain(self) -> Applicant:
        return Applicant(
            last_name=self.last_name,
            first_name=self.first_name,
            middle_name=self.middle_name or None,
            phone=self.phone or None,
            email=str(self.email) if self.email else None,
            postal_address=self.postal_address or None,
            epgu_id=self.epgu_id,
        )


class CallIn(_Strict):
    """POST /api/v1/calls."""

    _blank_is_absent = True

    journal_id: Required128
    hotline: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    received_at: Moment
    operator: Required200
    applicant: ApplicantIn
    problem_address: Long | None = None
    topic: Required200
    summary: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
    repeat: bool = False
    urgency: Urgency = Urgency.CONTROL
    # Not said: the domain decides (by phone, unless the call is informational).
    answer_channel: AnswerChannel | None = None
    informational: bool = False
    # The journal's own fields [001: appendix 2], optional at intake.
    consultation_outcome: ConsultationOutcome | None = None
    review_result: ReviewResult | None = None
    comment: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None

    def to_command(self) -> NewCall:
        return NewCall(
            journal_id=self.journal_id,
            hotline=self.hotline,
            received_at=self.received_at,
            operator=self.operator,
            applicant=self.applicant.to_domain(),
            problem_address=self.problem_address,
            topic=self.topic,
            summary=self.summary,
            repeat=self.repeat,
            urgency=self.urgency,
            answer_channel=self.answer_channel,
            informational=self.informational,
            journal=JournalEntry(self.consultation_outcome, self.review_result, self.comment),
        )


class JournalPatchIn(_Strict):
    """PATCH /api/v1/calls/{id}: only the fields sent change."""

    _blank_is_absent = True

    consultation_outcome: ConsultationOutcome | None = None
    review_result: ReviewResult | None = None
    comment: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None

    def entry(self) -> JournalEntry:
        return JournalEntry(self.consultation_outcome, self.review_result, self.comment)


class InterimIn(_Strict):
    """POST /api/v1/calls/{id}/interim [002: 2.8.10]."""

    _blank_is_absent = True

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                             max_length=2000)]
    expected_at: Moment
    channel: AnswerChannel
    at: Moment | None = None
    by: Required200 | None = None


class MissedCallIn(_Strict):
    """POST /api/v1/missed-calls, one item [001: 12, 14]."""

    _blank_is_absent = True

    hotline: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    phone: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    at: Moment
    voicemail: Annotated[str, StringConstraints(strip_whitespace=True,
                                                max_length=4000)] | None = None


class MissedCallsIn(_Strict):
    """The bulk form: `{"items": [...]}`."""

    items: Annotated[list[MissedCallIn], Field(min_length=1, max_length=500)]


class CallbackAttemptIn(_Strict):
    """A try on a missed-call task: failed, or the caller reached (which closes it)."""

    _blank_is_absent = True

    channel: Literal["phone"] = "phone"
    outcome: Literal["no_answer", "busy", "unreachable", "reached"]
    at: Moment | None = None


class CallbacksQuery(_Strict):
    state: Literal["open"] = "open"
    limit: int = Field(default=100, ge=1, le=500)


class ResolveIn(_Strict):
    """POST /api/v1/calls/{id}/resolve (supervisor)."""

    _blank_is_absent = True

    action: Literal["close_unreachable", "reschedule", "reroute"]
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                             max_length=2000)]
    until: Moment | None = None
    topic: Short | None = None


class AttemptIn(_Strict):
    _blank_is_absent = True

    channel: Literal["phone"] = "phone"
    outcome: Literal["no_answer", "busy", "unreachable"]
    at: Moment | None = None


class DeliveryIn(_Strict):
    _blank_is_absent = True

    channel: DeliveryChannel
    delivered_at: Moment | None = None
    by: Required200 | None = None

    @field_validator("channel")
    @classmethod
    def _a_person_knows_the_channel(cls, value: DeliveryChannel) -> DeliveryChannel:
        # "unknown" is for target systems that report a delivery without saying how.
        if value is DeliveryChannel.UNKNOWN:
            raise ValueError("name the channel: phone, email, post or hand")
        return value


class ListQuery(_Strict):
    status: AppealStatus | None = None
    updated_since: AwareDatetime | None = None
    # One kind of missed deadline, or true/false for the answer's own.
    overdue: OverdueKind | bool | None = None
    flag: Literal["needs_supervisor", "rejected", "failed"] | None = None
    limit: int = Field(default=50, ge=1, le=500)
    # The cursors this API gives out are about 110 characters long.
    cursor: Annotated[str, StringConstraints(max_length=256)] | None = None

    @field_validator("updated_since")
    @classmethod
    def _representable_in_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range") from None


def field_errors(exc: ValidationError) -> dict[str, str]:
    """pydantic's errors as {"applicant.phone": "message"}, without echoing the input."""
    fields: dict[str, str] = {}
    for error in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in error["loc"]) or "body"
        fields.setdefault(loc, error["msg"])
    return fields


class OutboxQuery(_Strict):
    state: Literal["pending", "leased", "done", "dead"] | None = None
    target: Annotated[str, StringConstraints(max_length=32)] | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    after_id: int | None = Field(default=None, ge=0, le=MAX_ROW_ID)


class DeliveriesQuery(_Strict):
    state: Literal["ready"] = "ready"
    limit: int = Field(default=100, ge=1, le=500)


AnswerText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                              max_length=20000)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


class AnswerIn(_Strict):
    """POST /api/v1/calls/{id}/answer: an official's answer by phone, paper, fax [004: 10.2]."""

    _blank_is_absent = True

    text: AnswerText
    source: Literal["email", "phone", "paper", "fax", "other"]
    received_at: Moment | None = None
    by: Required200 | None = None


class ExtensionIn(_Strict):
    """POST /api/v1/calls/{id}/extension: the official's letter asking for more time."""

    _blank_is_absent = True

    until: Moment
    reason: Reason
    letter_ref: Required200 | None = None


class AssignIn(_Strict):
    call_id: Required128


class FoundInPos(_Strict):
    """POST /api/v1/calls/{id}/pos-record: the ПОС id a person found for a parked create."""

    pos_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                             max_length=32, pattern=r"^[0-9]+$")]
