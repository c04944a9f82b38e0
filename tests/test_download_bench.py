"""download_resource.sh --bench from a stand-in hub (tests/hub_standin.py) serving each default task's
dataset in its full hub layout (every config its README lists, in the hub's order; train shards no task
reads; extra files such as MMStar's .tsv), then eval_bench.py scoring every default task on what it
fetched, as a user runs them after a real download."""

import json
from pathlib import Path

import pytest

from qwen3_smvl import tiny
from qwen3_smvl.evaluation import benchmarks

import eval_bench
from hub_standin import install
from test_download import SYSTEM_PATH, calls, run


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The mirror the stand-in serves: every default image task's repo in its full hub layout."""
    root = tmp_path_factory.mktemp("hub")
    tiny.write_benchmark_copies(root / "datasets")
    return root


@pytest.fixture(scope="module")
def image_download(tmp_path_factory, hub):
    """A working directory after `bash download_resource.sh --bench` (the default suite) through the stand-in."""
    work = tmp_path_factory.mktemp("work")
    bin_dir = install(work / "bin")
    result = run(work, "--bench", path=f"{bin_dir}:{SYSTEM_PATH}", HF_MIRROR=str(hub))
    assert result.returncode == 0, result.stderr
    return work


def repo_files(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_file())


# What --bench leaves: each repo's README (its configs) and the shards of the split its tasks read; not the
# hub's other configs (MMBench's cc, DocVQA's InfographicVQA), other splits, train shards or MMStar.tsv.
FETCHED = {
    "lmms-lab-encoder/textvqa": ["data/validation-00000-of-00001.parquet"],
    "lmms-lab-encoder/DocVQA": ["DocVQA/validation-00000-of-00001.parquet"],
    "lmms-lab-encoder/ChartQA": ["data/test-00000-of-00001.parquet"],
    "lmms-lab-encoder/ai2d": ["data/test-00000-of-00001.parquet"],
    "echo840/OCRBench": ["data/test-00000-of-00001.parquet"],
    "Lin-Chen/MMStar": ["mmstar.parquet"],
    "lmms-lab-encoder/MMBench": ["cn/dev-00000-of-00001.parquet", "en/dev-00000-of-00001.parquet"],
    "lmms-lab-encoder/CMMMU": ["data/val-00000-of-00001.parquet"],
}


def test_bench_fetches_only_the_split_each_task_reads(hub, image_download):
    fetched = image_download / benchmarks.DEFAULT_DATA_DIR
    expected = {f"{repo}/{name}" for repo, names in FETCHED.items() for name in ["README.md", *names]}
    expected |= {f"{tiny.BENCHMARK_COPIES[task][0]}/.complete.{task}" for task in benchmarks.DEFAULT_SUITE}
    assert set(repo_files(fetched)) == expected
    assert any("train-" in name for name in repo_files(hub)) and (hub / "datasets/Lin-Chen/MMStar/MMStar.tsv").is_file()
    assert [call[2] for call in calls(image_download)] == [tiny.BENCHMARK_COPIES[t][0] for t in benchmarks.DEFAULT_SUITE]


def test_every_image_task_opens_exactly_as_the_harness_opens_it(image_download):
    """datasets.load_dataset with lmms-eval's arguments (path, config name, the task's dataset_kwargs)
    reads the task's split from the download: MMBench's README lists cc first, which is not fetched."""
    import datasets

    data_dir = image_download / benchmarks.DEFAULT_DATA_DIR
    configs = benchmarks.task_configs(benchmarks.task_manager(), benchmarks.DEFAULT_SUITE, data_dir)
    manager = benchmarks.task_manager()
    for config in configs:
        base = manager._get_config(config["task"])
        loaded = datasets.load_dataset(config["dataset_path"], base.get("dataset_name"), **config["dataset_kwargs"])
        assert list(loaded) == [base["test_split"]] and len(loaded[base["test_split"]]) == 4, config["task"]


@pytest.fixture(scope="module")
def terse_dir(stitched_dir, tmp_path_factory):
    return tiny.build_terse_graft(stitched_dir, tmp_path_factory.mktemp("terse"))


def test_every_default_image_task_scores_on_the_download(terse_dir, image_download):
    eval_bench.main(["--model", str(terse_dir), "--limit", "2", "--batch_size", "2",
                     "--data_dir", str(image_download / benchmarks.DEFAULT_DATA_DIR)])
    scores = json.loads((terse_dir / "bench_results.json").read_text())["scores"][terse_dir.name]
    assert list(scores) == benchmarks.DEFAULT_SUITE
    assert all(isinstance(score, float) and 0 <= score <= 100 for score in scores.values()), scores


@pytest.fixture(scope="module")
def text_download(tmp_path_factory):
    """A working directory after `bash download_resource.sh --text-bench` (the default text tasks) through
    the stand-in hub serving the four datasets in their full layouts (and the two models the script fetches
first); nltk's punkt_tab already installed."""
    from qwen3_smvl.evaluation import text_bench

    index = text_bench.task_index().task_index
    subjects = {name: [text_bench.task_config(index[leaf])["dataset_name"] for leaf in text_bench.leaf_tasks(index, name)]
                for name in ("mmlu", "ceval-valid")}
    hub = tmp_path_factory.mktemp("text_hub")
    tiny.write_text_bench_hub(hub / "datasets", subjects["mmlu"], subjects["ceval-valid"])
    for model in ("Qwen/Qwen3-0.6B", "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"):  # the script fetches them too
        (hub / "models" / model).mkdir(parents=True)
        (hub / "models" / model / "config.json").write_text("{}")
    work = tmp_path_factory.mktemp("text_work")
    nltk_dir = tiny.write_punkt_tab(work / "nltk_data")
    bin_dir = install(work / "bin")
    result = run(work, "--hf", "--text-bench", path=f"{bin_dir}:{SYSTEM_PATH}", HF_MIRROR=str(hub), NLTK_DATA=str(nltk_dir))
    assert result.returncode == 0, result.stderr
    return work, nltk_dir


def test_every_default_text_task_scores_on_the_download(terse_dir, tiny_qwen_dir, text_download, tmp_path,
                                                        monkeypatch):
    import nltk

    from test_text_bench import with_chat_template

    work, nltk_dir = text_download
    monkeypatch.setattr(nltk.data, "path", [str(nltk_dir), *nltk.data.path])
    base = with_chat_template(tiny.build_terse_graft(tiny_qwen_dir, tmp_path / "base_qwen", graft=False))
    eval_bench.main(["--model", str(terse_dir), "--tasks", "none", "--base_qwen", str(base), "--limit", "2",
                     "--batch_size", "8", "--text_data_dir", str(work / "data/text_bench")])
    scores = json.loads((terse_dir / "bench_results.json").read_text())["text_scores"]
    assert list(scores) == [base.name, terse_dir.name]
    for column in scores.values():
        assert [task.split(" (")[0] for task in column] == ["mmlu", "ceval-valid", "gsm8k", "ifeval"], column
        assert all(0 <= score <= 100 for score in column.values()), column
