"""Recovery policies: the retry schedule and the circuit breaker (compensations come later)."""

from __future__ import annotations

from aidp.resilience.breaker import (
    Admission,
    BreakerPolicy,
    BreakerSnapshot,
    BreakerState,
)
from aidp.resilience.retry import retry_delay

__all__ = [
    "Admission",
    "BreakerPolicy",
    "BreakerSnapshot",
    "BreakerState",
    "retry_delay",
]
