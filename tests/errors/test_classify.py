"""classify() and retry_after(): pure rules over findings."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aidp.errors import FailureClass, Finding, Severity, classify, retry_after

P, T, U = FailureClass.PERMANENT, FailureClass.TRANSIENT, FailureClass.UNKNOWN
E, W, I = Severity.ERROR, Severity.WARNING, Severity.INFO


def f(cls: FailureClass, severity: Severity = E, wait: float | None = None) -> Finding:
    return Finding("t", f"{cls.value} {severity.value}", cls, severity=severity,
                   retry_after=wait)


@pytest.mark.parametrize("findings, expected", [
    pytest.param([], U, id="none-is-unknown"),
    pytest.param([f(U)], U, id="only-unknown"),
    pytest.param([f(T)], T, id="transient"),
    pytest.param([f(P)], P, id="permanent"),
    pytest.param([f(T), f(P)], P, id="permanent-beats-transient"),
    pytest.param([f(U), f(T)], T, id="transient-beats-unknown"),
    pytest.param([f(P, W), f(T)], T, id="error-beats-warning"),
    pytest.param([f(P, W), f(U, W)], P, id="warnings-count-without-errors"),
    pytest.param([f(P, I)], U, id="info-never-counts"),
    pytest.param([f(P, I), f(T, W)], T, id="warning-over-info"),
])
def test_classify_rule(findings: list[Finding], expected: FailureClass) -> None:
    """Errors first (warnings only when there is no error, info never); then permanent over
    transient over unknown."""
    assert classify(findings) is expected


@pytest.mark.parametrize("waits, expected", [
    pytest.param([], None, id="no-findings"),
    pytest.param([None], None, id="nobody-asks"),
    pytest.param([1.5, None, 20.0, 3.0], 20.0, id="largest"),
    pytest.param([0.0], 0.0, id="zero"),
    pytest.param([-5.0, math.nan, math.inf, 2.0], 2.0, id="garbage-ignored"),
])
def test_retry_after_is_the_largest_sane_wait(waits: list[float | None],
                                              expected: float | None) -> None:
    """retry_after is the longest wait any finding asks for; negative, NaN, infinite ignored."""
    assert retry_after([f(T, wait=w) for w in waits]) == expected


findings_st = st.lists(st.builds(
    Finding, detector=st.text(max_size=5), message=st.text(max_size=20),
    failure_class=st.sampled_from(FailureClass), severity=st.sampled_from(Severity),
    retry_after=st.none() | st.floats(allow_nan=True)), max_size=8)


@given(findings_st)
def test_classify_is_order_free_and_total(findings: list[Finding]) -> None:
    """classify and retry_after never raise and do not depend on the findings' order."""
    assert classify(findings) is classify(list(reversed(findings)))
    assert retry_after(findings) == retry_after(list(reversed(findings)))
    wait = retry_after(findings)
    assert wait is None or (0 <= wait < math.inf)
