"""``aidp tools list|check``: the tool profiles of aidp.toml, and whether each tool can run.

``check`` runs each profile's adapter ``probe()`` (the binary is there, its version, a canary
request to the profile's endpoint when it has one) and stores the results, timestamped, in
``<repo>/.aidp/tool-checks.json``; ``list`` shows the last result beside each profile.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from aidp.cli.common import Context, echo_json, repo_options
from aidp.exceptions import AidpError, NotFoundError

if TYPE_CHECKING:
    from aidp.config import ToolProfile
    from aidp.tools.adapter import ProbeResult

__all__ = ["CHECKS_FILE", "load_checks", "tools"]

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


def _save_checks(ctx: Context, results: dict[str, dict[str, Any]]) -> None:
    ctx.ensure_aidp_dir()
    merged = {**load_checks(ctx.repo), **results}
    path = ctx.repo / CHECKS_FILE
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


@click.group()
def tools() -> None:
    """List tool profiles, or check that their tools can run."""


@tools.command("list")
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(repo: Path | None, config_path: Path | None, as_json: bool) -> None:
    """Show each tool profile: adapter, model, endpoint, capabilities, priority, fallback, and
    the last `aidp tools check` result."""
    ctx = Context(repo, config_path)
    checks = load_checks(ctx.repo)
    rows = [_profile_row(name, profile, checks.get(name))
            for name, profile in sorted(ctx.settings.tools.items())]
    if as_json:
        echo_json(rows)
        return
    header = ("PROFILE", "ADAPTER", "MODEL", "ENDPOINT", "CAPABILITIES", "PRIORITY", "FALLBACK",
              "LAST CHECK")
    table = [header] + [
        (row["name"], row["adapter"], row["model"] or "-", row["endpoint"] or "-",
         ",".join(row["capabilities"]) or "-", str(row["priority"]),
         ",".join(row["fallback"]) or "-", _check_summary(row["last_check"]))
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    for line in table:
        click.echo("  ".join([*(cell.ljust(w) for cell, w in zip(line, widths)), line[-1]]))


def _state(check: dict[str, Any]) -> str:
    """``ok`` only for what was checked: a profile whose endpoint was not asked is
    ``unchecked`` (nothing known wrong) or ``FAILED`` (it cannot work, e.g. no key)."""
    if not check.get("ok"):
        return "FAILED"
    return "unchecked" if check.get("not_checked") else "ok"


def _check_summary(check: dict[str, Any] | None) -> str:
    if check is None:
        return "never"
    state = _state(check)
    version = f" {check['version']}" if check.get("version") else ""
    return f"{state}{version} at {check.get('checked_at', '?')}"


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


@tools.command()
@click.argument("profile_name", metavar="PROFILE", required=False)
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--offline", is_flag=True,
              help="Send no request beyond 127.0.0.1 (those endpoints show 'not checked').")
def check(profile_name: str | None, repo: Path | None, config_path: Path | None,
          as_json: bool, offline: bool) -> int:
    """Check PROFILE (default: every profile): the tool's binary and version, and a canary
    request to the endpoint it would use, with the key it would get. A model tool without the
    key it needs fails ("not checked: no API key in VAR"). Exits 1 if any check failed; results
    go to .aidp/tool-checks.json."""
    from aidp.tools.adapter import OFFLINE_ENV

    ctx = Context(repo, config_path)
    profiles = ctx.settings.tools
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
    _save_checks(ctx, results)
    if as_json:
        echo_json([{"profile": name, "status": _state(entry).lower(), **entry}
                   for name, entry in results.items()])
    else:
        width = max(len(name) for name in names)
        for name, entry in results.items():
            click.echo(f"{name:<{width}}  {_state(entry):<6}  {entry['detail']}")
    return 0 if all(probe.ok for probe in probes) else 1
