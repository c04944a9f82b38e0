# Two commands from a fresh clone; each creates or updates .venv first when a requirements file changed.
#   make demo    the offline demo: tiny random checkpoints + synthetic data, train, save, answer
#   make test    the test suite
VENV := .venv
PYTHON := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)  # console scripts (accelerate, transformers) from .venv

.PHONY: demo test venv
demo: $(VENV)/.installed
	$(PYTHON) train.py demo_train.yaml

test: $(VENV)/.installed
	$(PYTHON) -m pytest -q

venv: $(VENV)/.installed

$(VENV)/.installed: $(wildcard requirements*.txt) scripts/setup_venv.sh
	bash scripts/setup_venv.sh
