"""Forgetting: the graft's text model against base Qwen3 on standard text benchmarks, through
lm-evaluation-harness (its task definitions, prompts and metrics), offline from local copies.

    python text_bench.py --model GRAFT_DIR --base QWEN_DIR [--tasks mmlu gsm8k ...] [--limit N]

Each model is evaluated as it is used: the whole graft (AutoModelForImageTextToText, no image) with
its own chat template, base Qwen3 (AutoModelForCausalLM) with its own, both with thinking off. Task
data is read from <data_dir>/<the task's hub dataset id> (`bash download_resource.sh --text-bench
TASK ...` puts it there); a task whose data is absent is refused before any model loads.
"""

import argparse
import difflib
import functools
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

# mmlu: English knowledge (57 subjects); ceval-valid: Chinese knowledge (52 subjects, the labelled split);
# gsm8k: grade-school maths written out (generation); ifeval: following format instructions (generation).
DEFAULT_TASKS = ["mmlu", "ceval-valid", "gsm8k", "ifeval"]
DEFAULT_DATA_DIR = "data/text_bench"
COMPLETE = ".complete"  # download_resource.sh's marker of a finished download
# What some tasks need besides their dataset: ifeval's checks split sentences with nltk's punkt_tab,
# which lm-eval would otherwise try to download mid-run.
NLTK_DATA = {"google/IFEval": "tokenizers/punkt_tab"}
GRAFT_TYPES = ("smolvlm", "idefics3")


class BenchError(Exception):
    """A run that cannot start (unknown task, absent data, wrong checkpoint); the message says why."""


@functools.cache
def task_index():
    """lm-eval's index of every task, group and tag it ships (built once: it reads some 10K YAMLs)."""
    from lm_eval.tasks import TaskManager

    return TaskManager()


def local_task_index(manager, names, overrides):
    """An index of only the folders the requested names' configs live in, then `overrides`, whose
    tasks replace the built-in ones of the same name (lm-eval's include_path order)."""
    from lm_eval.tasks import TaskManager

    folders = {manager.task_index[member].yaml_path.parent for name in names for member in members_of(manager.task_index, name)
               if manager.task_index[member].yaml_path}
    return TaskManager(include_defaults=False, include_path=[*sorted(map(str, folders)), str(overrides)])


def check_names(manager, names):
    unknown = [name for name in names if name not in manager.task_index]
    if unknown:
        hints = [f"{name} (close: {', '.join(difflib.get_close_matches(name, manager.all_tasks, n=4)) or 'none'})"
                 for name in unknown]
        raise BenchError(f"unknown lm-eval task(s): {'; '.join(hints)}; `lm-eval ls tasks` lists them all")


def members_of(index, name):
    """`name` and every group, tag and task under it, each once, in order."""
    entry = index[name]
    if entry.kind.name == "TAG":
        members = sorted(entry.tags)
    elif entry.kind.name == "GROUP":
        members = [item if isinstance(item, str) else item.get("task") or item.get("group")
                   for item in entry.cfg.get("task", [])]
    else:
        members = []
    return list(dict.fromkeys([name, *(m for member in members if member in index for m in members_of(index, member))]))


def leaf_tasks(index, name):
    """The tasks a task, group or tag name runs."""
    return [member for member in members_of(index, name) if index[member].kind.name in ("TASK", "PY_TASK")]


def task_config(entry):
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(entry.yaml_path, resolve_func=False) if entry.yaml_path else dict(entry.cfg or {})


def datasets_of(manager, names):
    """{requested name: {its leaf task: hub dataset id}} from lm-eval's own task configs."""
    check_names(manager, names)
    found, owner = {}, {}
    for name in names:
        found[name] = {}
        for leaf in leaf_tasks(manager.task_index, name):
            if owner.setdefault(leaf, name) != name:  # lm-eval refuses it too, but only once a model is loaded
                raise BenchError(f"task {leaf} is in both {owner[leaf]} and {name}; name each task once")
            dataset = task_config(manager.task_index[leaf]).get("dataset_path")
            if not dataset:
                raise BenchError(f"{name}: task {leaf} builds its data in Python (no dataset_path); "
                                 "text_bench.py runs tasks read from hub datasets only")
            found[name][leaf] = dataset
    return found


