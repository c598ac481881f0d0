#!/usr/bin/env bash
# The setup page's browser test needs Debian's headless Chromium and its WebDriver
# (packages chromium and chromium-driver). Installs them when missing and this runs as root
# with apt-get (CI, developer machines); otherwise says what is missing and leaves it to the
# test (which fails under CI rather than skip).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "browser_deps: installing chromium and chromium-driver (setup page browser test)" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
else
  echo "browser_deps: chromium and chromium-driver are missing (apt-get install chromium chromium-driver)" >&2
fi
