"""What each tool profile's finished attempts add up to, and the figures routing reads from them.

The store sums the attempts of every run in the database per (profile, capability, language)
(:meth:`aidp.state.store.Store.profile_stats`); this module is pure: it holds those sums
(:class:`ProfileStats`), merges them into wider scopes and says which scope is trustworthy for a
step (:func:`figures_for`). ``aidp tools stats`` shows the sums, and a ``capability`` step with
``select: best_success`` or ``select: cheapest_passing`` is routed by them
(:func:`aidp.tools.registry.choose_profile`).

What counts:

* **finished**: an attempt with an outcome that ran a tool -- not interrupted (aidp died under
  it), not cancelled, not refused before it started (``budget_exceeded``, ``circuit_open``).
* **succeeded**: outcome ``succeeded``; **success rate** = succeeded / finished.
* **fix-loop length**: fix and escalation attempts (kinds ``fix``, ``escalate``) per step the
  profile worked on: 0 when its first tries pass or fail outright, 1.5 when a step needed one
  and the next two fix attempts.
* **cost** per attempt (US dollars), **latency** per attempt (the milliseconds the model
  gateway waited for the provider; 0 for tools without a gateway) and **duration** per attempt
  (seconds from start to finish); **cost per success** = all the cost / succeeded attempts (what
  a passing result costs, failures included).
* **wins / losses**: best-of-N verdicts (``won`` / ``lost``) of the profile's candidates.

Scopes: the figures for ``code_edit`` in ``python`` are the attempts of steps that asked for
exactly that; when there are fewer than :data:`MIN_SAMPLES` of them, the profile's figures for
``code_edit`` in any language stand in, then all its finished attempts (steps that named the
profile with ``tool:`` included). A profile with fewer than :data:`MIN_SAMPLES` even then is
*unknown*.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "MIN_SAMPLES",
    "Figures",
    "ProfileStats",
    "figures_for",
    "wilson_lower_bound",
]

#: Finished attempts a scope needs before its figures count.
MIN_SAMPLES = 5
#: The z of the Wilson score interval (95 % two-sided).
WILSON_Z = 1.96


@dataclass(frozen=True)
class ProfileStats:
    """Sums over the finished attempts of one profile in one scope (``capability`` and
    ``language`` None: any, or -- in a row of the store -- not asked for)."""

    profile: str
    capability: str | None = None
    language: str | None = None
    finished: int = 0
    succeeded: int = 0
    steps: int = 0
    fix_attempts: int = 0
    cost_usd: float = 0.0
    latency_ms: int = 0
    duration_s: float = 0.0
    wins: int = 0
    losses: int = 0

    @classmethod
    def of_row(cls, row: Any) -> ProfileStats:
        """From a row of :meth:`aidp.state.store.Store.profile_stats` (attributes of the same
        names; sums may come back as None or as decimals)."""
        return cls(
            str(row.profile), row.capability, row.language, int(row.finished or 0),
            int(row.succeeded or 0), int(row.steps or 0), int(row.fix_attempts or 0),
            float(row.cost_usd or 0.0), int(row.latency_ms or 0), float(row.duration_s or 0.0),
            int(row.wins or 0), int(row.losses or 0))

    @property
    def success_rate(self) -> float | None:
        """succeeded / finished (None without finished attempts)."""
        return self.succeeded / self.finished if self.finished else None

    @property
    def fix_loop(self) -> float | None:
        """Fix and escalation attempts per step worked on (None without steps)."""
        return self.fix_attempts / self.steps if self.steps else None

    @property
    def mean_cost_usd(self) -> float | None:
        """US dollars per finished attempt."""
        return self.cost_usd / self.finished if self.finished else None

    @property
    def cost_per_success(self) -> float | None:
        """US dollars of all finished attempts per succeeded one (None without a success)."""
        return self.cost_usd / self.succeeded if self.succeeded else None

    @property
    def mean_latency_ms(self) -> float | None:
        """Milliseconds waiting for the provider per finished attempt."""
        return self.latency_ms / self.finished if self.finished else None

    @property
    def mean_duration_s(self) -> float | None:
        """Seconds from start to finish per finished attempt."""
        return self.duration_s / self.finished if self.finished else None

    def __add__(self, other: ProfileStats) -> ProfileStats:
        """The sums of both (the scope of ``self`` is kept)."""
        return replace(
            self, finished=self.finished + other.finished,
            succeeded=self.succeeded + other.succeeded, steps=self.steps + other.steps,
            fix_attempts=self.fix_attempts + other.fix_attempts,
            cost_usd=self.cost_usd + other.cost_usd, latency_ms=self.latency_ms + other.latency_ms,
            duration_s=self.duration_s + other.duration_s, wins=self.wins + other.wins,
            losses=self.losses + other.losses)


@dataclass(frozen=True)
class Figures:
    """The figures of one profile for one step: the sums of the narrowest scope with enough
    samples (``known``), or of all its work when no scope has enough."""

    stats: ProfileStats
    scope: str
    known: bool

    @property
    def success(self) -> str:
        """``14/15 = 93% for code_edit/python`` (or ``2 finished, too few``)."""
        s = self.stats
        if not self.known:
            return f"{s.finished} finished, too few"
        return f"{s.succeeded}/{s.finished} = {s.succeeded / s.finished:.0%} for {self.scope}"


def wilson_lower_bound(succeeded: int, finished: int, z: float = WILSON_Z) -> float:
    """The lower end of the Wilson score interval of a success rate: what the rate is at
    least, with 95 % confidence (0 without samples). 14/15 gives 0.70, 6/15 gives 0.20, 3/3
    only 0.44 -- few samples count for less than many."""
    if finished <= 0:
        return 0.0
    p = succeeded / finished
    z2 = z * z
    centre = p + z2 / (2 * finished)
    spread = z * math.sqrt(p * (1 - p) / finished + z2 / (4 * finished * finished))
    return max(0.0, (centre - spread) / (1 + z2 / finished))


def figures_for(rows: Iterable[ProfileStats], profile: str, capability: str | None,
                language: str | None, *, min_samples: int = MIN_SAMPLES) -> Figures:
    """The figures of ``profile`` for a step asking for ``capability`` in ``language``: the
    narrowest of (capability, language), (capability, any language), (anything) with at least
    ``min_samples`` finished attempts.

    Args:
        rows: the store's sums (any profiles; the others are ignored).
        profile: the profile.
        capability: the capability asked for (None: only the profile-wide scope).
        language: the language asked for (None: no language scope).
        min_samples: finished attempts a scope needs to count.
    """
    mine = [row for row in rows if row.profile == profile]
    scopes: list[tuple[str, ProfileStats]] = []
    if capability is not None and language is not None:
        scopes.append((f"{capability}/{language}", _sum(
            profile, capability, language,
            (r for r in mine if r.capability == capability
             and (r.language or "").lower() == language.lower()))))
    if capability is not None:
        scopes.append((capability, _sum(profile, capability, None,
                                        (r for r in mine if r.capability == capability))))
    scopes.append(("all its work", _sum(profile, None, None, mine)))
    for scope, stats in scopes:
        if stats.finished >= min_samples:
            return Figures(stats, scope, known=True)
    return Figures(scopes[-1][1], scopes[-1][0], known=False)


def _sum(profile: str, capability: str | None, language: str | None,
         rows: Iterable[ProfileStats]) -> ProfileStats:
    total = ProfileStats(profile, capability, language)
    for row in rows:
        total = total + row
    return total
