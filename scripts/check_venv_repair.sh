#!/usr/bin/env bash
# Checks docs/troubleshooting.md's torch/torchvision recovery (slow: installs torch several times; not
# part of the suite). It breaks a venv the way a plain `pip install` does on a machine whose pip config
# finds a local torch wheel first, runs the documented repair and imports torchvision: once in a fresh
# venv, once in a venv that setup_venv.sh had already set up (its stamp newer than every requirements file).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
broken() { ! "$venv/bin/python" -c "import torchvision.ops; torchvision.ops.nms" 2>/dev/null; }
repair() {
  VENV="$venv" bash scripts/setup_venv.sh
  "$venv/bin/python" -c "import torchvision.ops; torchvision.ops.nms; print('repaired: torchvision loads')"
}

python3 -m venv "$venv"
"$venv/bin/pip" install --quiet -r requirements.txt  # NOT isolated: machine-wide pip config applies
broken && echo "fresh venv broken as reported" || echo "this machine's pip does not produce the broken pair"
repair

"$venv/bin/pip" install --quiet --force-reinstall --no-deps "$(grep -E '^torch==' requirements.txt)"
broken && echo "set-up venv broken again by a plain pip install of torch" || echo "not broken by the plain reinstall"
repair
rm -rf "$(dirname "$venv")"
