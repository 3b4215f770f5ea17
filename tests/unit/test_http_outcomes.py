"""One rule book for what an HTTP failure means, shared by the ПОС and «Дело» adapters."""

from __future__ import annotations

import httpx
import pytest

from adapters.http_outcomes import Verdict, status_outcome, status_verdict, transport_outcome
from outbox import Ambiguous, Permanent, Transient


@pytest.mark.parametrize(("status", "write", "verdict"), [
    (502, True, Verdict.AMBIGUOUS), (504, True, Verdict.AMBIGUOUS),
    (502, False, Verdict.TRANSIENT), (504, False, Verdict.TRANSIENT),
    (500, True, Verdict.TRANSIENT), (503, True, Verdict.TRANSIENT),
    (408, True, Verdict.TRANSIENT), (429, True, Verdict.TRANSIENT),
    (400, True, Verdict.PERMANENT), (401, False, Verdict.PERMANENT),
    (404, False, Verdict.PERMANENT), (409, True, Verdict.PERMANENT),
    (422, True, Verdict.PERMANENT), (302, False, Verdict.PERMANENT),
])
def test_status_verdicts(status: int, write: bool, verdict: Verdict) -> None:
    assert status_verdict(status, write=write) is verdict


def test_a_success_is_not_a_failure() -> None:
    with pytest.raises(ValueError, match="success"):
        status_verdict(204, write=True)


@pytest.mark.parametrize("status", [408, 429, 503, 502])
def test_retry_after_is_honoured_whatever_the_verdict(status: int) -> None:
    outcome = status_outcome(httpx.Response(status, headers={"Retry-After": "12"}), "x op",
                             write=True)
    assert isinstance(outcome, Transient)
    assert outcome.retry_after == 12.0


def test_permanent_uses_the_adapters_wording_and_never_the_body() -> None:
    response = httpx.Response(400, text="Иванова Мария, +79161234567")
    assert status_outcome(response, "x op", write=True).reason == "x op: refused (HTTP 400)"
    assert status_outcome(response, "x op", write=True, refused="mine").reason == "mine"


@pytest.mark.parametrize(("failure", "write", "outcome"), [
    (httpx.ConnectError("refused"), True, Transient),
    (httpx.ConnectTimeout("connect"), True, Transient),
    (httpx.PoolTimeout("pool"), True, Transient),
    (httpx.ReadTimeout("read"), True, Ambiguous),
    (httpx.WriteTimeout("write"), True, Ambiguous),
    (httpx.ReadError("reset"), True, Ambiguous),
    (httpx.RemoteProtocolError("disconnected"), True, Ambiguous),
    (httpx.ReadTimeout("read"), False, Transient),
    (httpx.ReadError("reset"), False, Transient),
])
def test_transport_failures(failure: httpx.HTTPError, write: bool,
                            outcome: type[Transient]) -> None:
    got = transport_outcome(failure, "x op", write=write)
    assert type(got) is outcome
    assert type(failure).__name__ in got.reason
    assert not isinstance(got, Permanent)
