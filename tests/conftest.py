"""Shared fixtures: tiny random checkpoints of the real model types, stitched through stitch.py."""

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

# The suite's own Hugging Face caches, a folder per process (each xdist worker imports this file),
# inherited by the processes tests launch: nothing is read from or left in the user's (datasets'
# prepared rows, lmms-eval's and lm-eval's dataset caches, all under HF_HOME or HF_DATASETS_CACHE).
# Set before anything imports `datasets`, which reads them once.
HF_CACHE = Path(tempfile.mkdtemp(prefix="pytest_hf_home_"))
os.environ.update(HF_HOME=str(HF_CACHE), HF_DATASETS_CACHE=str(HF_CACHE / "datasets"),
                  LMMS_EVAL_DATASETS_CACHE=str(HF_CACHE / "datasets"))
atexit.register(shutil.rmtree, HF_CACHE, ignore_errors=True)

import psutil  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO.parent / "shared" / "assets"
sys.path.insert(0, str(REPO))

from qwen3_smvl import tiny  # noqa: E402
from qwen3_smvl.graft import stitch  # noqa: E402


LAUNCH_TIMEOUT = 300  # seconds; a two-rank launch of the tiny models takes well under a minute


def launch_bounded(command, what, cwd, env):
    """(stdout, stderr) of a multi-process launch that must exit 0. One still running after LAUNCH_TIMEOUT is
    killed with all its ranks (torchrun puts each rank in its own session) and fails the test naming `what`."""
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=LAUNCH_TIMEOUT)
    except subprocess.TimeoutExpired:
        launcher = psutil.Process(process.pid)
        for child in [*launcher.children(recursive=True), launcher]:
            child.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"{what}: no result after {LAUNCH_TIMEOUT} s (ranks hung?)\n{stderr[-3000:]}")
    assert process.returncode == 0, f"{what} failed:\n{stderr[-3000:]}"
    return stdout, stderr


def free_port():
    """A TCP port nothing listens on now: launchers and servers of parallel tests must not share one."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def qwen_tokenizer_dir(tmp_path_factory):
    """The real Qwen3 tokenizer when the shared assets are present, else a stand-in with
    Qwen3's special tokens at their real ids, whose random text streams in words as real text does."""
    real = ASSETS / "qwen3-0.6b"
    if (real / "vocab.json").is_file():
        return real
    out = tmp_path_factory.mktemp("standin_tokenizer")
    tiny.build_standin_tokenizer(out, base_vocab_size=tiny.QWEN3_BASE_VOCAB, word_fillers=True)
    return out


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory, qwen_tokenizer_dir):
    return tiny.build_tiny_qwen(tmp_path_factory.mktemp("tiny_qwen"), qwen_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_smolvlm_dir(tmp_path_factory):
    return tiny.build_tiny_smolvlm(tmp_path_factory.mktemp("tiny_smolvlm"), geometry="tiny")


@pytest.fixture(scope="session")
def bf16_qwen_dir(tmp_path_factory, qwen_tokenizer_dir):
    """The tiny Qwen3 stored in bf16, as the real checkpoints are."""
    return tiny.build_tiny_qwen(tmp_path_factory.mktemp("bf16_qwen"), qwen_tokenizer_dir, dtype=torch.bfloat16)


@pytest.fixture(scope="session")
def bf16_smolvlm_dir(tmp_path_factory):
    return tiny.build_tiny_smolvlm(tmp_path_factory.mktemp("bf16_smolvlm"), geometry="tiny", dtype=torch.bfloat16)


@pytest.fixture(scope="session")
def real_geometry_smolvlm_dir(tmp_path_factory):
    return tiny.build_tiny_smolvlm(tmp_path_factory.mktemp("real_geometry_smolvlm"), geometry="real")


@pytest.fixture(scope="session")
def stitched_dir(tmp_path_factory, tiny_smolvlm_dir, tiny_qwen_dir):
    """A stitched tiny model + processor saved to disk, as `stitch.py --out` writes it."""
    model, processor = stitch(tiny_smolvlm_dir, tiny_qwen_dir)
    out = tmp_path_factory.mktemp("stitched")
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.fixture
def stitched(stitched_dir):
    """A fresh (model, processor) loaded from `stitched_dir` with plain transformers."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoModelForImageTextToText.from_pretrained(stitched_dir), AutoProcessor.from_pretrained(stitched_dir)


@pytest.fixture(scope="session")
def cauldron_dir(tmp_path_factory):
    """A small synthetic the_cauldron (colour naming) with two subsets, in the real on-disk layout."""
    from qwen3_smvl.tiny import write_synthetic_cauldron

    root = tmp_path_factory.mktemp("the_cauldron")
    write_synthetic_cauldron(root, subsets=("cocoqa", "ai2d"), rows_per_subset=48)
    return root


@pytest.fixture(autouse=True)
def restore_environment():
    """Commands called in-process (eval_bench.main sets HF_HUB_OFFLINE, as a run should) must not change
    the environment of later tests or of the processes they launch."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def pytest_configure(config):
    """xdist workers share the cores: each (and what it launches) gets its share of threads. Two workers of
    two OpenMP threads on two cores spin against each other: `make demo-grpo`'s test took 214 s beside a
    busy worker, 50 s with one thread each (36 s alone)."""
    workers = getattr(config, "workerinput", {}).get("workercount")
    if workers:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
