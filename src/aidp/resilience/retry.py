"""The retry schedule: a pure function of the policy, the attempt number and a random draw.

No clock and no sleeping here: the orchestrator turns a delay into ``next_attempt_at`` and waits
in its own loop, so tests check schedules without sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from aidp.core.states import AttemptOutcome
from aidp.model.workstream import RetryPolicy

__all__ = ["RETRYABLE_OUTCOMES", "retry_delay", "should_retry"]

# Outcomes worth another attempt. A failed acceptance check, a change outside the scope or a
# missing change is permanent: running the same tool the same way again will not fix it
# (the fix loop of the recovery issue feeds findings back instead). An unclassified non-zero
# exit of the tool is transient until detectors can tell better.
RETRYABLE_OUTCOMES = frozenset(
    {AttemptOutcome.FAILED_TRANSIENT, AttemptOutcome.TIMED_OUT, AttemptOutcome.CRASHED}
)


def should_retry(policy: RetryPolicy, outcome: AttemptOutcome, attempts_counted: int) -> bool:
    """True if a step whose ``attempts_counted``-th attempt ended with ``outcome`` gets another."""
    return outcome in RETRYABLE_OUTCOMES and attempts_counted < policy.max_attempts


def retry_delay(
    policy: RetryPolicy, attempts_counted: int, draw: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before attempt ``attempts_counted + 1``.

    ``initial_delay * factor ** (attempts_counted - 1)``, capped at ``max_delay``, then spread by
    ``± jitter`` (a fraction; ``draw`` returns a number in [0, 1)), or with ``jitter_mode: full``
    drawn uniformly from ``[0, base)``. Never negative.
    """
    exponent = max(attempts_counted - 1, 0)
    base = min(policy.initial_delay * policy.factor**exponent, policy.max_delay)
    if policy.jitter_mode == "full":
        return base * draw()
    spread = base * policy.jitter * (2.0 * draw() - 1.0)
    return max(0.0, base + spread)
