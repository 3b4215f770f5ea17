"""The transactional outbox: rows written with the state change that causes them, then
delivered at least once, in order per key, by dispatchers that may run in many replicas.

This is the package's public face; everything else imports from here, not from its
modules. `outbox.testing` (an in-memory store and a manual clock) is the one other public
module: test support, kept out of this namespace so production never loads it.
"""

from outbox.dialects import store_for
from outbox.dispatcher import Dispatcher, DispatcherSettings
from outbox.errors import Ambiguous, HandlerOutcome, Permanent, Transient
from outbox.handlers import Handler, Handlers, Registration
from outbox.leases import Lease
from outbox.messages import (
    Message,
    MessageRecord,
    NewMessage,
    OutboxStats,
    Settlement,
    Verdict,
)
from outbox.metrics import OutboxMetrics
from outbox.retry import Decision, GiveUp, RetryAt, RetryPolicy, decide, describe
from outbox.schema import State, metadata, outbox_messages
from outbox.sql_store import SqlOutboxStore
from outbox.store import OutboxStore

__all__ = [
    "Ambiguous",
    "Decision",
    "Dispatcher",
    "DispatcherSettings",
    "GiveUp",
    "Handler",
    "HandlerOutcome",
    "Handlers",
    "Lease",
    "Message",
    "MessageRecord",
    "NewMessage",
    "OutboxMetrics",
    "OutboxStats",
    "OutboxStore",
    "Permanent",
    "Registration",
    "RetryAt",
    "RetryPolicy",
    "Settlement",
    "SqlOutboxStore",
    "State",
    "Transient",
    "Verdict",
    "decide",
    "describe",
    "metadata",
    "outbox_messages",
    "store_for",
]
