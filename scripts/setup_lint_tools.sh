#!/usr/bin/env bash
# Installs eslint 9 and typescript 5 into .tools/lint for the detector tests (real tools, real
# output). Idempotent and quiet; without npm it says so and does nothing (those tests skip).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=.tools/lint
if ! command -v npm >/dev/null 2>&1; then
  echo "setup_lint_tools: npm not found; eslint/tsc detector tests will be skipped" >&2
  exit 0
fi
if [[ -x $prefix/node_modules/.bin/eslint && -x $prefix/node_modules/.bin/tsc ]]; then
  exit 0
fi
mkdir -p "$prefix"
# npm's lock file must not record registry addresses (see DESIGN.md).
printf 'omit-lockfile-registry-resolved=true\n' > "$prefix/.npmrc"
npm install --silent --no-audit --no-fund --prefix "$prefix" eslint@9 typescript@5 >/dev/null
