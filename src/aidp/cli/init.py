"""``aidp init``: a commented aidp.toml and an example workstream file."""

from __future__ import annotations

from pathlib import Path

import click

from aidp.cli.common import resolve_repo

__all__ = ["init"]

CONFIG_TEMPLATE = """\
# aidp settings. Environment variables override them: AIDP_DATABASE_URL,
# AIDP_RUN__PARALLEL, AIDP_RUN__LOG_CAP_BYTES ...

[database]
# Any SQLAlchemy URL; the default is SQLite in .aidp/aidp.db of this repository.
# url = "postgresql+psycopg://user@127.0.0.1:5432/aidp"

[run]
parallel = 4              # steps running at once (aidp run --parallel overrides it)
log_cap_bytes = 10485760  # each attempt's log keeps its first 10 MiB, then the tail
kill_grace = "5s"         # after a timeout: SIGTERM, this long, then SIGKILL (whole group)
# prepare_ahead = 1       # worktrees readied while every slot is busy (default parallel/4)

# Tool profiles. A step names one with `tool:` (default: shell).
[tools.shell]
adapter = "shell"
concurrency = 0           # 0 = no limit

# [tools.formatter]
# adapter = "shell"
# command = "ruff format {worktree}"
# concurrency = 1
# timeout = "2m"
"""

EXAMPLE_TEMPLATE = """\
# An example workstream file. Validate it with `aidp validate`, see its plan with
# `aidp plan`, run it with `aidp run`. Schema: schema/workstream.schema.json of aidp.
version: 1
workstreams:
  - id: docs
    title: Write the project notes
    scope: ["notes/**"]           # the only files its steps may change
    steps:
      - id: draft
        run: "mkdir -p notes && echo 'Drafted by aidp run {run_id}' > notes/README.md"
        checks: ["test -s notes/README.md"]
        timeout: 1m
        retry: {max_attempts: 2, initial_delay: 1s}
  - id: summary
    depends_on: [docs]            # starts from a branch holding the docs result
    scope: ["SUMMARY.md"]
    steps:
      - id: summarize
        run: ["sh", "-c", "wc -l notes/README.md > SUMMARY.md"]
"""


@click.command()
@click.option("--repo", type=click.Path(path_type=Path, file_okay=False),
              help="Target git repository (default: the current one).")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def init(repo: Path | None, force: bool) -> int:
    """Write aidp.toml and workstreams/example.yaml into the repository."""
    root = resolve_repo(repo)
    targets = {root / "aidp.toml": CONFIG_TEMPLATE,
               root / "workstreams" / "example.yaml": EXAMPLE_TEMPLATE}
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        for path in existing:
            click.echo(f"error: {path} exists (use --force to overwrite)", err=True)
        return 2
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        click.echo(f"wrote {path.relative_to(root)}")
    click.echo("next: aidp plan workstreams/example.yaml && aidp run workstreams/example.yaml")
    return 0
