#!/usr/bin/env bash
# Builds the installable Splunk app package:
#   dist/TA-defender-ipstats-<version>.tgz
# with one top folder, TA-defender-ipstats/, holding only what Splunk needs:
#   default/ bin/ lib/ metadata/ README/ README.md LICENSE
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
OPTIONAL_ITEMS=(lib README README.md)

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
# VENDORED DEPENDENCIES (placeholder, filled in by a later issue)
# The runtime dependencies of requirements.txt are to be installed into "$APP_DIR/lib"
# here (into the staged copy, never into the repository's lib/), e.g. with
# pip install --target, keeping each package's .dist-info. Nothing is vendored yet.
vendor_dependencies() {
  :
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
