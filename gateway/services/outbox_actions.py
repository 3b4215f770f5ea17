"""Which outbox rows an appeal's events cause: the one table of (target, action) the gateway
uses, read by the unit of work when it commits."""

from __future__ import annotations

from gateway.domain import events as ev
from gateway.domain.appeal import Appeal, AppealStatus
from gateway.domain.route import TargetSystem
from outbox import NewMessage

POS_REGISTER = ("pos", "register")
DELO_REGISTER = ("delo", "register")
EMAIL_REQUEST = ("email", "request")
EMAIL_ANSWER = ("email", "answer")
EMAIL_REMINDER = ("email", "reminder")
POS_CONFIRM_DELIVERY = ("pos", "confirm_delivery")
DELO_CLOSE_CONTROL = ("delo", "close_control")

# Where a delivery recorded in the gateway must be reported back.
_CONFIRMATIONS = {"pos": POS_CONFIRM_DELIVERY, "delo": DELO_CLOSE_CONTROL}


def messages_for(appeal: Appeal, event: ev.Event) -> list[NewMessage]:
    if isinstance(event, ev.CallAccepted) and appeal.status is AppealStatus.ACCEPTED:
        return forwarding_messages(appeal)
    if isinstance(event, ev.Resolved) and event.action == "reroute":
        # A new registration on the new route, under keys of its own.
        return forwarding_messages(appeal, f":reroute:{event.reroutes}")
    if isinstance(event, ev.AnswerReady) and event.mail_to_applicant:
        return [_message(appeal.id, EMAIL_ANSWER, f"{appeal.id}:answer")]
    if isinstance(event, ev.RequestAnswerLate):
        # [004: 10.2] one reminder per authority and per term (an extension's new term,
        # once late, is reminded of again).
        due = event.due_at.isoformat()
        return [_message(appeal.id, EMAIL_REMINDER,
                         f"{appeal.id}:reminder:{target.authority}:{due}",
                         {"authority": target.authority, "due_at": due})
                for target in appeal.route.email]
    if isinstance(event, ev.Delivered) and event.confirm_in in _CONFIRMATIONS:
        kind = _CONFIRMATIONS[event.confirm_in]
        return [_message(appeal.id, kind, f"{appeal.id}:{kind[1]}", {
            "channel": event.channel, "delivered_at": event.delivered_at.isoformat()})]
    return []


def moot_keys(appeal: Appeal, event: ev.Event) -> list[str]:
    """Idempotency keys of rows an event makes moot: once the answer reached the applicant
    (or ПОС mailed it itself), the gateway's answer letter must neither go out nor, if it
    died, hold back the appeal's later rows (the ПОС confirmation behind it)."""
    # A delivery by the letter itself is that row finishing, not another way.
    delivered = isinstance(event, ev.Delivered) and event.source != "email"
    sent_by_pos = isinstance(event, ev.StatusChanged) and event.status is AppealStatus.ANSWER_SENT
    return [f"{appeal.id}:{EMAIL_ANSWER[1]}"] if delivered or sent_by_pos else []


def forwarding_messages(appeal: Appeal, round_key: str = "") -> list[NewMessage]:
    """The rows that forward a newly accepted (or re-routed) appeal to its target system."""
    route = appeal.route
    if route.system is TargetSystem.POS:
        return [_message(appeal.id, POS_REGISTER, appeal.id + round_key)]
    if route.system is TargetSystem.DELO:
        return [_message(appeal.id, DELO_REGISTER, appeal.id + round_key)]
    if route.system in (TargetSystem.EMAIL, TargetSystem.HEALTH):
        # [004: 10.1] one request to every competent authority, each retried on its own.
        return [
            _message(appeal.id, EMAIL_REQUEST,
                     f"{appeal.id}{round_key}:request:{target.authority}",
                     {"authority": target.authority})
            for target in route.email
        ]
    return []


def _message(
    appeal_id: str, kind: tuple[str, str], key: str, extra: dict[str, str] | None = None
) -> NewMessage:
    target, action = kind
    return NewMessage(
        ordering_key=appeal_id,
        target=target,
        action=action,
        payload={"appeal_id": appeal_id, **(extra or {})},
        idempotency_key=key,
    )
