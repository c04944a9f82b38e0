# Two commands from a fresh clone; each creates or updates .venv first when a requirements file changed.
#   make demo    the offline demo: tiny random checkpoints + synthetic data, train, save, answer
#   make demo-grpo  the offline GRPO demo: a partly trained tiny graft raises its correctness reward (CPU, minutes)
#   make test    the test suite
VENV := .venv
PYTHON := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)  # console scripts (accelerate, transformers) from .venv

.PHONY: demo demo-grpo test venv
demo: venv
	$(PYTHON) train.py demo_train.yaml

# The colour demo's graft stopped at 65 of its 150 steps, then GRPO from it (demo_grpo.yaml says why).
demo-grpo: venv
	$(PYTHON) train.py demo_train.yaml --max_steps 65 --output_dir ./model/demo_partial --eval_strategy no --save_strategy no --demo_max_new_tokens 0
	$(PYTHON) train.py demo_grpo.yaml

# Two pytest-xdist workers; a test file stays on one worker, so its module fixtures start once.
test: venv .cache/llama.cpp/convert_hf_to_gguf.py
	$(PYTHON) -m pytest -q -n 2 --dist loadfile

# Every time: seconds when nothing changed; installs what a requirements file added; repairs torch/torchvision.
venv:
	@bash scripts/setup_venv.sh

# llama.cpp's converter source (no C++ build) for export_gguf.py and its tests
.cache/llama.cpp/convert_hf_to_gguf.py: get_llama_cpp.sh | venv
	PYTHON=$(PYTHON) bash get_llama_cpp.sh
