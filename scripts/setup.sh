#!/usr/bin/env bash
# Set up brainxai on a fresh Debian/Ubuntu machine: system packages and the Python venv.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(orthanc orthanc-python orthanc-dicomweb orthanc-webviewer dcmtk dicom3tools chromium)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The Debian package starts a system-wide Orthanc on 4242/8042; brainxai runs its own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet orthanc 2>/dev/null; then
  echo "setup: note: a system Orthanc service is running (ports 4242/8042)"
fi

# --- distributed mode (issue 14): RabbitMQ and PostgreSQL from Debian packages ------------
# Used by `brainxai worker` deployments and by tests/integration/test_distributed.py, which
# starts private instances on free ports under a temp dir (never the system services).
DIST_PACKAGES=(rabbitmq-server postgresql iproute2)
dist_missing=()
for p in "${DIST_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || dist_missing+=("$p")
done
if [ ${#dist_missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages for distributed mode: ${dist_missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${dist_missing[@]}"
fi
# --- end distributed mode ----------------------------------------------------------------

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: a CPU build (a loose range would pull a multi-GB CUDA build).
.venv/bin/python -m pip install -q "torch==2.13.0" || \
  .venv/bin/python -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
.venv/bin/python -m pip install -q -e ".[dev]"
# Test-only cross-check reference; --no-deps keeps PyPI torchvision out (see pyproject.toml).
.venv/bin/python -m pip install -q --no-deps "grad-cam==1.5.7"
# --- OHIF viewer (issue 13): @ohif/app pinned, unpacked under var/ohif/, served by Orthanc ---
bash scripts/setup_viewer.sh
# --- end OHIF viewer ---
echo "setup: done (.venv ready)"
