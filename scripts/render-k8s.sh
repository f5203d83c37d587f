#!/usr/bin/env bash
# Renders deploy/k8s/vigil.yaml: the Helm chart deploy/helm/vigil with its default values (release
# "vigil", namespace "default"), for clusters without Helm. Offline: Helm's library from PyPI
# helm-python-sdk in the k8s venv (scripts/setup.sh k8s). tests/tests/helm_chart.rs fails while the
# committed file differs from a fresh render, so run this after changing the chart and commit both.
#
#   scripts/render-k8s.sh            VIGIL_CACHE: where the venv is (default ~/.cache/vigil)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${VIGIL_CACHE:-$HOME/.cache/vigil}/k8s-venv/bin/python
if [ ! -x "$PY" ]; then
  echo "render-k8s: $PY is missing: run scripts/setup.sh k8s first" >&2
  exit 1
fi
"$PY" "$REPO/tests/deploy/check_chart.py" render "$REPO/deploy/k8s/vigil.yaml"
echo "render-k8s: wrote deploy/k8s/vigil.yaml"
