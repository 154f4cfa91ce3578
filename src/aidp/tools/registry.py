"""Adapters by name, and which tool profile a step gets.

:func:`get_adapter` finds the code that drives a kind of tool: the built-ins (``shell``,
``manual``, ``aider``, ``codex``, ``openai``) are imported only when first asked for, third-party
ones come from the entry-point group ``aidp.adapters`` (an entry point names an adapter class, or
an adapter object). Adapters are stateless, so one instance per name is shared.

:func:`choose_profile` is pure: it picks a profile for a step from the settings and the health of
each profile (breaker state, recent success rate), which the caller reads from the database.

* A step naming ``tool`` gets that profile -- or, when its breaker is open, the first healthy
  profile along its ``fallback`` chain (:func:`fallback_chain`, breadth first, cycle-safe).
* A step asking for a ``capability`` (optionally a ``language``, in an ``environment``) gets the
  best-scoring matching profile (a capability wins over ``tool``). A profile matches when it
  lists the capability and, where it lists languages / environments at all, the asked one.
  Score = ``priority`` (an integer, so it decides first) + 0.5 if the profile names the
  language + 0.25 if it names the environment + 0.2 x recent success rate (0.1 when unknown);
  ties go by name. If the best one's breaker is open, its fallback chain is tried, then the
  next candidate.
* A capability step may instead be routed by results (``select``), from the statistics of every
  finished attempt in the database (:mod:`aidp.tools.stats`, read by the caller):
  ``best_success`` ranks the matching profiles by the lower bound of the Wilson interval of their
  success rate (:func:`~aidp.tools.stats.wilson_lower_bound`: 14/15 beats 3/3), for the
  capability in the language, else the capability, else all their work, whichever first has
  :data:`~aidp.tools.stats.MIN_SAMPLES` finished attempts; profiles with fewer come after, by
  score. ``cheapest_passing`` ranks the profiles whose success rate reaches
  :data:`PASSING_RATE` (with enough samples) by their cost per succeeded attempt, the others
  after, by score. Equal figures go by score; when no profile has figures (or none passes),
  the order is the score's and the reason says so. Breakers and fallbacks apply as above.

Every choice carries a readable reason, e.g.
``aider: breaker open; codex: breaker open; chose openai (fallback of codex)``, or, routed by
results, ``select best_success: chose codex (success 14/15 = 93% for code_edit/python) over
aider (success 6/15 = 40% for code_edit)``.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from aidp.exceptions import ToolError
from aidp.tools.stats import Figures, ProfileStats, figures_for, wilson_lower_bound

if TYPE_CHECKING:
    from aidp.config import Settings, ToolProfile
    from aidp.tools.adapter import Adapter
    from aidp.tools.adapters.aider import AiderAdapter
    from aidp.tools.adapters.codex import CodexAdapter

    # mypy proves the built-in adapters implement the protocol (nothing runs at import time)
    _AIDER: Adapter = AiderAdapter()
    _CODEX: Adapter = CodexAdapter()

__all__ = [
    "BUILTIN_ADAPTER_MODULES",
    "PASSING_RATE",
    "Candidate",
    "Choice",
    "NoProfileError",
    "ProfileHealth",
    "Select",
    "choose_profile",
    "fallback_chain",
    "get_adapter",
    "resolve_profile",
]

#: Built-in adapter name -> (module, class); imported on first use only.
BUILTIN_ADAPTER_MODULES: dict[str, tuple[str, str]] = {
    "shell": ("aidp.tools.adapters.shell", "ShellAdapter"),
    "manual": ("aidp.tools.adapters.manual", "ManualAdapter"),
    "aider": ("aidp.tools.adapters.aider", "AiderAdapter"),
    "codex": ("aidp.tools.adapters.codex", "CodexAdapter"),
    "openai": ("aidp.tools.adapters.openai_api", "OpenAIAdapter"),
}
#: Profiles that exist without being declared in aidp.toml.
IMPLICIT_PROFILES = ("shell", "manual")

_LANGUAGE_BONUS = 0.5
_ENVIRONMENT_BONUS = 0.25
_SUCCESS_WEIGHT = 0.2
_UNKNOWN_SUCCESS_RATE = 0.5

#: How a capability step picks among the matching profiles (the workstream's ``select``).
Select = Literal["score", "best_success", "cheapest_passing"]
#: ``cheapest_passing``: the success rate a profile must reach to be considered.
PASSING_RATE = 0.8

_adapters: dict[str, Adapter] = {}
_adapters_lock = threading.Lock()


# -- adapters ------------------------------------------------------------------------------------


def get_adapter(name: str) -> Adapter:
    """The adapter named ``name`` (one shared instance per name).

    Raises:
        ToolError: no built-in or entry-point adapter has that name, or its module cannot be
            imported, or what it names is not an adapter (no ``run`` / ``probe``).
    """
    with _adapters_lock:
        adapter = _adapters.get(name)
        if adapter is None:
            adapter = _load_adapter(name)
            _adapters[name] = adapter
        return adapter


def _load_adapter(name: str) -> Adapter:
    if name in BUILTIN_ADAPTER_MODULES:
        module_name, attr = BUILTIN_ADAPTER_MODULES[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ToolError(f"adapter {name!r} is not available: cannot import {module_name} "
                            f"({exc})") from exc
        target = getattr(module, attr, None)
        if target is None:
            raise ToolError(f"adapter {name!r} is not available: {module_name} has no {attr}")
        where = f"{module_name}:{attr}"
    else:
        from importlib.metadata import entry_points

        from aidp.config import ADAPTER_ENTRY_POINTS

        found = [ep for ep in entry_points(group=ADAPTER_ENTRY_POINTS) if ep.name == name]
        if not found:
            known = sorted({*BUILTIN_ADAPTER_MODULES,
                            *(ep.name for ep in entry_points(group=ADAPTER_ENTRY_POINTS))})
            raise ToolError(f"unknown adapter {name!r} (known: {', '.join(known)})")
        where = found[0].value
        try:
            target = found[0].load()
        except Exception as exc:  # a third-party plugin may fail in any way: attribute it
            raise ToolError(f"adapter {name!r} from entry point {where} failed to load: "
                            f"{type(exc).__name__}: {exc}") from exc
    adapter = _instantiate(name, target, where)
    if not callable(getattr(adapter, "run", None)) or not callable(getattr(adapter, "probe", None)):
        raise ToolError(f"adapter {name!r} ({where}) has no run() and probe()")
    return adapter


def _instantiate(name: str, target: object, where: str) -> Adapter:
    if not isinstance(target, type):
        return target  # type: ignore[return-value]  # an adapter object; checked by the caller
    try:
        return target()  # type: ignore[no-any-return]
    except Exception as exc:  # a plugin's constructor may fail in any way: attribute it
        raise ToolError(f"adapter {name!r} ({where}) could not be created: "
                        f"{type(exc).__name__}: {exc}") from exc


# -- profiles ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileHealth:
    """What the caller knows about a profile now: its breaker, and recent attempts' success
    rate (0..1; None when there were none)."""

    breaker_open: bool = False
    success_rate: float | None = None


#: One candidate profile: (name, score, why) -- score None for a profile that did not match.
Candidate = tuple[str, float | None, str]


@dataclass(frozen=True)
class Choice:
    """The chosen profile, why, and every profile considered (in the order they ranked)."""

    profile: str
    reason: str
    candidates: list[Candidate] = field(default_factory=list)


class NoProfileError(ToolError):
    """No profile can serve the request: none matches, or every match and fallback is down.

    ``retryable`` is True when matches exist but their breakers are open (they close again).
    """

    def __init__(self, message: str, *, candidates: list[Candidate], retryable: bool,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.candidates = candidates
        self.retryable = retryable


def resolve_profile(settings: Settings, name: str) -> ToolProfile:
    """The profile ``name`` from the settings; ``shell`` and ``manual`` exist implicitly.

    Raises:
        ToolError: no such profile.
    """
    from aidp.config import ToolProfile

    profile = settings.profile(name)
    if profile is None and name in IMPLICIT_PROFILES:
        profile = ToolProfile(adapter=name)
    if profile is None:
        known = sorted({*settings.tools, *IMPLICIT_PROFILES})
        raise ToolError(f"no tool profile named {name!r} (known: {', '.join(known)})",
                        hint="declare it under [tools.NAME] in aidp.toml")
    return profile


def _profiles(settings: Settings) -> dict[str, ToolProfile]:
    return {name: resolve_profile(settings, name) for name in {*settings.tools, *IMPLICIT_PROFILES}}


def fallback_chain(settings: Settings, name: str) -> list[str]:
    """``name`` followed by its fallbacks, breadth first, each profile once (cycles are cut).

    Fallbacks naming no profile are skipped (the settings loader rejects them anyway).
    """
    profiles = _profiles(settings)
    chain = [name]
    seen = {name}
    index = 0
    while index < len(chain):
        current = profiles.get(chain[index])
        index += 1
        for other in current.fallback if current is not None else ():
            if other not in seen and other in profiles:
                seen.add(other)
                chain.append(other)
    return chain


def _healthy(name: str, health: Mapping[str, ProfileHealth]) -> bool:
    return not health.get(name, ProfileHealth()).breaker_open


def _walk_fallbacks(
    settings: Settings, start: str, health: Mapping[str, ProfileHealth], notes: list[str],
    noted: set[str],
) -> str | None:
    """The first healthy profile of ``start``'s chain, noting the open ones on the way."""
    chain = fallback_chain(settings, start)
    parent: dict[str, str] = {}
    profiles = _profiles(settings)
    for name in chain:
        for other in profiles[name].fallback:
            parent.setdefault(other, name)
    for name in chain:
        if _healthy(name, health):
            if name == start:
                return name
            notes.append(f"chose {name} (fallback of {parent.get(name, start)})")
            return name
        if name not in noted:
            noted.add(name)
            notes.append(f"{name}: breaker open")
    return None


