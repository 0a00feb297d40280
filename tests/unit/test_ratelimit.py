"""The per-caller token bucket, on a clock the test moves by hand."""

from __future__ import annotations

import threading

import pytest

from copilot.ratelimit import RateLimited, RateLimitSettings, TokenBucketLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_granted_then_the_caller_waits_for_the_refill() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.try_acquire("alice") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.try_acquire("alice") == pytest.approx(0.5)
    clock.now += 0.25
    assert limiter.try_acquire("alice") == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.try_acquire("alice") == 0.0
    assert limiter.try_acquire("alice") == pytest.approx(0.5)


def test_refusals_take_no_token() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(rate=1.0, burst=1, clock=clock)
    assert limiter.try_acquire("alice") == 0.0
    for _ in range(10):
        assert limiter.try_acquire("alice") > 0
    clock.now += 1.0
    assert limiter.try_acquire("alice") == 0.0, "hammering while refused must not push the next call out"


def test_an_idle_caller_gets_no_more_than_the_burst() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(rate=10.0, burst=2, clock=clock)
    limiter.try_acquire("alice")
    clock.now += 3600
    assert [limiter.try_acquire("alice") == 0.0 for _ in range(3)] == [True, True, False]


def test_callers_have_separate_buckets() -> None:
    limiter = TokenBucketLimiter(rate=1.0, burst=1, clock=Clock())
    assert limiter.try_acquire("alice") == 0.0
    assert limiter.try_acquire("alice") > 0
    assert limiter.try_acquire("bob") == 0.0


def test_the_refusal_says_when_to_retry() -> None:
    limiter = TokenBucketLimiter(rate=4.0, burst=1, clock=Clock())
    limiter.check("alice")
    with pytest.raises(RateLimited) as info:
        limiter.check("alice")
    assert info.value.retry_after_s == pytest.approx(0.25)
    assert "retry in 0.250 s" in str(info.value)
    assert "4 requests per second" in str(info.value)


def test_memory_is_bounded_by_dropping_the_least_recently_seen_caller() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(rate=1.0, burst=1, max_callers=3, clock=clock)
    for name in ["a", "b", "c"]:
        limiter.try_acquire(name)
    limiter.try_acquire("a")  # a is now the most recently seen
    limiter.try_acquire("d")
    assert len(limiter) == 3
    # b was dropped, so it starts again with a full bucket; a kept its empty one.
    assert limiter.try_acquire("b") == 0.0
    assert limiter.try_acquire("a") > 0


def test_concurrent_callers_get_exactly_the_burst() -> None:
    limiter = TokenBucketLimiter(rate=1e-6, burst=100, clock=Clock())
    granted = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(50):
            if limiter.try_acquire("alice") == 0.0:
                with lock:
                    granted.append(1)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 100


def test_zero_rate_in_settings_means_no_limiter() -> None:
    assert TokenBucketLimiter.from_settings(RateLimitSettings(requests_per_second=0)) is None
    limiter = TokenBucketLimiter.from_settings(RateLimitSettings(requests_per_second=5, burst=7))
    assert limiter is not None and (limiter.rate, limiter.burst) == (5, 7)
    with pytest.raises(ValueError):
        TokenBucketLimiter(rate=0, burst=1)
