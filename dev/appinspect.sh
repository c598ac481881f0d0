#!/usr/bin/env bash
# Vets an app package with Splunk AppInspect the way Splunk Cloud does, offline:
#   splunk-appinspect inspect <pkg> --mode precert --included-tags cloud --skip-trusted-libraries-update --ci
# and passes only with 0 failures, 0 future failures and 0 errors. Warnings are listed (docs/package.md
# explains each one). AppInspect lives in its own virtual environment, .venv/appinspect, created
# here from PyPI on first use (pin: dev/requirements-appinspect.txt).
#
# Usage: dev/appinspect.sh [package.tgz]      (default: builds one with package.sh)
# The JSON report is kept in build/appinspect-report.json.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv/appinspect
REQS=dev/requirements-appinspect.txt
REPORT=build/appinspect-report.json

# shellcheck source=dev/python.sh
source "dev/python.sh"

# AppInspect's python-magic needs the libmagic C library (Debian: libmagic1).
ensure_libmagic() {
  if ldconfig -p 2>/dev/null | grep -q 'libmagic\.so\.1'; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "appinspect: installing libmagic1 (needed by AppInspect's python-magic)" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmagic1 >/dev/null
  else
    echo "appinspect: AppInspect needs the libmagic library (apt-get install libmagic1 / brew install libmagic)" >&2
    exit 1
  fi
}

ensure_venv() {
  local stamp python
  stamp="$(cat "$REQS" dev/appinspect.sh | sha256sum | cut -c1-16)"
  if [ -f "$VENV/.stamp" ] && [ "$(cat "$VENV/.stamp")" = "$stamp" ]; then return 0; fi
  python="$(find_python 3.13 || find_python 3.12 || find_python 3.11 || command -v python3)" \
    || { echo "appinspect: no Python 3 found" >&2; exit 1; }
  echo "appinspect: creating $VENV with $python" >&2
  rm -rf "$VENV"
  "$python" -m venv "$VENV"
  PIP_ROOT_USER_ACTION=ignore "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS" \
    2> >(grep -v -E "^WARNING: Location '[^']*' is ignored" >&2)
  echo "$stamp" > "$VENV/.stamp"
}

ensure_libmagic
ensure_venv

PACKAGE="${1:-}"
if [ -z "$PACKAGE" ]; then
  PACKAGE="$(./package.sh | tail -n 1)"
fi
[ -f "$PACKAGE" ] || { echo "appinspect: no package at $PACKAGE" >&2; exit 1; }

mkdir -p "$(dirname "$REPORT")"
rm -f "$REPORT"
echo "appinspect: inspecting $(basename "$PACKAGE") (mode precert, tags cloud, offline)" >&2
status=0
"$VENV/bin/splunk-appinspect" inspect "$PACKAGE" --mode precert --included-tags cloud \
  --skip-trusted-libraries-update --ci --max-messages all \
  --data-format json --output-file "$REPORT" > build/appinspect-output.txt 2>&1 || status=$?
# Exit codes: 0 clean, 103 warnings only, 104 future failures, 101 failures; others: it broke.
if [ ! -s "$REPORT" ]; then
  cat build/appinspect-output.txt >&2
  echo "appinspect: no report (exit $status)" >&2
  exit 1
fi

"$VENV/bin/python" - "$REPORT" <<'EOF'
import json
import sys

report = json.load(open(sys.argv[1]))
summary = report["summary"]
bad = ("error", "failure", "future_failure")
for app in report["reports"]:
    for group in app["groups"]:
        for check in group["checks"]:
            if check["result"] in bad + ("warning",):
                print("appinspect: %-14s %s" % (check["result"], check["name"]))
                if check["result"] in bad:
                    for message in check["messages"]:
                        print("    %s" % message.get("message"))
print("appinspect: " + ", ".join("%s %s" % (summary.get(key, 0), key) for key in
                                 ("failure", "future_failure", "error", "warning", "skipped", "success")))
sys.exit(1 if any(summary.get(key, 0) for key in bad) else 0)
EOF
