"""Standard VLM benchmarks through lmms-eval: the tasks, their local data files, the scores and their
markdown tables. The command is eval_bench.py (its docstring has the usage), which adds text
benchmarks through lm-eval against base Qwen3 (text_bench.py), offline from local copies.
"""

import argparse
import difflib
import functools
from pathlib import Path

from qwen3_smvl.evaluation import bench_data
from qwen3_smvl.evaluation.text_bench import BenchError, local_copy

DEFAULT_SUITE = ["textvqa_val", "docvqa_val", "chartqa", "ai2d", "ocrbench", "mmstar", "mmbench_en_dev_static",
                 "mmbench_cn_dev", "cmmmu_val"]
DEFAULT_DATA_DIR = Path("data/bench")
# The score a task is known by ("metric,filter" in lmms-eval's results) and its scale to 0-100.
HEADLINE = {
    "textvqa_val": ("exact_match,none", 100), "docvqa_val": ("anls,none", 100), "chartqa": ("relaxed_overall,none", 100),
    "ai2d": ("exact_match,flexible-extract", 100), "ocrbench": ("ocrbench_accuracy,none", 100),
    "mmstar": ("average,none", 100), "mmbench_en_dev_static": ("gpt_eval_score,none", 1),
    "mmbench_cn_dev": ("gpt_eval_score,none", 1), "cmmmu_val": ("cmmmu_acc,none", 100),
}
KNOWN_ARCHITECTURES = {"qwen3": "a Qwen3-SmVL graft", "llama": "SmolVLM"}  # text_config.model_type of a smolvlm config
NO_TASKS = "none"  # --tasks none: the text tasks only


@functools.cache
def task_manager():
    """lmms-eval's index of its task YAMLs (about 2,000 tasks; seconds to build, so once a process)."""
    from lmms_eval.tasks import TaskManager

    return TaskManager(verbosity="ERROR")


