"""Settings: ``aidp.toml`` at the repository root, overridden by ``AIDP_*`` environment variables.

``AIDP_DATABASE_URL`` (or ``[database] url``) picks the database; the default is SQLite in
``<repo>/.aidp/aidp.db``. Tool profiles live under ``[tools.NAME]``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

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


class Settings(BaseSettings):
    """All settings. Environment: AIDP_DATABASE__URL or AIDP_DATABASE_URL, AIDP_RUN__PARALLEL."""

    model_config = SettingsConfigDict(
        env_prefix="AIDP_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    run: RunSettings = Field(default_factory=RunSettings)
    tools: dict[str, ToolProfile] = Field(
        default_factory=lambda: {"shell": ToolProfile(adapter="shell")}
    )

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: Any, env_settings: Any,
        dotenv_settings: Any, file_secret_settings: Any,
    ) -> tuple[Any, ...]:
        # The environment overrides aidp.toml (passed as init arguments by load_settings).
        return (env_settings, init_settings)

    def profile(self, name: str) -> ToolProfile | None:
        if name == "shell" and name not in self.tools:
            return ToolProfile(adapter="shell")
        return self.tools.get(name)

    def database_url(self, repo: Path) -> str:
        import os

        url = os.environ.get("AIDP_DATABASE_URL") or self.database.url
        if url:
            return url
        return f"sqlite+pysqlite:///{repo / '.aidp' / 'aidp.db'}"


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
