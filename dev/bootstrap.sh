#!/usr/bin/env bash
# Creates the development virtual environments, one per Python that Splunk ships (3.9 and 3.13),
# with the app's runtime dependencies and the test tools. Idempotent: does nothing when the
# requirement files have not changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

SPLUNK_PYTHONS="${SPLUNK_PYTHONS:-3.9 3.13}"
# splunk-sdk's pin lives in requirements-splunklib.txt (package.sh vendors it from there too).
SPLUNK_SDK_REQS="requirements-splunklib.txt"

# shellcheck source=dev/python.sh
source "dev/python.sh"

stamp_of() { cat requirements.txt requirements-dev.txt "$SPLUNK_SDK_REQS" dev/bootstrap.sh | sha256sum | cut -c1-16; }

for version in $SPLUNK_PYTHONS; do
  venv=".venv/py$version"
  stamp="$(stamp_of)"
  if [ -f "$venv/.stamp" ] && [ "$(cat "$venv/.stamp")" = "$stamp" ]; then
    continue
  fi
  python="$(find_python "$version")" || { echo "bootstrap: no Python $version found (pyenv or PATH)" >&2; exit 1; }
  echo "bootstrap: creating $venv with $python" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
  # splunk-sdk 3.x declares Python >= 3.13 but its splunklib package runs on 3.9 (Splunk ships it so).
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python -r "$SPLUNK_SDK_REQS"
  echo "$stamp" > "$venv/.stamp"
done
