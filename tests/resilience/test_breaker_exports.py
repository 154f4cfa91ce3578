"""The public API of the circuit breaker (pure and DB-backed): the export lists are pinned."""

from __future__ import annotations

import aidp.resilience.breaker
import aidp.state.breakers

PURE = {
    "BREAKER_TRANSITIONS", "DEFAULT_PROBE_TIMEOUT_S", "Admission", "BreakerCounters",
    "BreakerPolicy", "BreakerSnapshot", "BreakerState", "InFlight", "admit", "advance",
    "check_transition", "record", "release", "reset",
}
STORED = {"BreakerBook", "BreakerRow", "Permit", "breaker_keys", "endpoint_key", "profile_key"}


def test_breaker_export_lists_are_pinned() -> None:
    """aidp.resilience.breaker and aidp.state.breakers export exactly the documented names,
    and every one of them exists."""
    for module, expected in ((aidp.resilience.breaker, PURE), (aidp.state.breakers, STORED)):
        assert set(module.__all__) == expected
        for name in expected:
            assert hasattr(module, name), name