def local_copy(data_dir, dataset):
    return Path(data_dir) / dataset


def check_data(datasets, data_dir):
    """Refuses, one line per absent dataset, when a task's local copy is missing or unfinished."""
    lines = []
    for name, leaves in datasets.items():
        for dataset in dict.fromkeys(leaves.values()):
            folder = local_copy(data_dir, dataset)
            if not (folder / COMPLETE).is_file():
                state = "an unfinished download" if folder.is_dir() else "not there"
                lines.append(f"{name}: dataset {dataset} is not in {folder} ({state}); "
                             f"run `bash download_resource.sh --text-bench {name}`")
            elif dataset in NLTK_DATA and not nltk_has(NLTK_DATA[dataset]):
                lines.append(f"{name}: nltk's {NLTK_DATA[dataset]} is not installed; "
                             f"run `bash download_resource.sh --text-bench {name}`")
    if lines:
        raise BenchError("\n".join(lines))


def nltk_has(resource):
    import nltk

    try:
        nltk.data.find(resource)
        return True
    except LookupError:
        return False


def write_overrides(manager, datasets, data_dir, out_dir):
    """One YAML per leaf task in `out_dir`: lm-eval's own config (`include`) with dataset_path pointing
    at the local copy; lm-eval's include_path lets it replace the built-in task of the same name."""
    for leaves in datasets.values():
        for leaf, dataset in leaves.items():
            override = {"include": str(manager.task_index[leaf].yaml_path), "task": leaf,
                        "dataset_path": str(local_copy(data_dir, dataset).resolve())}
            (Path(out_dir) / f"{leaf}.yaml").write_text(yaml.safe_dump(override, allow_unicode=True))


def check_checkpoint(path, graft):
    from transformers import AutoConfig

    if not (Path(path) / "config.json").is_file():
        raise BenchError(f"{path} is not a model directory (no config.json)")
    model_type = AutoConfig.from_pretrained(path).model_type
    if graft and model_type not in GRAFT_TYPES:
        raise BenchError(f"--model {path} is not a graft (model_type {model_type}, expected one of {GRAFT_TYPES}); "
                         "pass a text model as --base")
    if not graft and model_type in GRAFT_TYPES:
        raise BenchError(f"--base {path} is a vision-language checkpoint ({model_type}); pass base Qwen3 as --base")


def load_lm(path, graft, batch_size, device=None):
    """lm-eval's HFLM around the model as it is used: the whole graft (no image) with its processor's
    chat template, or base Qwen3 with its tokenizer's; thinking off."""
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if graft:
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, device_map=device)
        processor = AutoProcessor.from_pretrained(path)
        tokenizer = processor.tokenizer
        tokenizer.chat_template = processor.chat_template  # what infer.py renders with
        text_config = model.config.text_config
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=device)
        tokenizer = AutoTokenizer.from_pretrained(path)
        text_config = model.config
    if not tokenizer.chat_template:
        raise BenchError(f"{path}: its tokenizer has no chat template")
    return HFLM(pretrained=model.eval(), tokenizer=tokenizer, backend="causal", batch_size=batch_size,
                max_length=text_config.max_position_embeddings, enable_thinking=False)


def headline(task_results):
    """(metric, score): the first metric lm-eval reports for a task or group (its config's first)."""
    for key, value in task_results.items():
        if "," in key and "_stderr" not in key and isinstance(value, (int, float)):
            metric, _, filter_name = key.partition(",")
            return (metric if filter_name == "none" else f"{metric}, {filter_name}"), value
    raise BenchError(f"no metric in lm-eval's results {sorted(task_results)}")


def evaluate(lm, names, manager, limit=None):
    """{"task (metric)": score} for one model through lm-eval's simple_evaluate, chat template applied."""
    from lm_eval import simple_evaluate

    output = simple_evaluate(model=lm, tasks=names, task_manager=manager, limit=limit, apply_chat_template=True,
                             fewshot_as_multiturn=True, log_samples=False, bootstrap_iters=0)
    scores = {}
    for name in names:  # a tag has no aggregate of its own: its tasks are reported one by one
        for reported in [name] if name in output["results"] else leaf_tasks(manager.task_index, name):
            metric, value = headline(output["results"][reported])
            scores[f"{reported} ({metric})"] = value
    return scores


