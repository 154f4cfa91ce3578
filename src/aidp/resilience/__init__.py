"""Recovery policies: the retry schedule and the circuit breaker (compensations come later)."""

from __future__ import annotations

from aidp.resilience.breaker import (
    Admission,
    BreakerPolicy,
    BreakerSnapshot,
    BreakerState,
)
from aidp.resilience.retry import RETRYABLE_OUTCOMES, retry_delay, should_retry

__all__ = [
    "RETRYABLE_OUTCOMES",
    "Admission",
    "BreakerPolicy",
    "BreakerSnapshot",
    "BreakerState",
    "retry_delay",
    "should_retry",
]
