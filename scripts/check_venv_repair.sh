#!/usr/bin/env bash
# Checks docs/troubleshooting.md's torch/torchvision recovery (slow: installs torch twice; not part of the suite).
# It breaks a fresh venv the way a plain `pip install -r requirements.txt` does on a machine whose pip
# config finds a local torch wheel first, then runs the documented repair and imports torchvision.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet -r requirements.txt  # NOT isolated: machine-wide pip config applies
if "$venv/bin/python" -c "import torchvision.ops; torchvision.ops.nms" 2>/dev/null; then
  echo "this machine's pip does not produce the broken pair; nothing to repair"
else
  echo "broken as reported: torchvision does not load"
fi
VENV="$venv" bash scripts/setup_venv.sh
"$venv/bin/python" -c "import torchvision.ops; torchvision.ops.nms; print('repaired: torchvision loads')"
rm -rf "$(dirname "$venv")"
