"""Client-side rate limits: token buckets on requests and tokens, with a fake clock."""

from __future__ import annotations

import threading

import pytest

from aidp.config import RateLimit
from aidp.tools.ratelimit import RateLimiter, TokenBucket, limiter_for, reset_limiters


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_refills_continuously_up_to_capacity() -> None:
    """A bucket of N per minute refills N/60 per second and never exceeds N."""
    bucket = TokenBucket.per_minute(60, now_s=0.0)
    bucket.take(60)
    assert bucket.wait_s(1, now_s=0.0) == pytest.approx(1.0)
    assert bucket.wait_s(1, now_s=0.5) == pytest.approx(0.5)
    assert bucket.wait_s(30, now_s=10.0) == pytest.approx(20.0)
    bucket.refill(1000.0)
    assert bucket.level == 60


def test_requests_per_minute() -> None:
    """60 requests/min: a burst of 60 passes, the 61st waits one second."""
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=60, clock=clock)
    assert all(limiter.try_acquire() == 0.0 for _ in range(60))
    assert limiter.try_acquire() == pytest.approx(1.0)
    clock.now += 1.0
    assert limiter.try_acquire() == 0.0


def test_tokens_per_minute_and_settle() -> None:
    """Tokens are reserved by estimate and settled by real usage; debt delays the next call."""
    clock = FakeClock()
    limiter = RateLimiter(tokens_per_minute=6000, clock=clock)
    assert limiter.try_acquire(1000) == 0.0
    limiter.settle(4000)  # the request really used 5000
    assert limiter.try_acquire(2000) == pytest.approx(10.0)  # 1000 left, 100 tokens/s
    clock.now += 10.0
    assert limiter.try_acquire(2000) == 0.0
    limiter.settle(-2000)  # gave it all back
    assert limiter.try_acquire(2000) == 0.0


def test_oversized_request_waits_only_for_a_full_bucket() -> None:
    """A request estimated above the whole per-minute budget waits for a full bucket, not
    forever."""
    clock = FakeClock()
    limiter = RateLimiter(tokens_per_minute=600, clock=clock)
    assert limiter.try_acquire(5000) == 0.0
    assert limiter.try_acquire(5000) == pytest.approx(60.0 + 4400 / 10)


def test_both_limits_take_the_longer_wait_and_take_nothing_while_waiting() -> None:
    """With both limits the longer wait wins; a refused request takes no request or token."""
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=1, tokens_per_minute=60, clock=clock)
    assert limiter.try_acquire(30) == 0.0
    assert limiter.try_acquire(30) == pytest.approx(60.0)
    clock.now += 60.0
    assert limiter.try_acquire(60) == 0.0


def test_unlimited_never_waits() -> None:
    """No limits configured: every request is admitted at once."""
    limiter = RateLimiter()
    assert limiter.unlimited
    assert all(limiter.try_acquire(10**9) == 0.0 for _ in range(1000))


def test_acquire_honours_cancel() -> None:
    """acquire waits on the cancel event: setting it ends the wait with False."""
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=1, clock=clock)
    assert limiter.acquire()
    cancel = threading.Event()
    waits: list[float] = []

    def on_wait(seconds: float) -> None:
        waits.append(seconds)
        cancel.set()

    assert limiter.acquire(cancel=cancel, on_wait=on_wait) is False
    assert waits == [pytest.approx(60.0)]


def test_registry_is_per_profile_and_follows_config() -> None:
    """limiter_for shares one limiter per profile name, and renews it when the limits change."""
    reset_limiters()
    try:
        one = limiter_for("gpt", RateLimit(requests_per_minute=5))
        assert limiter_for("gpt", RateLimit(requests_per_minute=5)) is one
        assert limiter_for("other", RateLimit(requests_per_minute=5)) is not one
        assert limiter_for("gpt", RateLimit(requests_per_minute=6)) is not one
    finally:
        reset_limiters()
