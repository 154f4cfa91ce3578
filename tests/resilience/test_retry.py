"""The retry schedule: pure, no sleeping (the retry decision is tested in test_recovery)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aidp.model.workstream import RetryPolicy
from aidp.resilience.retry import retry_delay


def mid() -> float:
    return 0.5  # 2 * 0.5 - 1 == 0: no spread


def policy(**kw: object) -> RetryPolicy:
    return RetryPolicy.model_validate(kw)


def test_exponential_schedule() -> None:
    """Delay n is initial_delay * factor**(n-1) while under the cap."""
    p = policy(max_attempts=10, initial_delay=0.5, factor=3, max_delay=1000)
    assert [retry_delay(p, n, mid) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 13.5]


def test_attempt_zero_uses_the_initial_delay() -> None:
    """attempts_counted 0 (never negative exponent) waits the initial delay."""
    assert retry_delay(policy(initial_delay=2.0), 0, mid) == 2.0


def test_delay_is_capped() -> None:
    """No delay exceeds max_delay before jitter."""
    p = policy(initial_delay=1, factor=10, max_delay=5)
    assert [retry_delay(p, n, mid) for n in (1, 2, 3, 50)] == [1.0, 5.0, 5.0, 5.0]


def test_durations_accept_strings() -> None:
    """Policy delays given as '500ms' and '1m' are seconds."""
    p = policy(initial_delay="500ms", max_delay="1m", factor=100)
    assert retry_delay(p, 1, mid) == 0.5
    assert retry_delay(p, 3, mid) == 60.0


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 7.5), (0.5, 10.0), (0.75, 11.25),
                                                (0.999999, 12.5)])
def test_jitter_spreads_plus_minus(draw: float, expected: float) -> None:
    """jitter 0.25 spreads a 10 s delay over [7.5, 12.5) following the injected draw."""
    p = policy(initial_delay=10, jitter=0.25)
    assert retry_delay(p, 1, lambda: draw) == pytest.approx(expected, abs=1e-4)


def test_jitter_applies_after_the_cap() -> None:
    """The cap applies to the base; jitter may take the delay up to max_delay * (1 + jitter)."""
    p = policy(initial_delay=100, max_delay=10, jitter=0.5)
    assert retry_delay(p, 1, lambda: 0.9999999) == pytest.approx(15.0, abs=1e-4)


def test_full_jitter_never_negative() -> None:
    """jitter 1.0 with the lowest draw gives 0, never a negative delay."""
    assert retry_delay(policy(initial_delay=3, jitter=1.0), 1, lambda: 0.0) == 0.0


def test_default_draw_is_random_within_bounds() -> None:
    """Without an injected draw the delay still stays within the jitter bounds."""
    p = policy(initial_delay=4, jitter=0.5)
    for _ in range(50):
        assert 2.0 <= retry_delay(p, 1) <= 6.0


@given(
    initial=st.floats(0, 1000, allow_nan=False),
    factor=st.floats(1, 100, allow_nan=False),
    max_delay=st.floats(0, 1000, allow_nan=False),
    jitter=st.floats(0, 1, allow_nan=False),
    attempts=st.integers(0, 100),
    draw=st.floats(0, 1, exclude_max=True, allow_nan=False),
)
def test_delay_within_bounds(initial: float, factor: float, max_delay: float, jitter: float,
                             attempts: int, draw: float) -> None:
    """Every delay lies in [0, max_delay * (1 + jitter)]."""
    p = policy(initial_delay=initial, factor=factor, max_delay=max_delay, jitter=jitter)
    delay = retry_delay(p, attempts, lambda: draw)
    assert 0.0 <= delay <= max_delay * (1 + jitter) * (1 + 1e-12)
