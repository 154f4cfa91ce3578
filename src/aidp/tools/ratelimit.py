"""Client-side rate limiting per tool profile: token buckets on requests and on tokens.

A profile's ``rate_limit`` (``requests_per_minute``, ``tokens_per_minute``) becomes a
:class:`RateLimiter` holding up to two :class:`TokenBucket` s, each full at start and refilled
continuously (capacity per minute, so a burst of one minute's allowance is admitted at once).
Before a request the adapter asks for one request and its *estimated* tokens; after the answer
it :meth:`~RateLimiter.settle` s the difference with the tokens really used, so the token bucket
may go below zero and later requests wait for it to refill.

The buckets are pure: time comes from an injected clock (seconds, monotonic), and
:meth:`RateLimiter.try_acquire` only says how long to wait. :meth:`RateLimiter.acquire` waits
on a :class:`threading.Event`, so a cancellation ends the wait at once. :func:`limiter_for`
keeps one limiter per profile name for the whole process (steps running in parallel on one
profile share its limits).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from aidp.config import RateLimit

__all__ = ["Clock", "RateLimiter", "TokenBucket", "limiter_for", "reset_limiters"]

Clock = Callable[[], float]


@dataclass
class TokenBucket:
    """``capacity`` units, refilled at ``rate_per_s``; ``level`` may go negative (debt)."""

    capacity: float
    rate_per_s: float
    level: float
    updated_s: float

    def __post_init__(self) -> None:
        if self.capacity <= 0 or self.rate_per_s <= 0:
            raise ValueError("capacity and rate_per_s must be positive")

    @classmethod
    def per_minute(cls, amount: float, now_s: float) -> TokenBucket:
        """A full bucket of ``amount`` refilled at ``amount`` per minute."""
        return cls(capacity=amount, rate_per_s=amount / 60.0, level=amount, updated_s=now_s)

    def refill(self, now_s: float) -> None:
        """Add what flowed in since the last update (never above capacity)."""
        elapsed = max(0.0, now_s - self.updated_s)
        self.level = min(self.capacity, self.level + elapsed * self.rate_per_s)
        self.updated_s = max(self.updated_s, now_s)

    def wait_s(self, amount: float, now_s: float) -> float:
        """Seconds until ``amount`` (capped at capacity) is available; 0.0 if it is now."""
        self.refill(now_s)
        need = min(amount, self.capacity) - self.level
        return 0.0 if need <= 0 else need / self.rate_per_s

    def take(self, amount: float) -> None:
        """Remove ``amount`` (the level may go negative)."""
        self.level -= amount


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits of one profile; thread-safe.

    Args:
        requests_per_minute: None for no request limit.
        tokens_per_minute: None for no token limit.
        clock: monotonic seconds; injected in tests.
    """

    def __init__(self, requests_per_minute: int | None = None,
                 tokens_per_minute: int | None = None, *,
                 clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self.limits = RateLimit(requests_per_minute=requests_per_minute,
                                tokens_per_minute=tokens_per_minute)
        self._requests = (TokenBucket.per_minute(requests_per_minute, now)
                          if requests_per_minute else None)
        self._tokens = TokenBucket.per_minute(tokens_per_minute, now) if tokens_per_minute \
            else None

    @property
    def unlimited(self) -> bool:
        return self._requests is None and self._tokens is None

    def try_acquire(self, tokens: int = 0) -> float:
        """Take one request and ``tokens`` if both are available now and return 0.0; else take
        nothing and return the seconds to wait before asking again."""
        with self._lock:
            now = self._clock()
            waits = [bucket.wait_s(amount, now) for bucket, amount in
                     ((self._requests, 1), (self._tokens, tokens)) if bucket is not None]
            delay = max(waits, default=0.0)
            if delay > 0:
                return delay
            if self._requests is not None:
                self._requests.take(1)
            if self._tokens is not None:
                self._tokens.take(tokens)
            return 0.0

    def acquire(self, tokens: int = 0, *, cancel: threading.Event | None = None,
                on_wait: Callable[[float], None] | None = None) -> bool:
        """Wait until one request and ``tokens`` are admitted; False if ``cancel`` was set
        first. ``on_wait(seconds)`` is called before each wait (e.g. to log it)."""
        event = cancel if cancel is not None else threading.Event()
        while True:
            if event.is_set():
                return False
            delay = self.try_acquire(tokens)
            if delay <= 0:
                return True
            if on_wait is not None:
                on_wait(delay)
            if event.wait(delay):
                return False

    def settle(self, extra_tokens: int) -> None:
        """Correct the token bucket once the real usage is known (negative gives back)."""
        if self._tokens is None or extra_tokens == 0:
            return
        with self._lock:
            self._tokens.refill(self._clock())
            self._tokens.take(extra_tokens)
            self._tokens.level = min(self._tokens.level, self._tokens.capacity)


_registry: dict[str, RateLimiter] = {}
_registry_lock = threading.Lock()


def limiter_for(profile_name: str, limits: RateLimit, *,
                clock: Clock = time.monotonic) -> RateLimiter:
    """The process-wide limiter of a profile; a new one if its limits changed."""
    with _registry_lock:
        limiter = _registry.get(profile_name)
        if limiter is None or limiter.limits != limits:
            limiter = RateLimiter(limits.requests_per_minute, limits.tokens_per_minute,
                                  clock=clock)
            _registry[profile_name] = limiter
        return limiter


def reset_limiters() -> None:
    """Forget every profile's limiter (tests)."""
    with _registry_lock:
        _registry.clear()