def _score(
    profile: ToolProfile, language: str | None, environment: str | None,
    health: ProfileHealth,
) -> tuple[float | None, str]:
    """``(score, why)``; score None when the profile cannot serve (language, environment)."""
    why: list[str] = []
    score = float(profile.priority)
    if profile.priority:
        why.append(f"priority {profile.priority}")
    if language is not None and profile.languages:
        if language.lower() not in {lang.lower() for lang in profile.languages}:
            return None, f"languages {', '.join(profile.languages)} exclude {language}"
        score += _LANGUAGE_BONUS
        why.append(f"names {language}")
    if environment is not None and profile.environments:
        if environment.lower() not in {env.lower() for env in profile.environments}:
            return None, f"environments {', '.join(profile.environments)} exclude {environment}"
        score += _ENVIRONMENT_BONUS
        why.append(f"names {environment}")
    rate = health.success_rate
    score += _SUCCESS_WEIGHT * (_UNKNOWN_SUCCESS_RATE if rate is None else min(max(rate, 0.0), 1.0))
    why.append("success rate unknown" if rate is None else f"success rate {rate:.0%}")
    if health.breaker_open:
        why.append("breaker open")
    return round(score, 4), ", ".join(why)


def choose_profile(
    settings: Settings,
    *,
    tool: str | None,
    capability: str | None,
    language: str | None = None,
    environment: str | None = None,
    health: Mapping[str, ProfileHealth],
    select: Select = "score",
    stats: Sequence[ProfileStats] = (),
) -> Choice:
    """Pick the profile for one step (pure: no I/O, no clock).

    Args:
        settings: the run's settings (its tool profiles).
        tool: the profile the step names (used when ``capability`` is None).
        capability: the capability wanted (``code_edit`` ...); when given, it wins over
            ``tool`` (a workstream step's ``tool`` defaults to ``shell`` even when it asks for
            a capability).
        language: the language of the work, matched against each profile's ``languages``.
        environment: where aidp runs (``dev``, ``ci``, ``prod``), matched against
            ``environments``.
        health: per profile name, its breaker state and recent success rate; a profile missing
            here counts as healthy with an unknown success rate.
        select: with ``capability``: ``score`` (the default), or route by results,
            ``best_success`` or ``cheapest_passing`` (see the module's docstring).
        stats: for ``select`` other than ``score``: the finished attempts' sums per (profile,
            capability, language) of every run (:meth:`aidp.state.store.Store.profile_stats`).

    Returns:
        the :class:`Choice`, with a readable reason and every candidate considered.

    Raises:
        NoProfileError: nothing matches (``retryable`` False), or every match and every fallback
            has its breaker open (``retryable`` True).
        ToolError: ``tool`` names no profile, or neither ``tool`` nor ``capability`` is given.
    """
    notes: list[str] = []
    noted: set[str] = set()
    if tool is not None and capability is None:
        resolve_profile(settings, tool)
        chosen = _walk_fallbacks(settings, tool, health, notes, noted)
        candidates: list[Candidate] = [
            (name, None, "breaker open" if not _healthy(name, health) else "healthy")
            for name in fallback_chain(settings, tool)
        ]
        if chosen is None:
            raise NoProfileError("; ".join([*notes, f"no healthy profile for {tool}"]),
                                 candidates=candidates, retryable=True,
                                 hint="wait for a breaker to close, or add a fallback profile")
        if chosen == tool:
            notes.append(f"chose {tool} (named by the step)")
        return Choice(chosen, "; ".join(notes), candidates)

    if capability is None:
        raise ToolError("a step needs a tool or a capability")
    ranked: list[tuple[float, str, str]] = []
    rejected: list[Candidate] = []
    for name, profile in sorted(_profiles(settings).items()):
        if capability not in profile.capabilities:
            continue
        score, why = _score(profile, language, environment, health.get(name, ProfileHealth()))
        if score is None:
            rejected.append((name, None, why))
        else:
            ranked.append((score, name, why))
    ranked.sort(key=lambda item: (-item[0], item[1]))
    candidates = [(name, score, why) for score, name, why in ranked] + rejected
    wanted = capability + (f" for {language}" if language else "") + (
        f" in {environment}" if environment else "")
    if not ranked:
        detail = "; ".join(f"{name}: {why}" for name, _, why in rejected)
        raise NoProfileError(
            f"no tool profile offers {wanted}" + (f" ({detail})" if detail else ""),
            candidates=candidates, retryable=False,
            hint=f"add {capability!r} to the capabilities of a profile in aidp.toml")
    routed: _Routed | None = None
    if select != "score":
        routed = _route_by_results(select, ranked, stats, capability, language)
        ranked = routed.ranked
        candidates = [(name, score, why + "; " + routed.describe(name))
                      for score, name, why in ranked] + rejected
    for score, name, _ in ranked:
        chosen = _walk_fallbacks(settings, name, health, notes, noted)
        if chosen is not None:
            if routed is not None:
                notes.append(routed.note(chosen, name, wanted, score))
            elif chosen == name:
                notes.append(f"chose {name} ({wanted}, score {score:g})")
            return Choice(chosen, "; ".join(notes), candidates)
    raise NoProfileError("; ".join([*notes, f"no healthy profile offers {wanted}"]),
                         candidates=candidates, retryable=True,
                         hint="wait for a breaker to close, or add a fallback profile")


