#!/usr/bin/env bash
# Installs the real AI tools aidp drives, each in its own environment under .tools/ (git-ignored):
# Aider (PyPI aider-chat: it pins ~100 packages that conflict with aidp's ranges, so it gets its own
# uv tool environment) and the Codex CLI (npm @openai/codex, whose package carries the native
# binary). Both binaries are linked into .tools/bin. Idempotent: a second run only checks versions.
set -euo pipefail
cd "$(dirname "$0")/.."
AIDER_VERSION=0.86.2
CODEX_VERSION=0.169.0
TOOLS="$PWD/.tools"
export UV_COMPILE_BYTECODE=1  # PYTHONDONTWRITEBYTECODE is set here: compile at install, once
mkdir -p "$TOOLS/bin"

aider_site=("$TOOLS"/uv-tools/aider-chat/lib/python3*/site-packages/aider_chat-"$AIDER_VERSION".dist-info)
if [[ ! -x "$TOOLS/bin/aider" || ! -d "${aider_site[0]}" ]]; then
  # aider-chat supports Python 3.10-3.12; use one already on the machine (no downloads).
  errors="$TOOLS/aider-install.err"
  for python in 3.11 3.12 3.10; do
    if UV_PYTHON_DOWNLOADS=never UV_TOOL_DIR="$TOOLS/uv-tools" UV_TOOL_BIN_DIR="$TOOLS/bin" \
        uv tool install --quiet --force --python "$python" "aider-chat==$AIDER_VERSION" \
        2>"$errors"; then
      break
    fi
  done
  if [[ ! -x "$TOOLS/bin/aider" ]]; then
    echo "setup_ai_tools: could not install aider-chat==$AIDER_VERSION:" >&2
    cat "$errors" >&2
    exit 1
  fi
  rm -f "$errors"
fi

codex_pkg="$TOOLS/codex/node_modules/@openai/codex/package.json"
if [[ ! -f "$codex_pkg" ]] || ! grep -q "\"version\": \"$CODEX_VERSION\"" "$codex_pkg"; then
  npm install --silent --prefix "$TOOLS/codex" --no-audit --no-fund --no-package-lock \
    --no-save "@openai/codex@$CODEX_VERSION" >/dev/null
fi
ln -sfn ../codex/node_modules/.bin/codex "$TOOLS/bin/codex"