def run(model_dir, base_dir, tasks=DEFAULT_TASKS, data_dir=DEFAULT_DATA_DIR, limit=None, batch_size=8, device=None):
    """{checkpoint name: {"task (metric)": score}} for the graft and base Qwen3, in that order.
    Everything that can be refused (unknown task, absent data, wrong checkpoint) is before a model loads."""
    manager = task_index()
    datasets = datasets_of(manager, tasks)
    check_data(datasets, data_dir)
    check_checkpoint(model_dir, graft=True)
    check_checkpoint(base_dir, graft=False)
    names = {model_dir: checkpoint_name(model_dir), base_dir: checkpoint_name(base_dir)}
    if len(set(names.values())) < 2:
        names = {model_dir: str(model_dir), base_dir: str(base_dir)}
    results = {}
    with tempfile.TemporaryDirectory(prefix="text_bench_tasks_") as overrides:
        write_overrides(manager, datasets, data_dir, overrides)
        local = local_task_index(manager, tasks, overrides)
        for path, graft in ((model_dir, True), (base_dir, False)):
            lm = load_lm(path, graft, batch_size, device)
            results[names[path]] = evaluate(lm, tasks, local, limit)
            del lm
    return results


def checkpoint_name(path):
    return Path(path).resolve().name


def percent(value):
    return "—" if value is None else f"{100 * value:.1f}"


def markdown_table(results, baseline=None):
    """A markdown table: a row per task, a column per checkpoint (scores in %), and for every
    checkpoint after the first its difference from `baseline` (default: the last one) in points."""
    checkpoints = list(results)
    baseline = baseline or checkpoints[-1]
    compared = [name for name in checkpoints if name != baseline]
    tasks = list(dict.fromkeys(task for scores in results.values() for task in scores))
    header = ["task", *checkpoints, *(f"Δ {name} − {baseline}" for name in compared)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in tasks:
        row = [percent(results[name].get(task)) for name in checkpoints]
        for name in compared:
            mine, theirs = results[name].get(task), results[baseline].get(task)
            row.append("—" if mine is None or theirs is None else f"{100 * (mine - theirs):+.1f}")
        lines.append("| " + " | ".join([task, *row]) + " |")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="the graft's directory (stitch.py's or train.py's output)")
    parser.add_argument("--base", help="base Qwen3's directory, e.g. model/Qwen3-0.6B")
    parser.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS,
                        help=f"lm-eval task, group or tag names (default: {' '.join(DEFAULT_TASKS)})")
    parser.add_argument("--limit", type=int, help="at most N samples per task (a quick look, not a score)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR,
                        help="where download_resource.sh --text-bench put the task data (one folder per hub dataset)")
    parser.add_argument("--device", help="cuda, cpu, ... (default: cuda when there is one)")
    parser.add_argument("--print_datasets", action="store_true",
                        help="print the hub datasets the tasks read, one a line, and stop (download_resource.sh uses it)")
    parser.add_argument("--out", help="write the scores as JSON and the table as markdown here "
                                      "(default: text_bench.json / text_bench.md in the graft's directory)")
    args = parser.parse_args(argv)
    if not args.print_datasets and not (args.model and args.base):
        parser.error("--model and --base are required")
    return args


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # local copies only: nothing is fetched mid-run
    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    logging.getLogger("lm_eval.tasks").setLevel(logging.ERROR)  # "task X overrides existing task": ours, meant
    start = time.time()
    try:
        if args.print_datasets:
            datasets = datasets_of(task_index(), args.tasks)
            print("\n".join(dict.fromkeys(d for leaves in datasets.values() for d in leaves.values())))
            return
        results = run(args.model, args.base, args.tasks, args.data_dir, args.limit, args.batch_size, args.device)
    except BenchError as error:
        sys.exit(f"text_bench: {error}")
    table = markdown_table(results)
    print(table)
    out = Path(args.out) if args.out else Path(args.model) / "text_bench"
    out.with_suffix(".json").write_text(json.dumps({"limit": args.limit, "results": results}, indent=2,
                                                   ensure_ascii=False))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"text bench: {len(args.tasks)} task(s), 2 checkpoints{f', limit {args.limit}' if args.limit else ''}, "
          f"{time.time() - start:.0f} s -> {out.with_suffix('.json')}, {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
