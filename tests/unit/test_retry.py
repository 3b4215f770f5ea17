"""Retry policy: when a failed row is tried again, and when it becomes a dead letter."""

from __future__ import annotations

import tenacity

from outbox import Ambiguous, GiveUp, Permanent, RetryAt, RetryPolicy, Transient, decide, describe

NOW = 1_000_000.0


def _decide(policy: RetryPolicy, error: BaseException, attempt: int, age: float = 0.0):
    return decide(policy, error, attempt=attempt, window_start=NOW - age, now=NOW)


def test_permanent_error_is_dead_lettered_at_once_with_its_reason() -> None:
    decision = _decide(RetryPolicy(max_attempts=10), Permanent("422 category not allowed"), 1)
    assert isinstance(decision, GiveUp)
    assert "422 category not allowed" in decision.reason


def test_transient_errors_back_off_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=100, wait=tenacity.wait_exponential(multiplier=1, max=8))
    delays = []
    for attempt in range(1, 7):
        decision = _decide(policy, Transient("503"), attempt)
        assert isinstance(decision, RetryAt)
        assert decision.at == NOW + decision.delay
        delays.append(decision.delay)
    assert delays == [1, 2, 4, 8, 8, 8]


def test_default_wait_is_exponential_with_bounded_jitter() -> None:
    policy = RetryPolicy(max_attempts=100)
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0)]:
        for _ in range(20):
            delay = policy.delay(attempt)
            assert base <= delay <= base + 1.0
    assert all(policy.delay(30) <= 300.0 for _ in range(20))


def test_retry_after_is_a_floor_not_a_ceiling() -> None:
    policy = RetryPolicy(max_attempts=100, wait=tenacity.wait_exponential(multiplier=1, max=60))
    slow = _decide(policy, Transient("429", retry_after=30.0), 1)
    assert isinstance(slow, RetryAt) and slow.delay == 30.0
    fast = _decide(policy, Transient("429", retry_after=0.5), 3)
    assert isinstance(fast, RetryAt) and fast.delay == 4.0


def test_ambiguous_outcome_is_retried_like_a_transient_one() -> None:
    decision = _decide(RetryPolicy(), Ambiguous("response lost"), 1)
    assert isinstance(decision, RetryAt)
    assert decision.reason == "response lost"


def test_gives_up_after_max_attempts_with_the_last_reason() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert isinstance(_decide(policy, Transient("503"), 2), RetryAt)
    decision = _decide(policy, Transient("503"), 3)
    assert isinstance(decision, GiveUp)
    assert "3 attempts" in decision.reason and "503" in decision.reason


def test_gives_up_when_a_retry_would_pass_the_age_limit() -> None:
    policy = RetryPolicy(
        max_attempts=100, max_age_s=3600, wait=tenacity.wait_fixed(600)
    )
    assert isinstance(_decide(policy, Transient("503"), 1, age=2000), RetryAt)
    decision = _decide(policy, Transient("503"), 2, age=3300)
    assert isinstance(decision, GiveUp)
    assert "age limit" in decision.reason


def test_unknown_exception_is_transient_and_its_text_is_not_kept() -> None:
    try:
        raise ValueError("Иванов Иван Иванович, +7 916 123-45-67")
    except ValueError as exc:
        error = exc
    decision = _decide(RetryPolicy(), error, 1)
    assert isinstance(decision, RetryAt)
    assert "ValueError" in decision.reason
    assert "Иванов" not in decision.reason
    assert "916" not in decision.reason
    assert "test_retry.py:" in decision.reason


def test_os_errors_keep_their_errno_only() -> None:
    reason = describe(ConnectionRefusedError(111, "refused by host secret.example"))
    assert "ConnectionRefusedError" in reason and "errno 111" in reason
    assert "secret" not in reason


def test_a_timeout_is_reported_as_an_unknown_effect() -> None:
    assert "effect unknown" in describe(TimeoutError())


def test_policy_needs_at_least_one_attempt() -> None:
    try:
        RetryPolicy(max_attempts=0)
    except ValueError:
        return
    raise AssertionError("max_attempts=0 accepted")