@dataclass(frozen=True)
class _Routed:
    """The matching profiles in the order ``select`` put them, with their figures."""

    select: Select
    ranked: list[tuple[float, str, str]]
    figures: dict[str, Figures]
    decided: bool  # False: no figures to go by, the order is the score's
    why_not: str = ""

    def describe(self, name: str) -> str:
        figures = self.figures[name]
        success = f"success {figures.success}"
        if self.select != "cheapest_passing" or not figures.known:
            return success
        per_success = figures.stats.cost_per_success
        if figures.stats.success_rate is None or figures.stats.success_rate < PASSING_RATE:
            return f"{success}, under {PASSING_RATE:.0%}"
        return f"${per_success or 0.0:.4f} per success, {success}"

    def note(self, chosen: str, first: str, wanted: str, score: float) -> str:
        """The reason's last part: the choice and the figures of every ranked profile."""
        head = f"select {self.select}: "
        if not self.decided:
            base = f"chose {first} ({wanted}, score {score:g})" if chosen == first else ""
            return head + self.why_not + (f"; {base}" if base else "")
        if chosen not in self.figures:  # a fallback that does not offer the capability
            return head + f"{first} was first ({self.describe(first)})"
        others = [name for _, name, _ in self.ranked if name != chosen]
        text = head + f"chose {chosen} ({self.describe(chosen)})"
        if others:
            text += " over " + ", ".join(f"{name} ({self.describe(name)})" for name in others)
        return text


