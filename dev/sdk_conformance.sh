#!/usr/bin/env bash
# Run splunk-sdk-python's own integration tests against the splunkd stand-in
# (tests/standins/splunkd/), as a conformance check of the stand-in.
#
#   dev/sdk_conformance.sh [SDK_GIT_DIR] [extra pytest args...]
#
# SDK_GIT_DIR is a git directory of splunk/splunk-sdk-python (bare or not),
# default /work/.mirror/splunk+splunk-sdk-python/repo.  The SDK's test files are
# exported with `git show` into a temporary directory that is deleted afterwards;
# nothing of the SDK is copied into this repository.  The tests run with this
# repository's dev virtualenv (PYTHON, default .venv/py3.13/bin/python) and its
# installed splunklib, not the SDK checkout's.
#
# Environment: PYTHON (interpreter), SDK_REF (commit to export, default HEAD),
# KEEP_WORKDIR=1 (keep the temporary directory and print its path).
set -euo pipefail

SDK_GIT="${1:-/work/.mirror/splunk+splunk-sdk-python/repo}"
shift || true
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$REPO/.venv/py3.13/bin/python}"
REF="${SDK_REF:-HEAD}"
case "$PY" in
    /*) ;;
    */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;;  # keep the venv symlink
esac

if ! git -C "$SDK_GIT" rev-parse --verify --quiet "$REF^{commit}" >/dev/null; then
    echo "not a git directory with $REF: $SDK_GIT" >&2
    exit 2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sdk-conformance.XXXXXX")"
cleanup() {
    if [ "${KEEP_WORKDIR:-0}" = "1" ]; then
        echo "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

FILES=(
    tests/testlib.py
    tests/integration/test_storage_passwords.py
    tests/integration/test_kvstore_conf.py
    tests/integration/test_kvstore_data.py
    tests/integration/test_kvstore_batch.py
    utils/__init__.py
    utils/cmdopts.py
)
for f in "${FILES[@]}"; do
    mkdir -p "$WORK/$(dirname "$f")"
    git -C "$SDK_GIT" show "$REF:$f" >"$WORK/$f"
done
echo "exported ${#FILES[@]} files from $(git -C "$SDK_GIT" rev-parse --short "$REF") of $SDK_GIT"

# The SDK's utils/cmdopts.py reads .env with python-dotenv, which the dev
# virtualenvs do not carry: provide a minimal stand-in when it is missing.
if ! "$PY" -c 'import dotenv' 2>/dev/null; then
    cat >"$WORK/dotenv.py" <<'PYEOF'
"""Minimal replacement for python-dotenv's dotenv_values (KEY=value lines)."""


def dotenv_values(path):
    values = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values
PYEOF
fi

cat >"$WORK/pytest.ini" <<'EOF'
[pytest]
markers =
    app: requires sdk-app-collection
    smoke: essential smoke tests
EOF

# A driver that starts the stand-in in-process, writes the .env the SDK's
# testlib reads (host/port/scheme/credentials), then runs pytest.
cat >"$WORK/run_conformance.py" <<'PYEOF'
import os
import sys

repo, work = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(repo, "tests"))
from standins.splunkd import SplunkdStandin  # noqa: E402

standin = SplunkdStandin().start()
with open(os.path.join(work, ".env"), "w") as env:
    env.write("host=127.0.0.1\nport=%d\nscheme=http\nusername=admin\npassword=changeme\n" % standin.port)
print("splunkd stand-in at %s" % standin.base_url, flush=True)

import pytest  # noqa: E402

os.chdir(work)
sys.path.insert(0, work)
args = ["-q", "-p", "no:cacheprovider", "-rfE", "--rootdir", work,
        "tests/integration/test_storage_passwords.py", "tests/integration/test_kvstore_conf.py",
        "tests/integration/test_kvstore_data.py", "tests/integration/test_kvstore_batch.py"]
code = pytest.main(args + sys.argv[3:])
standin.stop()
print("requests served: %d" % len(standin.requests))
sys.exit(int(code))
PYEOF

cd "$WORK"
"$PY" run_conformance.py "$REPO" "$WORK" "$@"
