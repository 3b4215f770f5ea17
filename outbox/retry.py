"""Retry policy: what happens to a row after its handler failed.

Each action declares its policy where its handler is registered (see `outbox.handlers`),
the way arq declares `max_tries` beside the job function. The decision rules:

- `Permanent` → dead letter at once, with the handler's reason.
- `Transient` / `Ambiguous` / a handler timeout / any other exception → retry after the
  policy's wait (tenacity strategy; exponential with jitter and a cap by default), never
  sooner than the remote's `Retry-After`; dead letter once the attempts or the age of the
  retry window run out.

Reasons end up in the table and in the admin API. An adapter's `reason` is written by us
and must hold no personal data; an unexpected exception's text could (a remote's error
body echoing an applicant's name), so only its type and where it was raised are kept.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field

import tenacity
from tenacity.wait import wait_base

from outbox.errors import Permanent, Transient


def default_wait() -> wait_base:
    """1 s, 2 s, 4 s … capped at 5 minutes, plus up to 1 s of jitter against herds."""
    return tenacity.wait_exponential_jitter(initial=1.0, exp_base=2.0, max=300.0, jitter=1.0)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try one action. `wait` is any tenacity wait strategy."""

    max_attempts: int = 10
    # Seconds from enqueue (or the last re-drive) after which a failure is final.
    max_age_s: float | None = 3 * 24 * 3600.0
    wait: wait_base = field(default_factory=default_wait)
    # An attempt running longer is abandoned and counted as ambiguous.
    timeout_s: float | None = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before the next attempt after `attempt` failed."""
        state = tenacity.RetryCallState(tenacity.AsyncRetrying(), fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        wait = float(self.wait(state))
        if retry_after is not None and retry_after > wait:
            wait = float(retry_after)
        return max(0.0, wait)


DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class RetryAt:
    at: float
    delay: float
    reason: str


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


Decision = RetryAt | GiveUp


def describe(error: BaseException) -> str:
    """A reason safe to store and log: the outcome's own reason, or type and origin only."""
    if isinstance(error, Transient | Permanent):
        return error.reason
    if isinstance(error, TimeoutError):
        return "handler timed out (effect unknown)"
    name = type(error).__qualname__
    module = type(error).__module__
    if module not in ("builtins", "__main__"):
        name = f"{module}.{name}"
    parts = [f"unexpected {name}"]
    if isinstance(error, OSError) and error.errno is not None:
        parts.append(f"errno {error.errno}")
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        last = frames[-1]
        parts.append(f"at {os.path.basename(last.filename)}:{last.lineno}")
    return " ".join(parts)


def decide(
    policy: RetryPolicy,
    error: BaseException,
    *,
    attempt: int,
    window_start: float,
    now: float,
) -> Decision:
    """Retry or give up after `attempt` failed with `error`."""
    reason = describe(error)
    if isinstance(error, Permanent):
        return GiveUp(f"permanent: {reason}")
    if attempt >= policy.max_attempts:
        return GiveUp(f"gave up after {attempt} attempts: {reason}")
    retry_after = error.retry_after if isinstance(error, Transient) else None
    delay = policy.delay(attempt, retry_after)
    if policy.max_age_s is not None and now + delay - window_start > policy.max_age_s:
        limit = f"{policy.max_age_s:.0f} s"
        return GiveUp(f"gave up: a retry would pass the {limit} age limit: {reason}")
    return RetryAt(at=now + delay, delay=delay, reason=reason)
