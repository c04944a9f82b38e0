#!/usr/bin/env bash
# Creates or updates the project's virtual environment (.venv) from requirements*.txt, and repairs a
# torch/torchvision pair that does not load. Idempotent: `make demo`/`make test` run it every time, and
# it returns in seconds when no requirements file changed since its last run and the pair loads.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
pip=("$venv/bin/pip" install --isolated --quiet)  # --isolated: ignore machine-wide pip config/find-links
stamp="$venv/.installed"
pair_loads() { "$venv/bin/python" -c "import torchvision.ops; torchvision.ops.nms" 2>/dev/null; }

# Fast path (a few seconds): nothing changed since the last full run and torch/torchvision still load.
if [ -f "$stamp" ] && [ -z "$(find requirements*.txt scripts/setup_venv.sh -newer "$stamp")" ] && pair_loads; then
  exit 0
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"${pip[@]}" --upgrade pip
for requirements in requirements*.txt; do
  "${pip[@]}" -r "$requirements"
done

# A torch wheel from elsewhere (e.g. a local CPU build found before PyPI) cannot run PyPI's torchvision
# ("operator torchvision::nms does not exist"), and pip keeps it since its version already matches.
if ! pair_loads; then
  pair=$(grep -E '^(torch|torchvision)==' requirements.txt | cut -d' ' -f1 | tr '\n' ' ')
  echo "torch and torchvision do not load together; reinstalling $pair from the registry"
  "${pip[@]}" --force-reinstall $pair
fi
"$venv/bin/python" -c "import torch, torchvision; print('torch', torch.__version__, '| torchvision', torchvision.__version__)"
touch "$stamp"
