"""The retry schedule: a pure function of the policy, the attempt number and a random draw.

No clock and no sleeping here: the orchestrator turns a delay into ``next_attempt_at`` and waits
in its own loop, so tests check schedules without sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from aidp.model.workstream import RetryPolicy

__all__ = ["retry_delay"]


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
