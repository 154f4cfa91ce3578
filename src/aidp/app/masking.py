"""Secrets masked in what the application layer shows of a run's files.

The engine masks declared secrets in every log, finding and diagnostics bundle as it writes
them. A file a step writes is the user's content: aidp commits it as written (the repository is
the user's, and rewriting a step's output would change what the checks saw), but wherever aidp
*shows* such content -- the checkpoint diff of ``GET .../diff`` -- the values of the run's
declared secrets are replaced by ``***``, as in logs. The values come from this process's
environment, which is the environment the run's workers inherit.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from aidp.config import Settings
from aidp.process.capped_log import MIN_SECRET_LEN

__all__ = ["mask_text", "run_secret_names"]


def run_secret_names(plan_json: str, settings: Settings) -> set[str]:
    """Every environment variable a step of the run may have been given as a secret: the
    ``env`` of each workstream and step of the plan, and each tool profile's ``env`` and API
    key variable (more than one step used is harmless: masking more never shows a secret)."""
    from aidp.model.plan import Plan

    plan = Plan.from_json(plan_json)
    names: set[str] = set()
    for ws in plan.workstreams:
        names.update(ws.env)
        for step in ws.steps:
            names.update(step.env)
    for profile in settings.tools.values():
        names.update(profile.env)
        key = profile.key_env()
        if key:
            names.add(key)
    return names


def mask_text(text: str, names: Iterable[str], environ: Mapping[str, str] | None = None) -> str:
    """``text`` with the value of every variable ``names`` (in ``environ``, default this
    process's environment) replaced by ``***``, longest first (so one secret containing
    another is masked whole); values shorter than the log masker's minimum are left alone."""
    env = os.environ if environ is None else environ
    values = sorted({v for n in names if len(v := env.get(n, "")) >= MIN_SECRET_LEN},
                    key=len, reverse=True)
    for value in values:
        text = text.replace(value, "***")
    return text
