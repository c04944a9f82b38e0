"""Every benchmark still runs against today's code (two had broken unnoticed when signatures changed):
each on tiny checkpoints or its smallest setting, checked for its table, not for its figures."""

import subprocess
import sys

import pytest

from conftest import REPO

BENCHES = {
    "measure_flops": ([], "TFLOP/sample"),
    "measure_resolution": ([], "tokens/sample"),
    "measure_stage_memory": ([], "weights+grads+AdamW GiB"),
    "measure_train_step": (["--steps", "1"], "packed"),
    "measure_deploy": (["--routes", "fp32", "--new-tokens", "2"], "| transformers fp32 |"),
    "measure_collate": (["--seconds", "0.1"], "samples/s per thread"),
    "measure_packing": (["--rows", "16", "--step-rows", "4", "--rounds", "1"], "packing / longest:"),
    "measure_load_jsonl": (["--rows", "500"], "cached load: 500 rows"),
    "gpu_benchmark": (["--steps", "1", "--rows", "6", "--edges", "32"], "edge 32 packed, per-sample sdpa    "),
}
TAKES_CHECKPOINTS = {"measure_flops", "measure_resolution", "measure_stage_memory", "measure_train_step", "measure_deploy",
                     "gpu_benchmark"}


@pytest.mark.parametrize("name", BENCHES)
def test_benchmark_runs_and_prints_its_table(name, tiny_smolvlm_dir, tiny_qwen_dir, tmp_path):
    args, table_text = BENCHES[name]
    if name in TAKES_CHECKPOINTS:
        args = [*args, "--smolvlm", str(tiny_smolvlm_dir), "--qwen", str(tiny_qwen_dir)]
    if name == "measure_deploy":
        args = [*args, "--model-dir", str(tmp_path / "model")]
    result = subprocess.run([sys.executable, str(REPO / "throughput" / f"{name}.py"), *args], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert table_text in result.stdout, result.stdout[-3000:]
