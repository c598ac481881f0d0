#!/usr/bin/env bash
# The KQL analyser test (tests/unit/test_kql_analyzer.py) runs Microsoft's Kusto.Language under
# node: installs the pinned npm package (dev/kql/package-lock.json) into dev/kql/node_modules
# when it is missing or another version. Without node or npm it says so and leaves it to the test
# (which fails under CI rather than skip).
set -euo pipefail
cd "$(dirname "$0")/kql"
wanted=$(sed -n 's/.*"@kusto\/language-service-next": "\([^"]*\)".*/\1/p' package.json)
installed=node_modules/@kusto/language-service-next/package.json
if [ -f "$installed" ] && grep -q "\"version\": *\"$wanted\"" "$installed"; then
  exit 0
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "kql_deps: node and npm are missing (the KQL analyser test needs them)" >&2
  exit 0
fi
echo "kql_deps: installing @kusto/language-service-next $wanted (KQL analyser test)" >&2
npm ci --no-audit --no-fund --silent
