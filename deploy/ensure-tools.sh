#!/usr/bin/env bash
# Installs what the tests need from Debian when it is missing (idempotent):
# - promtool + prometheus (package `prometheus`) for the deploy and observability tests;
# - chromium (package `chromium`) for the console's browser tests, which drive it with Playwright
#   through its executable path (no browser is ever downloaded).
# (docker compose and the Kubernetes schemas come from PyPI with the dev extras.)
set -euo pipefail

missing=()
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    missing+=(prometheus)
fi
if ! command -v chromium >/dev/null 2>&1; then
    missing+=(chromium)
fi
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "deploy/ensure-tools.sh: install the Debian package(s) ${missing[*]} (needs root)" >&2; exit 1; }
    SUDO="sudo"
fi
echo "installing Debian package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The tests start their own Prometheus on a free port; the packaged daemon is not wanted.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v chromium >/dev/null
