#!/usr/bin/env bash
# Builds the installable Splunk app package:
#   dist/TA-defender-ipstats-<version>.tgz
# with one top folder, TA-defender-ipstats/, holding only what Splunk needs:
#   default/ bin/ lib/ metadata/ appserver/ README/ README.md CHANGELOG.md LICENSE (never docs/, tests/, dev/, bench/)
# The version is read from default/app.conf, [id] version (the single source of truth;
# [launcher] version must carry the same value).
#
# Usage: ./package.sh            (run from anywhere; paths are relative to this script)
#        DIST_DIR=/some/dir ./package.sh
set -euo pipefail

APP_ID="TA-defender-ipstats"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIST_DIR="${DIST_DIR:-$ROOT/dist}"
# What goes into the package, relative to the repository root (= the app folder).
REQUIRED_ITEMS=(default bin metadata LICENSE)
OPTIONAL_ITEMS=(lib appserver README README.md CHANGELOG.md)

die() { echo "package.sh: $*" >&2; exit 1; }
warn() { echo "package.sh: warning: $*" >&2; }

# Prints the value of <key> in [<stanza>] of an ini-style .conf file (last one wins, as in Splunk).
conf_value() {
  local file="$1" stanza="$2" key="$3"
  awk -v stanza="$stanza" -v key="$key" '
    { sub(/\r$/, "") }
    /^[[:space:]]*[#;]/ { next }
    /^[[:space:]]*\[.*\][[:space:]]*$/ {
      name = $0; sub(/^[[:space:]]*\[/, "", name); sub(/\][[:space:]]*$/, "", name)
      in_stanza = (name == stanza); next
    }
    in_stanza {
      line = $0
      if (match(line, /^[[:space:]]*[^=[:space:]]+[[:space:]]*=/)) {
        k = substr(line, 1, RLENGTH); sub(/[[:space:]]*=$/, "", k); sub(/^[[:space:]]*/, "", k)
        if (k == key) {
          v = substr(line, RLENGTH + 1); sub(/^[[:space:]]+/, "", v); sub(/[[:space:]]+$/, "", v)
          value = v; found = 1
        }
      }
    }
    END { if (found) print value; else exit 1 }
  ' "$file"
}

# --- version -------------------------------------------------------------------------------
APP_CONF="$ROOT/default/app.conf"
[ -f "$APP_CONF" ] || die "no default/app.conf"
VERSION="$(conf_value "$APP_CONF" id version)" || die "default/app.conf has no [id] version"
[[ "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$ ]] \
  || die "[id] version '$VERSION' in default/app.conf is not a semantic version (x.y.z)"
LAUNCHER_VERSION="$(conf_value "$APP_CONF" launcher version)" || LAUNCHER_VERSION=""
[ "$LAUNCHER_VERSION" = "$VERSION" ] \
  || die "[launcher] version '$LAUNCHER_VERSION' differs from [id] version '$VERSION' in default/app.conf"
PACKAGE_ID="$(conf_value "$APP_CONF" package id)" || PACKAGE_ID=""
[ "$PACKAGE_ID" = "$APP_ID" ] || die "[package] id '$PACKAGE_ID' in default/app.conf is not $APP_ID"

# --- staging -------------------------------------------------------------------------------
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/$APP_ID-package.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
APP_DIR="$STAGE/$APP_ID"
mkdir -p "$APP_DIR"

for item in "${REQUIRED_ITEMS[@]}"; do
  [ -e "$ROOT/$item" ] || die "$item is missing"
done
for item in "${REQUIRED_ITEMS[@]}" "${OPTIONAL_ITEMS[@]}"; do
  if [ -e "$ROOT/$item" ]; then
    cp -RL "$ROOT/$item" "$APP_DIR/"
  else
    warn "$item is missing; packaging without it"
  fi
done

# ===========================================================================================
# VENDORED DEPENDENCIES
# Splunk runs bin/defenderipstats.py with its own Python (3.9 on 9.x, 3.9 or 3.13 on 10.x) and
# nothing but the app's lib/ on top of the standard library, so every runtime dependency is
# installed into the staged lib/ (never into the repository's lib/), with its .dist-info:
#   - requirements.txt (the runtime pins, plus whatever they pull in), resolved on CPython 3.9,
#     then on 3.13 with the 3.9 versions as constraints, so that one lib/ serves both. Each
#     resolution runs on that Python itself: pip evaluates environment markers such as
#     python_version < "3.11" on the interpreter that runs it, whatever --python-version says;
#   - requirements-splunklib.txt (splunk-sdk: it declares Python >= 3.13 on PyPI, but its
#     splunklib package runs on 3.9), without dependencies (it has none);
#   - only pure-Python wheels (py3-none-any): one copy serves 3.9, 3.13, every OS and CPU. A
#     dependency without one stops the build with a message, rather than shipping a compiled
#     extension for one Python or platform only.
# NOT_VENDORED: cryptography and its cffi/pycparser come with msal and PyJWT but are only
# imported for certificate credentials (auth = certificate), which this version does not
# implement; msal with a client secret never imports them (tests/system/test_package.py checks it).
# They are compiled code (see docs/package.md, "What the package contains").
NOT_VENDORED="${NOT_VENDORED:-cryptography cffi pycparser}"

# The Python Splunk runs, of one version: pyenv's, else pythonX.Y on PATH (bootstrap.sh's rule).
find_python() {
  local want="$1" candidate
  for candidate in "$(pyenv root 2>/dev/null)/versions/$want".*/bin/python3 "python$want"; do
    command -v "$candidate" >/dev/null 2>&1 || continue
    "$candidate" -m pip --version >/dev/null 2>&1 || continue
    echo "$candidate"; return 0
  done
  return 1
}

# pip, quiet, with this machine's notes about absent local mirrors filtered out.
pip_quiet() {
  local py="$1"; shift
  PIP_ROOT_USER_ACTION=ignore "$py" -m pip --disable-pip-version-check --no-input --quiet "$@" \
    2> >(grep -v -E "^WARNING: Location '[^']*' is ignored" >&2)
}

vendor_dependencies() {
  local py39 py313 work pins item
  [ -f "$ROOT/requirements.txt" ] || die "requirements.txt is missing"
  py39="$(find_python 3.9)" || die "no Python 3.9 with pip found (pyenv, or python3.9 on PATH)"
  py313="$(find_python 3.13)" || die "no Python 3.13 with pip found (pyenv, or python3.13 on PATH)"
  work="$STAGE/vendor"
  mkdir -p "$work/lib"

  # 1. Resolve, installing nothing: on 3.9, then on 3.13 held to the versions chosen for 3.9.
  echo "package.sh: resolving requirements.txt on $py39 and on $py313" >&2
  pip_quiet "$py39" install --dry-run --target "$work/dry" --report "$work/report-3.9.json" \
    --only-binary=:all: -r "$ROOT/requirements.txt" || die "requirements.txt does not resolve on Python 3.9"
  "$py313" -c '
import json, sys
for item in json.load(open(sys.argv[1]))["install"]:
    print("%s==%s" % (item["metadata"]["name"], item["metadata"]["version"]))
' "$work/report-3.9.json" > "$work/constraints-3.9.txt"
  pip_quiet "$py313" install --dry-run --target "$work/dry" --report "$work/report-3.13.json" \
    --only-binary=:all: -r "$ROOT/requirements.txt" -c "$work/constraints-3.9.txt" \
    || die "requirements.txt does not resolve on Python 3.13 with the versions chosen for 3.9"
  # The union of both (a dependency may be needed on one Python only), minus NOT_VENDORED.
  pins="$("$py313" -c '
import json, re, sys
def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()
skip = {norm(n) for n in sys.argv[3].split()}
pins = {}
for path in sys.argv[1:3]:
    for item in json.load(open(path))["install"]:
        meta = item["metadata"]
        if norm(meta["name"]) not in skip:
            pins.setdefault(norm(meta["name"]), "%s==%s" % (meta["name"], meta["version"]))
print(" ".join(sorted(pins.values())))
' "$work/report-3.9.json" "$work/report-3.13.json" "$NOT_VENDORED")"
  [ -n "$pins" ] || die "requirements.txt resolved to no package"

  # 2. Install exactly that set, pure-Python wheels only, without resolving again.
  echo "package.sh: vendoring $pins" >&2
  # shellcheck disable=SC2086
  pip_quiet "$py313" install --no-deps --no-compile --target "$work/lib" --only-binary=:all: \
    --implementation py --abi none --platform any --python-version 3.9 $pins \
    || die "a dependency above has no pure-Python (py3-none-any) wheel; see docs/package.md, 'What the package contains'"
  if [ -f "$ROOT/requirements-splunklib.txt" ]; then
    pip_quiet "$py313" install --no-deps --no-compile --target "$work/lib" --only-binary=:all: \
      --implementation py --abi none --platform any --python-version 3.13 --ignore-requires-python \
      -r "$ROOT/requirements-splunklib.txt" || die "splunk-sdk (requirements-splunklib.txt) could not be vendored"
  fi

  # 3. Only what runs: no console scripts, test suites or benchmarks of the dependencies, and
  #    not splunklib/ai (splunk-sdk's optional AI agents: they need the [ai] extra, which is not
  #    vendored, and are written for Python 3.10+, so they do not even compile on 3.9).
  rm -rf "$work/lib/bin" "$work/lib/splunklib/ai"
  find "$work/lib" -depth -type d \( -name tests -o -name test -o -name benchmarks \) \
    -not -path '*.dist-info*' -exec rm -rf {} +
  if find "$work/lib" -type f \( -name '*.so' -o -name '*.pyd' -o -name '*.dll' -o -name '*.dylib' \) | grep -q .; then
    die "a vendored dependency contains compiled code; only pure-Python wheels are vendored"
  fi

  # 4. Beside the app's own code; a name clash would shadow one or the other.
  mkdir -p "$APP_DIR/lib"
  for item in "$work/lib"/*; do
    [ -e "$APP_DIR/lib/$(basename "$item")" ] && die "lib/$(basename "$item") exists in the repository and in a dependency"
    mv "$item" "$APP_DIR/lib/"
  done
  rm -rf "$work"
}
vendor_dependencies
# ===========================================================================================

# --- clean-up: nothing that Splunk or AppInspect must not see ------------------------------
# local/ and users/ are never copied (not in the item list); drop local.meta and build litter.
rm -f "$APP_DIR/metadata/local.meta"
find "$APP_DIR" -depth \( -name __pycache__ -o -name .pytest_cache -o -name .ruff_cache \
  -o -name .mypy_cache -o -name '.git*' \) -exec rm -rf {} +
find "$APP_DIR" \( -name '*.pyc' -o -name '*.pyo' -o -name .DS_Store -o -name '._*' \
  -o -name '*.swp' -o -name '*~' \) -type f -delete
find "$APP_DIR" -mindepth 1 -type d -empty -delete

# --- modes: directories 755, files 644 -----------------------------------------------------
# Nothing is executable: splunkd runs bin/*.py through its own Python interpreter
# (commands.conf filename = *.py), for which AppInspect recommends 644; execute bits
# outside bin/ fail AppInspect.
find "$APP_DIR" -type d -exec chmod 755 {} +
find "$APP_DIR" -type f -exec chmod 644 {} +

# --- archive -------------------------------------------------------------------------------
mkdir -p "$DIST_DIR"
PACKAGE="$DIST_DIR/$APP_ID-$VERSION.tgz"
rm -f "$PACKAGE"
TAR_OPTS=()
if tar --version 2>/dev/null | grep -q 'GNU tar'; then
  # Fixed order and owner; with SOURCE_DATE_EPOCH set, fixed timestamps too (same input,
  # same archive). Without it the files carry the build time.
  TAR_OPTS=(--sort=name --owner=0 --group=0 --numeric-owner --format=gnu
            "--mtime=@${SOURCE_DATE_EPOCH:-$(date +%s)}")
fi
(cd "$STAGE" && tar ${TAR_OPTS[@]+"${TAR_OPTS[@]}"} -cf - "$APP_ID") | gzip -n -9 > "$PACKAGE"

echo "$PACKAGE"
