"""download_resource.sh, run against stub `modelscope` / `hf` executables that log their arguments."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qwen3_smvl.data.the_cauldron import ALL_SUBSETS

SCRIPT = Path(__file__).resolve().parents[1] / "download_resource.sh"
SYSTEM_PATH = "/usr/bin:/bin"
MODELS = [["Qwen/Qwen3-0.6B", "--local-dir", "model/Qwen3-0.6B"],
          ["HuggingFaceTB/SmolVLM2-256M-Video-Instruct", "--local-dir", "model/SmolVLM2-256M-Video-Instruct"]]

# Logs its argv, then creates what a real download would: config.json for a model, a parquet file per subset.
STUB = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0])] + args) + "\\n")
local_dir = args[args.index("--local-dir") + 1]
content = ""
if "--include" in args:
    if os.environ.get("STUB_NO_MATCH"):  # the include pattern matched nothing, e.g. a misspelt subset
        sys.exit(0)
    target, name = os.path.join(local_dir, args[args.index("--include") + 1].split("/")[0]), "train-0.parquet"
elif "ShareGPT-Chinese-English-90k" in args[1]:  # the replay set: a Firefly-layout conversation
    target, name = os.path.join(local_dir, "sharegpt_jsonl"), "common_zh_70k.jsonl"
    content = json.dumps({{"conversation_id": 1, "category": "x", "conversation": [{{"human": "你好", "assistant": "你好！"}}]}})
elif "--repo-type" in args:  # a text benchmark's dataset repository
    target, name = local_dir, "README.md"
else:
    target, name = local_dir, "config.json"
os.makedirs(target, exist_ok=True)
with open(os.path.join(target, name), "w") as f:
    f.write(content)
"""


@pytest.fixture
def bin_dir(tmp_path):
    path = tmp_path / "bin"
    path.mkdir()
    for name in ("modelscope", "hf"):
        (path / name).write_text(STUB)
        (path / name).chmod(0o755)
    return path


def run(tmp_path, *args, path, **env):
    env = {"PATH": path, "STUB_LOG": str(tmp_path / "calls.log"), **env}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True)


def calls(tmp_path):
    log = tmp_path / "calls.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def dataset_call(cli, repo, subset):
    return [cli, "download", repo, "--repo-type", "dataset", "--include", f"{subset}/*",
            "--local-dir", "data/the_cauldron"]


def test_all_subsets(tmp_path, bin_dir):
    result = run(tmp_path, path=f"{bin_dir}:{SYSTEM_PATH}")
    assert result.returncode == 0, result.stderr
    expected = [["modelscope", "download", *m] for m in MODELS]
    expected += [dataset_call("modelscope", "AI-ModelScope/the_cauldron", s) for s in ALL_SUBSETS]
    assert calls(tmp_path) == expected
    assert all((tmp_path / "data/the_cauldron" / s / ".complete").is_file() for s in ALL_SUBSETS)
    assert (tmp_path / "model/Qwen3-0.6B/.complete").is_file()


def test_one_subset_then_rerun_skips(tmp_path, bin_dir):
    result = run(tmp_path, "cocoqa", path=f"{bin_dir}:{SYSTEM_PATH}")
    assert result.returncode == 0, result.stderr
    expected = [["modelscope", "download", *m] for m in MODELS]
    expected.append(dataset_call("modelscope", "AI-ModelScope/the_cauldron", "cocoqa"))
    assert calls(tmp_path) == expected
    assert sorted(p.name for p in (tmp_path / "data/the_cauldron").iterdir()) == ["cocoqa"]

    rerun = run(tmp_path, "cocoqa", path=f"{bin_dir}:{SYSTEM_PATH}")
    assert rerun.returncode == 0, rerun.stderr
    assert calls(tmp_path) == expected
    assert rerun.stdout.count("already complete") == 3

    run(tmp_path, "cocoqa", "ai2d", path=f"{bin_dir}:{SYSTEM_PATH}")
    assert calls(tmp_path)[len(expected):] == [dataset_call("modelscope", "AI-ModelScope/the_cauldron", "ai2d")]


