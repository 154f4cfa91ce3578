"""Settings: ``aidp.toml`` at the repository root, overridden by ``AIDP_*`` environment variables.

``AIDP_DATABASE_URL`` (or ``[database] url``) picks the database; the default is SQLite in
``<repo>/.aidp/aidp.db``. Tool profiles live under ``[tools.NAME]``.
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
from aidp.model.workstream import Duration

__all__ = ["CONFIG_FILE", "DatabaseSettings", "RunSettings", "Settings", "ToolProfile", "load_settings"]

CONFIG_FILE = "aidp.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in .aidp/")


class RunSettings(_Section):
    parallel: int = Field(4, ge=1, le=256, description="steps running at once")
    log_cap_bytes: int = Field(10 * 2**20, ge=4096, description="per-attempt log size cap")
    kill_grace: Duration = Field(5.0, description="SIGTERM to SIGKILL grace period")


class ToolProfile(_Section):
    """How to run a tool. The foundation ships the ``shell`` adapter."""

    adapter: Literal["shell"] = "shell"
    command: str | list[str] | None = Field(None, description="default command template")
    concurrency: int = Field(0, ge=0, description="steps of this profile at once; 0 = no limit")
    timeout: Duration | None = None


class Settings(_Section):
    """All settings: aidp.toml, overridden by ``AIDP_<SECTION>__<KEY>`` environment variables
    (``AIDP_RUN__PARALLEL=8``); ``AIDP_DATABASE_URL`` is accepted for the database URL."""

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    run: RunSettings = Field(default_factory=RunSettings)
    tools: dict[str, ToolProfile] = Field(
        default_factory=lambda: {"shell": ToolProfile(adapter="shell")}
    )

    def profile(self, name: str) -> ToolProfile | None:
        if name == "shell" and name not in self.tools:
            return ToolProfile(adapter="shell")
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
    if "shell" not in settings.tools:
        settings = settings.model_copy(
            update={"tools": {**settings.tools, "shell": ToolProfile(adapter="shell")}}
        )
    return settings