def check_task_names(manager, names):
    """Unknown names are refused with the close known ones."""
    for name in names:
        if name not in manager.all_subtasks:
            close = difflib.get_close_matches(name, manager.all_subtasks, n=4, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else "; `lmms-eval --tasks list` lists them"
            raise BenchError(f"unknown task {name!r}{hint}")


def offline_scoring(name):
    """Overrides for tasks whose stock score asks a GPT judge for answers rules cannot match:
    mmbench_cn_dev is scored by the same rule-based extraction as lmms-eval's mmbench_en_dev_static."""
    if name != "mmbench_cn_dev":
        return {}
    from lmms_eval.tasks.mmbench.cn_utils import mmbench_evaluator

    def static_score(results, args):
        return mmbench_evaluator.eval_result(results, eval_method="static")[0] * 100

    return {"metric_list": [{"metric": "gpt_eval_score", "aggregation": static_score, "higher_is_better": True}]}


def split_files(folder, config_name, split):
    """{split: the file patterns the README's config lists for it}, or None where the README lists no
    configs. Passed to load_dataset so that `datasets` reads only the task's split: without them it
    resolves the README's first config and every split, and fails on the configs and splits
    download_resource.sh does not fetch (MMBench lists cc first; the train shards stay on the hub)."""
    from datasets.data_files import sanitize_patterns
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData
    from huggingface_hub.repocard import metadata_load

    readme = Path(folder) / "README.md"
    configs = MetadataConfigs.from_dataset_card_data(DatasetCardData(**(metadata_load(readme) or {}))) \
        if readme.is_file() else {}
    if not configs:
        return None
    if config_name is None:  # the default config: marked so, named so, or the only one
        config_name = next((n for n, c in configs.items() if c.get("default")), "default" if "default" in configs
                           else next(iter(configs)) if len(configs) == 1 else None)
    patterns = sanitize_patterns(configs[config_name].get("data_files") or {}) if config_name in configs else {}
    return {split: patterns[split]} if split in patterns else None


def task_configs(manager, names, data_dir):
    """lmms-eval task configs pointing each task's dataset at its local copy, read through the copy's
    own datasets cache (bench_data); refuses a task whose copy is absent or does not open as lmms-eval
    will open it, a line each, naming the command that fetches it."""
    configs, problems = [], []
    for name in names:
        base = manager._get_config(name)  # the task's YAML as lmms-eval resolves it (includes, !function)
        source = base["dataset_path"]
        local = local_copy(data_dir, source)
        fetch = (f"fetch it with: bash download_resource.sh --bench {name}" if name in DEFAULT_SUITE else
                 "put the hub dataset there (download_resource.sh --bench fetches the default suite's)")
        if not local.is_dir() or not any(local.iterdir()):
            problems.append(f"{name}: its dataset {source} is not in {local}; {fetch}")
            continue
        dataset_kwargs = bench_data.dataset_kwargs(base.get("dataset_kwargs"), local)
        data_files = split_files(local, base.get("dataset_name"), base["test_split"])
        if data_files:
            dataset_kwargs["data_files"] = data_files
        config = {"task": name, "dataset_path": str(local), "dataset_kwargs": dataset_kwargs, **offline_scoring(name)}
        problem = open_problem({**base, **config})
        if problem:
            problems.append(f"{name}: its copy {local} does not open as lmms-eval opens it ({problem}); {fetch}")
        configs.append(config)
    if problems:
        raise BenchError("\n".join(problems))
    return configs


# dataset_kwargs lmms-eval's Task.download consumes itself; the rest go to load_dataset.
HARNESS_ONLY_KWARGS = ("builder_script", "force_download", "force_unzip", "local_files_only", "create_link")
UNPACKED_KWARGS = ("video", "From_YouTube", "load_from_disk")  # read another way than load_dataset(folder)


def open_problem(config):
    """bench_data.open_problem on a task config as lmms-eval's Task.download opens it: dataset_path,
    dataset_name, dataset_kwargs, and the split it scores (test_split, else validation_split) and
    fewshot_split; None for tasks it unpacks or loads from disk (not opened this way)."""
    kwargs = {k: v for k, v in config["dataset_kwargs"].items() if k not in HARNESS_ONLY_KWARGS}
    if any(kwargs.get(key) for key in UNPACKED_KWARGS):
        return None
    splits = [config.get("test_split") or config.get("validation_split"), config.get("fewshot_split")]
    return bench_data.open_problem(config["dataset_path"], config.get("dataset_name"), kwargs, splits)


def headline_scores(task_results, names):
    """{task: score on 0-100} from lmms-eval's results["results"]; unknown tasks: their first metric."""
    scores = {}
    for name in names:
        metrics = task_results.get(name, {})
        key, scale = HEADLINE.get(name, (None, 1))
        if key is None:
            key = next((k for k, v in metrics.items() if "," in k and "_stderr" not in k and isinstance(v, (int, float))), None)
        value = metrics.get(key)
        scores[name] = value * scale if isinstance(value, (int, float)) else None
    return scores


def evaluate(model, configs, limit=None, manager=None, output_path="."):
    """(headline scores, lmms-eval's results["results"]) of an lmms-eval model on the task configs;
    under torch.distributed every rank answers a share, and ranks other than 0 get ({}, {})."""
    from lmms_eval.evaluator import simple_evaluate

    # output_path: where tasks write their submission files; the other two as lmms-eval's CLI defaults
    cli_args = argparse.Namespace(output_path=str(output_path), process_with_media=False, reasoning_tags=None)
    results = simple_evaluate(model=model, tasks=[dict(config) for config in configs], limit=limit,
                              batch_size=model.batch_size, task_manager=manager, log_samples=False,
                              cli_args=cli_args, bootstrap_iters=0,
                              distributed_executor_backend="torchrun")  # a plain barrier: no second Accelerator
    if results is None:  # not rank 0: lmms-eval gathered this rank's answers there
        return {}, {}
    names = [config["task"] for config in configs]
    return headline_scores(results["results"], names), {name: results["results"].get(name) for name in names}


def hub_datasets(configs, data_dir):
    """{task: the hub dataset id its local copy holds} (copies live in data_dir/<hub dataset id>/)."""
    return {config["task"]: Path(config["dataset_path"]).relative_to(data_dir).as_posix() for config in configs}


def metric_names(configs):
    """{task: the name of its headline metric}, e.g. anls for docvqa_val."""
    return {config["task"]: HEADLINE[config["task"]][0].split(",")[0] for config in configs if config["task"] in HEADLINE}


def cell(value):
    return "-" if value is None else f"{value:.1f}"


def delta(value, reference):
    return "-" if value is None or reference is None else f"{value - reference:+.1f}"


def markdown_table(scores, row_label="task"):
    """A markdown table of {column name: {row: score or None}}: a column per checkpoint in order, and
    after each one but the first its difference to the first (Δ). Rows: every row of any column."""
    names = list(scores)
    rows = list(dict.fromkeys(row for column in scores.values() for row in column))
    header = [row_label, names[0]] + [part for name in names[1:] for part in (name, f"Δ {name}")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        reference = scores[names[0]].get(row)
        cells = [row, cell(reference)]
        for name in names[1:]:
            value = scores[name].get(row)
            cells += [cell(value), delta(value, reference)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def checked_configs(names, data_dir):
    """lmms-eval task configs of `names` reading their local copies; refuses unknown names and absent data."""
    manager = task_manager()
    check_task_names(manager, names)
    return task_configs(manager, names, data_dir)