def test_empty_download_is_not_marked_complete(tmp_path, bin_dir):
    result = run(tmp_path, "typo", path=f"{bin_dir}:{SYSTEM_PATH}", STUB_NO_MATCH="1")
    assert result.returncode == 1
    assert "warning: typo is not one of the subsets" in result.stderr
    assert "no *.parquet in data/the_cauldron/typo" in result.stderr
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob(".complete")) == [
        "model/Qwen3-0.6B/.complete", "model/SmolVLM2-256M-Video-Instruct/.complete"]


def test_unknown_subset_warns(tmp_path, bin_dir):
    result = run(tmp_path, "vqav2", path=f"{bin_dir}:{SYSTEM_PATH}")
    assert result.returncode == 0, result.stderr
    assert "warning: vqav2 is not one of the subsets" in result.stderr
    assert calls(tmp_path)[-1] == dataset_call("modelscope", "AI-ModelScope/the_cauldron", "vqav2")


@pytest.mark.parametrize("cli, hf_flag", [("modelscope", None), ("hf", "--hf")])
def test_missing_cli_exits_1(tmp_path, cli, hf_flag):
    assert shutil.which(cli, path=SYSTEM_PATH) is None
    result = run(tmp_path, *filter(None, [hf_flag, "cocoqa"]), path=SYSTEM_PATH)
    assert result.returncode == 1
    assert f"'{cli}' command not found" in result.stderr and "pip install" in result.stderr
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("hf_args, env", [(["--hf"], {}), ([], {"USE_HF": "1"})])
def test_hf(tmp_path, bin_dir, hf_args, env):
    result = run(tmp_path, *hf_args, "cocoqa", path=f"{bin_dir}:{SYSTEM_PATH}", **env)
    assert result.returncode == 0, result.stderr
    expected = [["hf", "download", *m] for m in MODELS]
    expected.append(dataset_call("hf", "HuggingFaceM4/the_cauldron", "cocoqa"))
    assert calls(tmp_path) == expected


def test_help_and_unknown_option(tmp_path):
    help_ = run(tmp_path, "--help", path=SYSTEM_PATH)
    assert help_.returncode == 0 and "Usage: bash download_resource.sh" in help_.stdout
    bad = run(tmp_path, "--nope", path=SYSTEM_PATH)
    assert bad.returncode == 2 and "unknown option --nope" in bad.stderr


def test_replay_is_fetched_and_converted_without_the_cauldron(tmp_path, bin_dir):
    result = run(tmp_path, "--replay", path=f"{bin_dir}:{SYSTEM_PATH}")
    assert result.returncode == 0, result.stderr
    assert calls(tmp_path) == [["modelscope", "download", *m] for m in MODELS] + [
        ["modelscope", "download", "AI-ModelScope/ShareGPT-Chinese-English-90k", "--repo-type", "dataset",
         "--local-dir", "data/text_replay/ShareGPT-Chinese-English-90k"]]
    converted = (tmp_path / "data/text_replay/sharegpt_zh_en.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in converted] == [
        {"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"}]}]
    assert not (tmp_path / "data/the_cauldron").exists()
    assert "text replay: 1 conversations" in result.stdout


def test_text_bench_data_comes_from_the_hub_per_task(tmp_path, bin_dir):
    result = run(tmp_path, "cocoqa", "--text-bench", "mmlu_abstract_algebra", "gsm8k", path=f"{bin_dir}:{SYSTEM_PATH}")
    assert result.returncode == 0, result.stderr
    assert calls(tmp_path)[2:] == [dataset_call("modelscope", "AI-ModelScope/the_cauldron", "cocoqa")] + [
        ["hf", "download", repo, "--repo-type", "dataset", "--local-dir", f"data/text_bench/{repo}"]
        for repo in ("cais/mmlu", "openai/gsm8k")]
    assert (tmp_path / "data/text_bench/cais/mmlu/.complete").is_file()


def test_unknown_text_task_is_refused_before_any_download(tmp_path, bin_dir):
    result = run(tmp_path, "--text-bench", "mmlu_abstract_algebr", path=f"{bin_dir}:{SYSTEM_PATH}")
    assert result.returncode == 1
    assert "unknown lm-eval task(s): mmlu_abstract_algebr (close: mmlu_abstract_algebra" in result.stderr
    assert calls(tmp_path) == []
