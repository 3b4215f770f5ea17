"""The gateway's tables. The outbox table lives in `outbox.schema`; migrations cover both."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from gateway.storage.types import UTCDateTime

metadata = MetaData()

_BigId = BigInteger().with_variant(Integer, "sqlite")

appeals = Table(
    "appeals",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("hotline", String(32), nullable=False),
    Column("journal_id", String(128), nullable=False),
    Column("idempotency_key", String(200), nullable=True, unique=True),
    # sha256 of the canonical intake body: a repeat with other content is a conflict.
    Column("content_hash", String(64), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("operator", String(200), nullable=False),
    # Personal data (152-ФЗ): applicant stays in this column and is purged after retention.
    Column("applicant", JSON, nullable=False),
    Column("problem_address", Text, nullable=True),
    Column("topic", String(200), nullable=False),
    Column("summary", Text, nullable=False),
    Column("repeat", Boolean, nullable=False),
    Column("urgency", String(16), nullable=False),
    Column("answer_channel", String(16), nullable=True),
    Column("informational", Boolean, nullable=False),
    Column("status", String(32), nullable=False),
    Column("route", JSON, nullable=False),
    Column("route_system", String(16), nullable=False),
    Column("executor", String(300), nullable=False),
    Column("due_at", UTCDateTime, nullable=True),
    Column("feedback_due_at", UTCDateTime, nullable=True),
    Column("request_due_at", UTCDateTime, nullable=True),
    # [004: 10.2–10.3] when the first request went out, and the late answer's reminder.
    Column("request_sent_at", UTCDateTime, nullable=True),
    Column("request_reminded_at", UTCDateTime, nullable=True),
    Column("overdue", Boolean, nullable=False, default=False),
    Column("external_system", String(16), nullable=True),
    Column("external_id", String(64), nullable=True),
    Column("external_number", String(64), nullable=True),
    Column("external_stage", String(64), nullable=True),
    Column("answer_text", Text, nullable=True),
    Column("answer_ready_at", UTCDateTime, nullable=True),
    # SLA watch: when the "interim answer due" reminder went out [002: 2.8.10].
    Column("interim_reminded_at", UTCDateTime, nullable=True),
    # Callbacks [001: 13]: failed tries so far, when the next one is due, and the flag
    # raised for the supervisor after the last allowed try.
    Column("callback_attempts", Integer, nullable=False, default=0),
    Column("next_callback_at", UTCDateTime, nullable=True),
    Column("needs_supervisor", Boolean, nullable=False, default=False),
    Column("delivered_at", UTCDateTime, nullable=True),
    Column("delivery_channel", String(16), nullable=True),
    # [001: 13] the latest moment of the next callback try; a new series after a reschedule.
    Column("callback_due_at", UTCDateTime, nullable=True),
    Column("callbacks_from", UTCDateTime, nullable=True),
    # Missed deadlines besides `overdue` (the answer's), each flagged once and counted.
    Column("feedback_overdue", Boolean, nullable=False, default=False),
    Column("request_overdue", Boolean, nullable=False, default=False),
    Column("registered_late", Boolean, nullable=False, default=False),
    Column("callback_late", Boolean, nullable=False, default=False),
    # [002: 2.8.10] the last interim answer given and the date it promised.
    Column("interim_given_at", UTCDateTime, nullable=True),
    Column("interim_expected_at", UTCDateTime, nullable=True),
    # The journal's own fields [001: appendix 2]; the comment may hold personal data.
    Column("consultation_outcome", String(32), nullable=True),
    Column("review_result", String(32), nullable=True),
    Column("journal_comment", Text, nullable=True),
    # A supervisor's reason (may name people) and how often the appeal was re-routed.
    Column("resolution", Text, nullable=True),
    Column("reroutes", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("version", Integer, nullable=False, default=1),
    UniqueConstraint("hotline", "journal_id", name="uq_appeals_hotline_journal"),
    Index("ix_appeals_status", "status"),
    Index("ix_appeals_updated", "updated_at", "id"),
    Index("ix_appeals_external", "external_system", "external_id"),
    Index("ix_appeals_due", "due_at"),
    # The SLA sweep finds each kind of missed deadline by its own due column.
    Index("ix_appeals_feedback_due", "feedback_due_at"),
    Index("ix_appeals_request_due", "request_due_at"),
    Index("ix_appeals_callback_due", "callback_due_at"),
)

appeal_status_history = Table(
    "appeal_status_history",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("appeal_id", String(36), ForeignKey("appeals.id"), nullable=False),
    Column("status", String(32), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("source", String(32), nullable=False),
    Column("note", Text, nullable=True),  # no personal data
    Index("ix_history_appeal", "appeal_id", "id"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("appeal_id", String(36), ForeignKey("appeals.id"), nullable=False),
    Column("channel", String(16), nullable=False),
    # delivered | no_answer | busy | unreachable
    Column("outcome", String(16), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("by", String(200), nullable=True),
    Column("source", String(16), nullable=False),  # gateway | pos | delo | email
    Column("recorded_at", UTCDateTime, nullable=False),
    Index("ix_deliveries_appeal", "appeal_id", "id"),
)

poller_cursors = Table(
    "poller_cursors",
    metadata,
    Column("system", String(32), primary_key=True),
    Column("cursor", Text, nullable=True),
    Column("last_success_at", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),  # no personal data
    Column("last_error_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(64), nullable=False),  # a role or a component, never a person's name
    Column("action", String(64), nullable=False),
    Column("appeal_id", String(36), nullable=True),
    Column("detail", JSON, nullable=True),  # no personal data
    Index("ix_audit_appeal", "appeal_id", "id"),
    Index("ix_audit_at", "at"),
)

# [001: appendix 1] the phone exchange's call records (`gateway pbx import`), one row per
# CDR line; the CDR's own unique id makes a re-import a no-op.
pbx_calls = Table(
    "pbx_calls",
    metadata,
    Column("uniqueid", String(150), primary_key=True),
    Column("source", String(16), nullable=False),  # asterisk | freeswitch
    Column("hotline", String(32), nullable=False),
    Column("direction", String(8), nullable=False),  # in | out | internal
    # Personal data (152-ФЗ): the caller's number, kept only to call back [001: 14].
    Column("caller", String(64), nullable=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("answered", Boolean, nullable=False),
    Column("billsec", Integer, nullable=False),
    Column("disposition", String(32), nullable=False),
    Column("imported_at", UTCDateTime, nullable=False),
    Index("ix_pbx_calls_hotline_started", "hotline", "started_at"),
)

# Scheduled report sends [001: 19]: the unique key is what lets one replica, once, enqueue
# the e-mail of a hotline's week, however many replicas or restarts see the hour come.
report_sends = Table(
    "report_sends",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("hotline", String(32), nullable=False),
    Column("period", String(32), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("enqueued_at", UTCDateTime, nullable=False),
    Column("late", Boolean, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    UniqueConstraint("kind", "hotline", "period", name="uq_report_sends_period"),
)

# Letters sent to officials, by Message-ID: a reply's In-Reply-To/References find them.
mail_letters = Table(
    "mail_letters",
    metadata,
    Column("message_id", String(250), primary_key=True),
    Column("appeal_id", String(36), ForeignKey("appeals.id"), nullable=False),
    Column("authority", String(300), nullable=False),
    Column("recipients", JSON, nullable=False),  # personal data
    Column("kind", String(16), nullable=False),  # request | reminder
    Column("sent_at", UTCDateTime, nullable=False),
    Index("ix_mail_letters_appeal", "appeal_id"),
)

# Every message of the mailbox processed once: by UID within its UIDVALIDITY (RFC 3501).
mail_seen = Table(
    "mail_seen",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("mailbox", String(200), nullable=False),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("message_id", String(250), nullable=True),
    Column("outcome", String(32), nullable=False),  # applied | unmatched | duplicate
    Column("appeal_id", String(36), nullable=True),
    Column("seen_at", UTCDateTime, nullable=False),
    UniqueConstraint("mailbox", "uidvalidity", "uid", name="uq_mail_seen_uid"),
    Index("ix_mail_seen_message_id", "message_id"),
)

# Replies left for an operator (personal data: sender, subject, text).
mail_unmatched = Table(
    "mail_unmatched",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("sender", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("appeal_id", String(36), nullable=True),  # the appeal it seemed to answer
    Column("assigned_to", String(36), nullable=True),
    Column("assigned_at", UTCDateTime, nullable=True),
    Index("ix_mail_unmatched_open", "assigned_to", "received_at"),
)

# Attachments of officials' replies (002 4.5), kept in the database, size-capped.
mail_attachments = Table(
    "mail_attachments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("appeal_id", String(36), nullable=True),
    Column("unmatched_id", String(36), nullable=True),
    Column("filename", Text, nullable=False),
    Column("content_type", String(200), nullable=False),
    Column("size", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Index("ix_mail_attachments_appeal", "appeal_id"),
    Index("ix_mail_attachments_unmatched", "unmatched_id"),
)

# [002: 2.8.10] interim answers given to applicants.
interim_answers = Table(
    "interim_answers",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("appeal_id", String(36), ForeignKey("appeals.id"), nullable=False),
    Column("reason", Text, nullable=False),  # may hold personal data
    Column("expected_at", UTCDateTime, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("by", String(200), nullable=True),
    Column("recorded_at", UTCDateTime, nullable=False),
    Index("ix_interim_appeal", "appeal_id", "id"),
)

# Missed calls and voicemail to call back [001: 12–14]; phone and voicemail are personal data.
callback_tasks = Table(
    "callback_tasks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("hotline", String(32), nullable=False),
    Column("phone", String(32), nullable=False),
    Column("missed_at", UTCDateTime, nullable=False),
    Column("voicemail", Text, nullable=True),
    Column("due_at", UTCDateTime, nullable=False),
    Column("state", String(16), nullable=False),
    Column("tries", JSON, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("next_attempt_by", UTCDateTime, nullable=True),
    Column("late", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("hotline", "phone", "missed_at", name="uq_callback_tasks_missed"),
    Index("ix_callback_tasks_state", "state", "next_attempt_by"),
)
