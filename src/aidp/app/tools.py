"""Tool profiles, whether their tools can run and how they did: ``aidp tools list|check|stats``
and the API's ``/tools``, ``/tools/check`` and ``/tools/stats``.

``check`` runs each profile's adapter ``probe()`` (the binary is there, its version, a canary
request to the profile's endpoint when it has one) and stores the results, timestamped, in
``<repo>/.aidp/tool-checks.json``; ``list`` shows the last result beside each profile.
``stats`` sums the finished attempts of every run in the database per profile, capability and
language (:mod:`aidp.tools.stats` says what counts): the figures ``select: best_success`` and
``select: cheapest_passing`` route by.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aidp.exceptions import AidpError, NotFoundError

if TYPE_CHECKING:
    from aidp.app.context import AppContext
    from aidp.config import ToolProfile
    from aidp.tools.adapter import ProbeResult

__all__ = ["CHECKS_FILE", "check_state", "check_tools", "list_tools", "load_checks",
           "tool_stats"]

#: Where ``aidp tools check`` keeps its results, relative to the repository.
CHECKS_FILE = Path(".aidp") / "tool-checks.json"
#: Probes running at once (each mostly waits for a tool to start).
PROBE_WORKERS = 4


def load_checks(repo: Path) -> dict[str, dict[str, Any]]:
    """The stored check results per profile name (empty when there are none or the file is
    unreadable)."""
    try:
        data = json.loads((repo / CHECKS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    profiles = data.get("profiles") if isinstance(data, dict) else None
    return {name: entry for name, entry in (profiles or {}).items() if isinstance(entry, dict)}


def _save_checks(app: AppContext, results: dict[str, dict[str, Any]]) -> None:
    app.ensure_aidp_dir()
    merged = {**load_checks(app.repo), **results}
    path = app.repo / CHECKS_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"version": 1, "profiles": merged}, indent=2) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)


def _profile_row(name: str, profile: ToolProfile, check: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "name": name, "adapter": profile.adapter, "model": profile.model,
        "endpoint": profile.base_url, "api_key_env": profile.api_key_env,
        "capabilities": list(profile.capabilities), "languages": list(profile.languages),
        "environments": list(profile.environments), "priority": profile.priority,
        "fallback": list(profile.fallback), "concurrency": profile.concurrency,
        "timeout": profile.timeout, "last_check": check,
    }


def list_tools(app: AppContext) -> list[dict[str, Any]]:
    """Each tool profile (as ``tools list --json``), with its last check result."""
    checks = load_checks(app.repo)
    return [_profile_row(name, profile, checks.get(name))
            for name, profile in sorted(app.settings.tools.items())]


def check_state(check: dict[str, Any]) -> str:
    """``ok`` only for what was checked: a profile whose endpoint was not asked is
    ``unchecked`` (nothing known wrong) or ``FAILED`` (it cannot work, e.g. no key)."""
    if not check.get("ok"):
        return "FAILED"
    return "unchecked" if check.get("not_checked") else "ok"


def _probe(name: str, profile: ToolProfile, env: dict[str, str]) -> ProbeResult:
    from aidp.tools.adapter import ProbeResult
    from aidp.tools.registry import get_adapter

    try:
        adapter = get_adapter(profile.adapter)
    except AidpError as exc:
        return ProbeResult(name, ok=False, detail=exc.message)
    try:
        return adapter.probe(name, profile, env)
    except Exception as exc:  # noqa: BLE001 -- a plugin's probe may fail in any way: report it
        return ProbeResult(name, ok=False, detail=f"probe crashed: {type(exc).__name__}: {exc}")


def check_tools(app: AppContext, profile_name: str | None = None, *, offline: bool = False
                ) -> list[dict[str, Any]]:
    """Probe ``profile_name`` (default: every profile) and store the results; returns them as
    ``tools check --json`` prints them (``status``: ok, unchecked or failed).

    Raises:
        NotFoundError: no such profile.
    """
    from aidp.tools.adapter import OFFLINE_ENV

    profiles = app.settings.tools
    if profile_name is not None:
        if profile_name not in profiles:
            raise NotFoundError(f"no tool profile named {profile_name!r}",
                                hint="known: " + ", ".join(sorted(profiles)))
        profiles = {profile_name: profiles[profile_name]}
    names = sorted(profiles)
    env = {**os.environ, **({OFFLINE_ENV: "1"} if offline else {})}
    with ThreadPoolExecutor(max_workers=PROBE_WORKERS) as pool:
        probes = list(pool.map(lambda name: _probe(name, profiles[name], env), names))
    checked_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    results = {
        probe.profile: {
            "adapter": profiles[probe.profile].adapter, "ok": probe.ok, "version": probe.version,
            "detail": probe.detail, "canary_ok": probe.canary_ok, "latency_s": probe.latency_s,
            "not_checked": probe.not_checked, "checked_at": checked_at,
        }
        for probe in probes
    }
    _save_checks(app, results)
    return [{"profile": name, "status": check_state(entry).lower(), **entry}
            for name, entry in results.items()]


def tool_stats(app: AppContext, *, capability: str | None = None, language: str | None = None
               ) -> list[dict[str, Any]]:
    """The finished attempts of every run per (profile, capability, language), as ``tools stats
    --json`` prints them, optionally of one capability and / or language (compared without
    case); empty when there is no database yet.

    Each row: the counts (``finished``, ``succeeded``, ``steps``, ``fix_attempts``, ``wins``,
    ``losses``), the sums (``cost_usd``, ``latency_ms``, ``duration_s``) and the figures derived
    from them (``success_rate`` 0..1, ``fix_loop`` per step, ``mean_cost_usd``,
    ``cost_per_success`` in US dollars, ``mean_latency_ms``, ``mean_duration_s``; None where
    nothing was counted). ``capability`` / ``language`` None: attempts of steps that named
    their profile with ``tool:`` (or asked for no language).
    """
    from aidp.tools.stats import ProfileStats

    if not app.has_database():
        return []
    rows = [ProfileStats.of_row(row) for row in app.store().profile_stats()]
    return [
        {"profile": s.profile, "capability": s.capability, "language": s.language,
         "finished": s.finished, "succeeded": s.succeeded, "success_rate": s.success_rate,
         "steps": s.steps, "fix_attempts": s.fix_attempts, "fix_loop": s.fix_loop,
         "cost_usd": s.cost_usd, "mean_cost_usd": s.mean_cost_usd,
         "cost_per_success": s.cost_per_success, "latency_ms": s.latency_ms,
         "mean_latency_ms": s.mean_latency_ms, "duration_s": s.duration_s,
         "mean_duration_s": s.mean_duration_s, "wins": s.wins, "losses": s.losses}
        for s in rows
        if (capability is None or (s.capability or "").lower() == capability.lower())
        and (language is None or (s.language or "").lower() == language.lower())
    ]
