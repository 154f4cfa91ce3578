"""Recovery policies: the retry schedule (circuit breakers and compensations come later)."""

from __future__ import annotations

from aidp.resilience.retry import RETRYABLE_OUTCOMES, retry_delay, should_retry

__all__ = ["RETRYABLE_OUTCOMES", "retry_delay", "should_retry"]
