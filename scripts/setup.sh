#!/usr/bin/env bash
# Creates .venv with aidp and its development tools. Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_COMPILE_BYTECODE=1
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
[[ -x .venv/bin/python ]] || uv venv --quiet --python 3.11 .venv 2>/dev/null || uv venv --quiet .venv
uv pip install --quiet --python .venv/bin/python -e '.[dev,postgres,serve,distributed]'
# PYTHONDONTWRITEBYTECODE is set on these machines and the editable install compiles nothing:
# without this, every aidp start compiles aidp's own modules again.
.venv/bin/python -m compileall -q -j 0 src >/dev/null
bash scripts/setup_ai_tools.sh  # Aider and Codex in their own environments under .tools/
bash scripts/setup_lint_tools.sh
bash scripts/setup_openspec.sh
bash scripts/setup_web.sh  # the dashboard's front-end packages (npm ci from package-lock.json)
bash scripts/setup_browser.sh  # Debian's chromium for the dashboard's browser tests
