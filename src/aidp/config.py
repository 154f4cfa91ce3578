"""Settings: ``aidp.toml`` at the repository root, overridden by ``AIDP_*`` environment variables.

``AIDP_DATABASE_URL`` (or ``[database] url``) picks the database; the default is SQLite in
``<repo>/.aidp/aidp.db``. ``AIDP_LOG_FORMAT`` is accepted for ``[serve] log_format``. Tool
profiles live under ``[tools.NAME]``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from aidp.exceptions import ConfigError
from aidp.model.workstream import Budget, Duration

__all__ = [
    "CONFIG_FILE",
    "BreakerSettings",
    "CcpmSettings",
    "DatabaseSettings",
    "ExecutorSettings",
    "Prices",
    "RateLimit",
    "RunSettings",
    "ServeSettings",
    "Settings",
    "SpecsSettings",
    "ToolProfile",
    "WebhookSettings",
    "load_settings",
]

CONFIG_FILE = "aidp.toml"
BUILTIN_ADAPTERS = ("shell", "manual", "aider", "codex", "openai")
ADAPTER_ENTRY_POINTS = "aidp.adapters"


def known_adapters() -> set[str]:
    """Built-in adapter names plus those third-party packages register as entry points."""
    from importlib.metadata import entry_points

    return {*BUILTIN_ADAPTERS, *(ep.name for ep in entry_points(group=ADAPTER_ENTRY_POINTS))}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in .aidp/")
    auto_upgrade: bool | None = Field(
        None, description="upgrade an older schema when aidp opens the database; default: "
        "yes for a SQLite file, no for a server database shared by many processes "
        "(PostgreSQL: `aidp db upgrade --yes`)")


class CcpmSettings(_Section):
    """``[ccpm]``: the optional GitHub sync of CCPM epics (``aidp specs gh-sync``), off by
    default."""

    github_sync: bool = Field(False, description="allow `aidp specs gh-sync` to write to GitHub")
    github_repo: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
                                    description="owner/name; default: from the origin remote")
    gh_timeout: Duration = Field(60.0, description="wall-clock limit of one gh call")


class RunSettings(_Section):
    parallel: int = Field(4, ge=1, le=256, description="steps running at once")
    prepare_ahead: int | None = Field(
        None, ge=0, le=64, description="ready workstreams whose worktree is prepared while "
        "every slot is busy; default: a quarter of `parallel`, at least 1. Only in "
        "repositories of up to 5,000 tracked files (a spare worktree costs a full checkout once)")
    log_cap_bytes: int = Field(10 * 2**20, ge=4096, description="per-attempt log size cap")
    kill_grace: Duration = Field(5.0, description="SIGTERM to SIGKILL grace period")
    budget: Budget | None = Field(None, description="what one run's attempts may spend")
    dirty: Literal["warn", "refuse", "ignore"] = Field(
        "warn", description="uncommitted changes when a run starts (it starts from HEAD): "
        "warn naming them, refuse the run (exit 2), or ignore them")
    lease_ttl: Duration = Field(
        30.0, ge=1.0, le=3600.0, description="how long the run's lease outlives its holder's "
        "last heartbeat (renewed every third of it): another `aidp resume` may take a silent "
        "holder's run over after this long (at once when the holder's process is gone)")
    keep_branches: int = Field(
        1, ge=0, description="`aidp worktrees prune` keeps the branches of this many newest "
        "runs; older finished runs lose their merged `aidp/RUN/...` branches")


class RateLimit(_Section):
    """Client-side limits per profile (token buckets); None: unlimited."""

    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)


class Prices(_Section):
    """What a model costs, in US dollars per million tokens (overrides the gateway's table of
    known models, :data:`aidp.tools.gateway.PRICES`)."""

    input: float = Field(ge=0, description="per million input tokens")
    output: float = Field(ge=0, description="per million output tokens")
    cached_input: float | None = Field(
        None, ge=0, description="per million cached input tokens (default: the input price)")


class BreakerSettings(_Section):
    """Circuit breaker of a profile (and of its endpoint)."""

    failure_threshold: int = Field(5, ge=1, description="transient failures in the window")
    window: Duration = Field(60.0, description="seconds over which failures are counted")
    cooldown: Duration = Field(30.0, description="OPEN to HALF_OPEN after this long")
    half_open_probes: int = Field(1, ge=1, description="attempts admitted while HALF_OPEN")
    enabled: bool | None = Field(
        None, description="default: on for model tools (aider, codex, openai, plugins), off "
        "for shell and manual")
    on_open: Literal["wait", "fail"] = Field(
        "wait", description="when every profile of the chain is open: wait (circuit_open, "
        "bounded by the step's retry budget) or fail the step at once")


class SpecsSettings(_Section):
    """``aidp run --change`` and ``aidp specs coverage``: how an OpenSpec change becomes a
    run, and where the tests proving its scenarios are."""

    require_approval: bool = Field(True, description="only approved proposals run")
    tool: str = Field("manual", description="tool profile of the compiled steps")
    checks: list[str] = Field(default_factory=list, description="acceptance checks of each step")
    split: Literal["change", "sections"] = Field(
        "change", description="one workstream per change, or one per numbered tasks.md "
        "section (chained in section order)")
    test_paths: list[str] = Field(
        default_factory=lambda: ["tests"],
        description="where scenario-tagged tests live (`aidp specs coverage`, step checks)")
    test_command: str = Field(
        "python -m pytest -q", min_length=1,
        description="pytest command line that runs tests given as node ids; a step whose "
        "scenarios have tagged tests gets `<test_command> <node ids>` as a check")


class ToolProfile(_Section):
    """How to run a tool: adapter, command / model / endpoint, limits, matching, fallback.

    Secrets are named, never given: ``api_key_env`` and ``env`` hold environment variable names.
    """

    adapter: str = Field("shell", description="shell, manual, aider, codex, openai, or a plugin")
    command: str | list[str] | None = Field(None, description="default command template / binary")
    model: str | None = None
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint URL (…/v1)")
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    env: list[str] = Field(default_factory=list, description="more environment variable names")
    concurrency: int = Field(0, ge=0, description="steps of this profile at once; 0 = no limit")
    timeout: Duration | None = None
    capabilities: list[str] = Field(default_factory=list, description="code_edit, test_write, ...")
    languages: list[str] = Field(default_factory=list, description="empty: any language")
    environments: list[str] = Field(default_factory=list, description="dev, ci, prod; empty: any")
    priority: int = Field(0, description="higher wins among equal matches")
    fallback: list[str] = Field(default_factory=list, description="profiles to try when down")
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    sandbox: Literal["read-only", "workspace-write", "danger-full-access"] = "workspace-write"
    edit_format: Literal["diff", "whole"] = "diff"
    args: list[str] = Field(default_factory=list, description="extra command-line arguments")
    budget: Budget | None = Field(None, description="what this profile may spend in one run")
    gateway: bool | None = Field(
        None, description="route the tool's model requests through aidp's loopback gateway "
        "(exact usage, provider errors, budgets inside an attempt, shared rate limits; the "
        "tool never sees the key). Default: on for every adapter but shell and manual")
    prices: Prices | None = Field(None, description="the model's prices, for the cost")
    resources: dict[str, float] = Field(
        default_factory=dict, description="with the Dask executor: what one attempt takes of a "
        "worker's resources (`aidp worker --resources codex=2`), e.g. {codex = 1}")

    def uses_gateway(self) -> bool:
        """Whether this profile's model requests go through the gateway."""
        if self.adapter in ("shell", "manual"):
            return False
        return self.gateway is not False

    def key_env(self) -> str | None:
        """The name of the API key's environment variable (model adapters default to
        ``OPENAI_API_KEY``; shell and manual need none)."""
        if self.api_key_env:
            return self.api_key_env
        return None if self.adapter in ("shell", "manual") else "OPENAI_API_KEY"


