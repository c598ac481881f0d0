#!/usr/bin/env bash
# The package as an admin gets it, tested as Splunk runs it (make test-package):
#   1. builds dist-style TA-defender-ipstats-<version>.tgz with package.sh (into a temp folder);
#   2. vets it with AppInspect, cloud tags, offline (dev/appinspect.sh): 0 failures, 0 future failures;
#   3. unpacks it into a fresh SPLUNK_HOME/etc/apps/ and runs the protocol tests against that copy,
#      with the command run by plain pyenv CPython 3.9 and 3.13 ($SPLUNK_HOME/bin/pythonX.Y, a
#      wrapper for "python3 -E -s -S": no virtualenv, no site-packages, no PYTHON* variables,
#      nothing but the standard library and the app's own lib/). pytest itself stays in the
#      dev venv, which the stand-ins need.
# PACKAGE_PYTHONS (default "3.9 3.13") picks the Pythons.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

PACKAGE_PYTHONS="${PACKAGE_PYTHONS:-3.9 3.13}"
PACKAGE_TESTS=(tests/system/test_package.py tests/system/test_command.py tests/system/test_recordings.py
               tests/system/test_lean_path.py tests/integration/test_certificates.py tests/integration/test_proxies.py
               tests/integration/test_sovereign_clouds.py tests/system/test_least_privilege.py tests/system/test_ui.py
               tests/system/test_purge.py tests/integration/test_published.py tests/system/test_alert_action.py)

# shellcheck source=dev/python.sh
source "dev/python.sh"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/TA-defender-ipstats-pkgtest.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "== package" >&2
PACKAGE="$(DIST_DIR="$WORK/dist" ./package.sh | tail -n 1)"

echo "== AppInspect (cloud, precert)" >&2
dev/appinspect.sh "$PACKAGE"

SPLUNK_HOME="$WORK/splunk"
mkdir -p "$SPLUNK_HOME/etc/apps" "$SPLUNK_HOME/bin"
tar -xzf "$PACKAGE" -C "$SPLUNK_HOME/etc/apps"
APP_ROOT="$SPLUNK_HOME/etc/apps/TA-defender-ipstats"

for version in $PACKAGE_PYTHONS; do
  python="$(find_python "$version")" || { echo "test_package: no Python $version (pyenv or PATH)" >&2; exit 1; }
  wrapper="$SPLUNK_HOME/bin/python$version"
  printf '#!/bin/sh\nexec "%s" -E -s -S "$@"\n' "$python" > "$wrapper"
  chmod 755 "$wrapper"
  echo "== packaged app on $("$wrapper" -c 'import sys; print("Python", sys.version.split()[0])') ($python -E -s -S)" >&2
  DEFENDERIPSTATS_APP_ROOT="$APP_ROOT" DEFENDERIPSTATS_PYTHON="$wrapper" DEFENDERIPSTATS_PACKAGE="$PACKAGE" \
    "$ROOT/.venv/py3.13/bin/python" -m pytest -q -p no:cacheprovider "${PACKAGE_TESTS[@]}"
done