def _route_by_results(
    select: Select, ranked: list[tuple[float, str, str]], stats: Sequence[ProfileStats],
    capability: str, language: str | None,
) -> _Routed:
    """``ranked`` (in score order) reordered by the figures of each profile."""
    figures = {name: figures_for(stats, name, capability, language) for _, name, _ in ranked}
    by_score = {name: i for i, (_, name, _) in enumerate(ranked)}

    def passing(name: str) -> bool:
        rate = figures[name].stats.success_rate
        return figures[name].known and rate is not None and rate >= PASSING_RATE

    if select == "best_success":
        if not any(f.known for f in figures.values()):
            return _Routed(select, ranked, figures, decided=False,
                           why_not="no matching profile has enough finished attempts")

        def key(item: tuple[float, str, str]) -> tuple[int, float, int]:
            f = figures[item[1]]
            if not f.known:
                return (1, 0.0, by_score[item[1]])
            bound = wilson_lower_bound(f.stats.succeeded, f.stats.finished)
            return (0, -round(bound, 9), by_score[item[1]])
    else:
        if not any(passing(name) for name in figures):
            return _Routed(select, ranked, figures, decided=False,
                           why_not=f"no matching profile succeeds in {PASSING_RATE:.0%} of "
                           "enough finished attempts")

        def key(item: tuple[float, str, str]) -> tuple[int, float, int]:
            if not passing(item[1]):
                return (1, 0.0, by_score[item[1]])
            return (0, round(figures[item[1]].stats.cost_per_success or 0.0, 9),
                    by_score[item[1]])
    return _Routed(select, sorted(ranked, key=key), figures, decided=True)