class ServeSettings(_Section):
    """``aidp serve``: where it listens and what it accepts."""

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8765, ge=0, le=65535, description="port (0: any free port)")
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host header values accepted besides the listening "
        "address, 127.0.0.1, ::1 and localhost (DNS-rebinding guard)")
    cors_origins: list[str] = Field(
        default_factory=list, description="origins browsers may call the API from (none)")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="largest request body accepted")
    max_workers: int = Field(4, ge=1, le=64, description="runs the service drives at once")
    request_nice: int = Field(
        5, ge=0, le=19, description="how much lower than the runs' workers the service's "
        "request handling is scheduled (a Linux nice increment; 0: the same): reads never "
        "slow the runs they watch")
    worker_restarts: int = Field(
        5, ge=0, le=1000, description="times in a row a run's worker may die and be started "
        "again; then the service gives up on the run (it stays resumable: POST .../resume)")
    dashboard: bool = Field(True, description="serve the web dashboard at / (beside the API)")
    dashboard_read_only: bool = Field(
        False, description="anonymous visitors may read the dashboard (never act) without "
        "signing in")
    log_format: Literal["text", "json"] = Field(
        "text", description="the service's log lines on stderr (and its run workers'): text, "
        "or json -- one object per line (also AIDP_LOG_FORMAT, --log-format)")


