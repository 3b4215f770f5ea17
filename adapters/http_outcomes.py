"""What an HTTP answer or a transport failure means to the outbox, the same for every adapter.

ПОС and «Дело» each decided this on their own and drifted apart (a proxy's 502 on a write
was Ambiguous for one and Transient for the other). The rules, in one place:

* 502/504 on a write, and a transport failure after the request may have left (read or
  write timeout, connection reset, no answer), are `Ambiguous`: a gateway in front of the
  remote says nothing about whether the write took effect, so the retry looks it up first.
* 408, 429, 503 and the other 5xx are `Transient`, honouring `Retry-After`; so is a
  failure before any byte left (connect refused or timed out, no free connection), and
  any transport failure of a read.
* Every other 3xx and 4xx is `Permanent`: repeating the same request changes nothing.

Adapters keep their own wording and their own special cases (a 401 that means an expired
session, a 409 with a contract error code) and ask here for everything else. Reasons name
the call and the status only: response bodies may quote applicants (152-ФЗ).
"""

from __future__ import annotations

from enum import Enum

import httpx

from adapters.retry_after import parse_retry_after
from outbox import Ambiguous, Permanent, Transient

# A gateway's "the upstream failed or did not answer in time": the write may have landed.
_GATEWAY_FAILURES = frozenset({502, 504})
_RETRYABLE_4XX = frozenset({408, 429})


class Verdict(Enum):
    TRANSIENT = "transient"
    AMBIGUOUS = "ambiguous"
    PERMANENT = "permanent"


def status_verdict(status: int, *, write: bool) -> Verdict:
    """The outcome class of a non-success status for a write or a read."""
    if 200 <= status < 300:
        raise ValueError(f"HTTP {status} is a success, not a failure")
    if write and status in _GATEWAY_FAILURES:
        return Verdict.AMBIGUOUS
    if status >= 500 or status in _RETRYABLE_4XX:
        return Verdict.TRANSIENT
    return Verdict.PERMANENT


def retry_after_of(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


def status_outcome(
    response: httpx.Response, what: str, *, write: bool, refused: str | None = None,
) -> Transient | Permanent:
    """The outcome of a failed answer; `refused` is the adapter's wording for Permanent."""
    status = response.status_code
    verdict = status_verdict(status, write=write)
    if verdict is Verdict.AMBIGUOUS:
        return Ambiguous(f"{what}: answered HTTP {status}; the write may have been applied",
                         retry_after_of(response))
    if verdict is Verdict.TRANSIENT:
        label = "throttled" if status in (429, 503) else "failed"
        return Transient(f"{what}: {label} (HTTP {status})", retry_after_of(response))
    return Permanent(refused or f"{what}: refused (HTTP {status})")


def not_sent(exc: httpx.HTTPError) -> bool:
    """Failures before any byte of the request left: repeating cannot duplicate anything."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def transport_outcome(exc: httpx.HTTPError, what: str, *, write: bool) -> Transient:
    """The outcome of a request that got no answer at all."""
    name = type(exc).__name__
    if not_sent(exc):
        return Transient(f"{what}: not sent ({name})")
    if write:
        return Ambiguous(f"{what}: sent, answer lost ({name}); may have been applied")
    return Transient(f"{what}: no answer ({name})")
