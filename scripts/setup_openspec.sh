#!/usr/bin/env bash
# Installs the reference `openspec` CLI (npm @fission-ai/openspec) into .tools/openspec.
# Idempotent and quiet; the tests compare aidp's OpenSpec parser against it.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=.tools/openspec
if [[ -x "$prefix/node_modules/.bin/openspec" ]]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "setup_openspec: npm not found; OpenSpec compatibility tests will be skipped" >&2
  exit 0
fi
mkdir -p "$prefix"
[[ -f "$prefix/package.json" ]] || printf '{\n  "private": true\n}\n' >"$prefix/package.json"
printf 'omit-lockfile-registry-resolved=true\n' >"$prefix/.npmrc"
npm install --prefix "$prefix" --silent --no-audit --no-fund @fission-ai/openspec >/dev/null