class WebhookSettings(_Section):
    """The webhook sender of ``aidp serve``: retries, time limits, polling."""

    max_attempts: int = Field(12, ge=1, le=100, description="attempts before a delivery is "
                              "dead (then `aidp webhooks redeliver`)")
    backoff_initial_s: float = Field(1.0, gt=0, description="wait after the first failure; "
                                     "doubles each time, with jitter")
    backoff_max_s: float = Field(3600.0, gt=0, description="longest wait between attempts")
    timeout_s: float = Field(10.0, gt=0, le=60, description="connect and read time limit")
    poll_interval_s: float = Field(1.0, gt=0, le=60, description="how often the journal is "
                                   "read for new events")
    gap_horizon_s: float = Field(10.0, ge=0, description="PostgreSQL: how long a gap in the "
                                 "journal's ids is waited for before it counts as rolled back")


class ExecutorSettings(_Section):
    """``[executor]``: where attempts run -- threads of the run's process (``local``, the
    default) or the workers of a Dask cluster (``dask``; the ``distributed`` extra)."""

    kind: Literal["local", "dask"] = Field("local", description="local threads, or dask")
    scheduler: str | None = Field(
        None, description="the Dask scheduler's address (tcp://host:8786) for kind = dask")
    remote: str = Field(
        "origin", description="the git remote (name or URL) the workers fetch workstream "
        "branches from and push checkpoints to")
    connect_timeout: Duration = Field(10.0, description="how long to wait for the scheduler")


class Settings(_Section):
    """All settings: aidp.toml, overridden by ``AIDP_<SECTION>__<KEY>`` environment variables
    (``AIDP_RUN__PARALLEL=8``); ``AIDP_DATABASE_URL`` is accepted for the database URL and
    ``AIDP_LOG_FORMAT`` for ``[serve] log_format``."""

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    run: RunSettings = Field(default_factory=RunSettings)
    specs: SpecsSettings = Field(default_factory=SpecsSettings)
    ccpm: CcpmSettings = Field(default_factory=CcpmSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    tools: dict[str, ToolProfile] = Field(
        default_factory=lambda: {"shell": ToolProfile(adapter="shell")}
    )

    def profile(self, name: str) -> ToolProfile | None:
        if name in ("shell", "manual") and name not in self.tools:
            return ToolProfile(adapter=name)
        return self.tools.get(name)

    def database_url(self, repo: Path) -> str:
        url = os.environ.get("AIDP_DATABASE_URL") or self.database.url
        if url:
            return url
        return f"sqlite+pysqlite:///{repo / '.aidp' / 'aidp.db'}"


def _overlay_environment(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Apply ``AIDP_<SECTION>__<KEY>=value`` variables over the file's ``data`` (in place).

    A hand-made overlay rather than pydantic-settings: importing that costs ~0.35 s here
    (it pulls in asyncio), more than aidp's whole start-up budget. Values stay strings;
    pydantic converts them when the settings are validated.
    """
    for name, value in environ.items():
        if not name.startswith("AIDP_") or "__" not in name:
            continue
        path = [part.lower() for part in name[len("AIDP_"):].split("__")]
        if path[0] not in Settings.model_fields or not all(path):
            continue
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[path[-1]] = value
    log_format = environ.get("AIDP_LOG_FORMAT")
    if log_format:  # the name the service hands to its workers (aidp.app.logs.ENV)
        serve = data.setdefault("serve", {})
        if isinstance(serve, dict):
            serve["log_format"] = log_format.strip().lower()


def load_settings(repo: Path | None, config_path: Path | None = None) -> Settings:
    """Read ``aidp.toml`` (``config_path`` or the repository's) and the environment."""
    path = config_path or (repo / CONFIG_FILE if repo is not None else None)
    data: dict[str, Any] = {}
    if path is not None and path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(str(exc), path=path) from exc
    elif config_path is not None:
        raise ConfigError("file not found", path=config_path)
    _overlay_environment(data, os.environ)
    try:
        settings = Settings(**data)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{where}: {first['msg']}", path=path) from exc
    _check_profiles(settings, path)
    builtin = {name: ToolProfile(adapter=name) for name in ("shell", "manual")
               if name not in settings.tools}
    if builtin:
        settings = settings.model_copy(update={"tools": {**settings.tools, **builtin}})
    return settings


def _check_profiles(settings: Settings, path: Path | None) -> None:
    """Adapter names must exist and fallback chains must name defined profiles."""
    adapters: set[str] | None = None
    for name, profile in settings.tools.items():
        if profile.adapter not in BUILTIN_ADAPTERS:
            adapters = adapters if adapters is not None else known_adapters()
            if profile.adapter not in adapters:
                raise ConfigError(
                    f"tools.{name}.adapter: unknown adapter {profile.adapter!r} "
                    f"(known: {', '.join(sorted(adapters))})", path=path)
        for other in profile.fallback:
            if other not in settings.tools and other not in ("shell", "manual"):
                raise ConfigError(
                    f"tools.{name}.fallback: no tool profile named {other!r}", path=path)
