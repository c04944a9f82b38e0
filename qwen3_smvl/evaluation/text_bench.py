"""Forgetting: a checkpoint's text model against base Qwen3 on standard text benchmarks, through
lm-evaluation-harness (its task definitions, prompts and metrics), offline from local copies; the
library behind `eval_bench.py --text_tasks ... --base_qwen DIR`.

Each model is evaluated as it is used: the whole graft (AutoModelForImageTextToText, no image) with
its own chat template, base Qwen3 (AutoModelForCausalLM) with its own, both with thinking off. Task
data is read from <data_dir>/<the task's hub dataset id> (`bash download_resource.sh --text-bench
TASK ...` puts it there), through that copy's own datasets cache (bench_data); check() refuses a
task whose data is absent or does not open as lm-eval will open it before any model loads.
"""

import contextlib
import difflib
import functools
import logging
import tempfile
from pathlib import Path

import yaml

from qwen3_smvl.evaluation import bench_data

# mmlu: English knowledge (57 subjects); ceval-valid: Chinese knowledge (52 subjects, the labelled split);
# gsm8k: grade-school maths written out (generation); ifeval: following format instructions (generation).
DEFAULT_TASKS = ["mmlu", "ceval-valid", "gsm8k", "ifeval"]
DEFAULT_DATA_DIR = "data/text_bench"
COMPLETE = ".complete"  # download_resource.sh's marker of a finished download
# What some tasks need besides their dataset: ifeval's checks split sentences with nltk's punkt_tab,
# which lm-eval would otherwise try to download mid-run.
NLTK_DATA = {"google/IFEval": "tokenizers/punkt_tab"}
GRAFT_TYPES = ("smolvlm", "idefics3")


class BenchError(ValueError):
    """A benchmark run that cannot start (unknown task, absent data, wrong checkpoint), image or text
    tasks alike; the message says why in one line (a line per absent dataset)."""


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
                                 "qwen3_smvl/evaluation/text_bench.py runs tasks read from hub datasets only")
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


def harness_dataset(manager, leaf, dataset, data_dir):
    """(path, name, dataset_kwargs, splits) with which lm-eval will open `leaf`'s local copy: its own
    config's, dataset_path pointing at the copy and the copy's own cache added (bench_data)."""
    config = task_config(manager.task_index[leaf])
    folder = local_copy(data_dir, dataset).resolve()
    kwargs = bench_data.dataset_kwargs(config.get("dataset_kwargs"), folder)
    splits = [config.get("test_split") or config.get("validation_split"), config.get("fewshot_split")]
    return folder, config.get("dataset_name"), kwargs, splits


def check_opens(manager, datasets, data_dir):
    """Refuses, a line per task, a local copy that does not open as lm-eval's Task.download opens it
    (load_dataset(path, name, **dataset_kwargs), trust_remote_code dropped) or lacks a split it reads."""
    lines = []
    for name, leaves in datasets.items():
        for leaf, dataset in leaves.items():
            path, config_name, kwargs, splits = harness_dataset(manager, leaf, dataset, data_dir)
            kwargs.pop("trust_remote_code", None)
            problem = bench_data.open_problem(path, config_name, kwargs, splits)
            if problem:
                lines.append(f"{name}: task {leaf}'s copy {path} does not open as lm-eval opens it ({problem}); "
                             f"run `bash download_resource.sh --text-bench {name}` again")
    if lines:
        raise BenchError("\n".join(lines))


def write_overrides(manager, datasets, data_dir, out_dir):
    """One YAML per leaf task in `out_dir`: lm-eval's own config (`include`) with dataset_path pointing
    at the local copy and dataset_kwargs naming its cache; lm-eval's include_path lets it replace the
    built-in task of the same name."""
    for leaves in datasets.values():
        for leaf, dataset in leaves.items():
            path, _, kwargs, _ = harness_dataset(manager, leaf, dataset, data_dir)
            override = {"include": str(manager.task_index[leaf].yaml_path), "task": leaf, "dataset_path": str(path),
                        "dataset_kwargs": kwargs}
            (Path(out_dir) / f"{leaf}.yaml").write_text(yaml.safe_dump(override, allow_unicode=True))


@contextlib.contextmanager
def local_tasks(tasks, datasets, data_dir):
    """An lm-eval TaskManager whose tasks read the local copies (override YAMLs in a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="text_bench_tasks_") as overrides:
        write_overrides(task_index(), datasets, data_dir, overrides)
        yield local_task_index(task_index(), tasks, overrides)


def check_base(path):
    """base Qwen3 (or another causal LM), not a vision-language checkpoint."""
    from transformers import AutoConfig

    if not (Path(path) / "config.json").is_file():
        raise BenchError(f"--base_qwen {path} is not a model directory (no config.json)")
    model_type = AutoConfig.from_pretrained(path).model_type
    if model_type in GRAFT_TYPES:
        raise BenchError(f"--base_qwen {path} is a vision-language checkpoint ({model_type}); pass base Qwen3, "
                         "e.g. model/Qwen3-0.6B")


def load_lm(path, graft, batch_size, device=None):
    """lm-eval's HFLM around the model as it is used: the whole graft (no image) with its processor's
    chat template, or base Qwen3 with its tokenizer's; thinking off."""
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if graft:
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, device_map=device, use_kernels=False)
        processor = AutoProcessor.from_pretrained(path)
        tokenizer = processor.tokenizer
        tokenizer.chat_template = processor.chat_template  # what infer.py renders with
        text_config = model.config.text_config
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=device, use_kernels=False)
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
    """{"task (metric)": score on 0-100} for one model through lm-eval's simple_evaluate, chat template applied."""
    from lm_eval import simple_evaluate

    output = simple_evaluate(model=lm, tasks=names, task_manager=manager, limit=limit, apply_chat_template=True,
                             fewshot_as_multiturn=True, log_samples=False, bootstrap_iters=0)
    scores = {}
    for name in names:  # a tag has no aggregate of its own: its tasks are reported one by one
        for reported in [name] if name in output["results"] else leaf_tasks(manager.task_index, name):
            metric, value = headline(output["results"][reported])
            scores[f"{reported} ({metric})"] = 100 * value
    return scores


def check(tasks, data_dir, base_dir):
    """Everything that can refuse a text-benchmark run, before a model loads: unknown names, absent
    data or data that does not open, a base that is not a text model.
    -> {requested name: {its leaf task: hub dataset id}}."""
    datasets = datasets_of(task_index(), tasks)
    check_data(datasets, data_dir)
    check_opens(task_index(), datasets, data_dir)
    check_base(base_dir)
    return datasets


def run(checkpoints, tasks, datasets, data_dir=DEFAULT_DATA_DIR, limit=None, batch_size=8, device=None):
    """[{"task (metric)": score}] for each (directory, is_graft) of `checkpoints`, in order; `datasets`
    as check() returns them."""
    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    logging.getLogger("lm_eval.tasks").setLevel(logging.ERROR)  # "task X overrides existing task": ours, meant
    results = []
    with local_tasks(tasks, datasets, data_dir) as local:
        for path, graft in checkpoints:
            lm = load_lm(path, graft, batch_size, device)
            results.append(evaluate(lm, tasks, local, limit))
            del lm
    return results
