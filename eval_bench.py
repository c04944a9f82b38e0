"""Standard VLM benchmarks through lmms-eval and, for forgetting, text benchmarks through lm-eval
against base Qwen3, offline from local copies, baselines side by side: one command.

    bash download_resource.sh --bench; bash download_resource.sh --text-bench   # the default suites' data (once)
    python eval_bench.py --model DIR [--tasks textvqa_val,docvqa_val] [--limit N] [--batch_size N] [--baseline DIR ...]
                         [--base_qwen model/Qwen3-0.6B [--text_tasks mmlu,ceval-valid]]

Each image task runs through lmms-eval's own task definition and metric (harness_model.Qwen3SmVL
answers), reading its dataset from data/bench/<hub dataset id>/ (--data_dir), never from the network.
With --base_qwen, the text tasks (qwen3_smvl/evaluation/text_bench.py; default: its suite) run on --model's text model
(the whole model, no image) and on base Qwen3. Everything that can be refused (a task unknown or
without its data, a checkpoint of the wrong kind) is refused, for both kinds of tasks together,
before any model loads. Scores (0-100) are printed as markdown tables, one column per checkpoint and
the difference to the first, and saved with lmms-eval's full results to <model>/bench_results.json and .md.
"""

import argparse
import gc
import json
import os
import time
from pathlib import Path

from qwen3_smvl import model_card
from qwen3_smvl.evaluation import benchmarks, text_bench
from qwen3_smvl.evaluation.text_bench import BenchError


def checkpoint_kind(model_dir):
    """'a Qwen3-SmVL graft' or 'SmolVLM', from config.json; anything else is refused, named."""
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        raise BenchError(f"{model_dir} is not a model directory (no config.json)")
    config = json.loads(config_path.read_text())
    text_type = (config.get("text_config") or {}).get("model_type")
    if config.get("model_type") != "smolvlm" or text_type not in benchmarks.KNOWN_ARCHITECTURES:
        found = str(config.get("model_type")) + (f" with a {text_type} text model" if text_type else "")
        raise BenchError(f"{model_dir} is a {found} checkpoint, not a Qwen3-SmVL graft or SmolVLM "
                         f"(config.json model_type smolvlm, text_config.model_type qwen3 or llama)")
    return benchmarks.KNOWN_ARCHITECTURES[text_type]


def evaluate_checkpoint(model_dir, configs, limit=None, batch_size=1, think=False, image_longest_edge=None, manager=None):
    """evaluate() on a checkpoint directory, its memory freed afterwards."""
    import torch

    from qwen3_smvl.evaluation.harness_model import Qwen3SmVL

    model = Qwen3SmVL(model_dir, batch_size=batch_size, think=think, image_longest_edge=image_longest_edge)
    try:
        return benchmarks.evaluate(model, configs, limit, manager, output_path=model_dir)
    finally:
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def column_names(model_dirs):
    """Short unique column names: the directory names, the full paths where two share one."""
    short = [Path(d).name for d in model_dirs]
    return [name if short.count(name) == 1 else str(d) for name, d in zip(short, model_dirs)]


def comma_list(text):
    return [name.strip() for name in text.split(",") if name.strip()]


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="eval_bench.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", metavar="DIR", help="a checkpoint of ours (or SmolVLM2)")
    parser.add_argument("--tasks", default=",".join(benchmarks.DEFAULT_SUITE),
                        help=f"comma-separated lmms-eval task names, or {benchmarks.NO_TASKS} (default: %(default)s)")
    parser.add_argument("--baseline", nargs="+", default=[], metavar="DIR",
                        help="more checkpoints evaluated on --tasks in the same run, printed beside --model with the differences")
    parser.add_argument("--base_qwen", "--base-qwen", metavar="DIR",
                        help="base Qwen3 (e.g. model/Qwen3-0.6B): run --text_tasks on it and on --model's text model")
    parser.add_argument("--text_tasks", "--text-tasks",
                        help=f"comma-separated lm-eval task, group or tag names, run with --base_qwen "
                             f"(default: {','.join(text_bench.DEFAULT_TASKS)})")
    parser.add_argument("--limit", type=int, metavar="N", help="the first N questions of each task only")
    parser.add_argument("--batch_size", "--batch-size", type=int, default=8, metavar="N")
    parser.add_argument("--data_dir", "--data-dir", type=Path, default=benchmarks.DEFAULT_DATA_DIR,
                        help="local copies of the image benchmarks, one folder per hub dataset id (default: %(default)s)")
    parser.add_argument("--text_data_dir", "--text-data-dir", type=Path, default=Path(text_bench.DEFAULT_DATA_DIR),
                        help="local copies of the text benchmarks, one folder per hub dataset id (default: %(default)s)")
    parser.add_argument("--think", action="store_true",
                        help="let Qwen3 think before answering the image tasks (off by default; text tasks always off)")
    parser.add_argument("--image_longest_edge", type=int, metavar="PX",
                        help="override the resolution saved with each checkpoint's processor")
    parser.add_argument("--print_text_datasets", action="store_true",
                        help="print the hub datasets --text_tasks read, one a line, and stop (download_resource.sh uses it)")
    args = parser.parse_args(argv)
    args.tasks = [] if args.tasks.strip() == benchmarks.NO_TASKS else comma_list(args.tasks)
    if args.text_tasks and not (args.base_qwen or args.print_text_datasets):
        parser.error("--text_tasks compares with base Qwen3: add --base_qwen DIR (e.g. model/Qwen3-0.6B)")
    asked_text = args.base_qwen or args.print_text_datasets
    args.text_tasks = comma_list(args.text_tasks or ",".join(text_bench.DEFAULT_TASKS)) if asked_text else []
    if not args.model and not args.print_text_datasets:
        parser.error("--model is required")
    if not args.tasks and not args.text_tasks and not args.print_text_datasets:
        parser.error(f"--tasks {benchmarks.NO_TASKS} leaves nothing to run without --base_qwen")
    if (args.limit is not None and args.limit < 1) or args.batch_size < 1:
        parser.error("--limit and --batch_size must be positive")
    return args


def checked_plan(args):
    """(image task configs, text datasets) once every check of both kinds of tasks passed; the
    refusals of both kinds together, a line each."""
    problems, configs, text_datasets = [], [], {}
    for model_dir in [args.model, *args.baseline]:
        try:
            checkpoint_kind(model_dir)
        except BenchError as error:
            problems.append(str(error))
    if args.tasks:
        try:
            configs = benchmarks.checked_configs(args.tasks, args.data_dir)
        except BenchError as error:
            problems.append(str(error))
    if args.text_tasks:
        try:
            text_datasets = text_bench.check(args.text_tasks, args.text_data_dir, args.base_qwen)
        except BenchError as error:
            problems.append(str(error))
    if problems:
        raise BenchError("\n".join(problems))
    return configs, text_datasets


def summary_line(scores, text_scores, seconds, path):
    """The first column's figures of each table (--model; base Qwen3's column comes first in the text table)."""
    figures = [f"{task} {benchmarks.cell(value)}" for task, value in next(iter(scores.values()), {}).items()]
    figures += [f"{task} {benchmarks.cell(value)}" for task, value in list(text_scores.values())[-1].items()] if text_scores else []
    others = f" (and {len(scores) - 1} baseline{'s' * (len(scores) > 2)})" if len(scores) > 1 else ""
    return f"bench: {', '.join(figures)}{others}, {seconds:.0f} s -> {path}"


def image_scores(args, configs):
    """{column: {task: score}} of --model and each --baseline on the image tasks."""
    manager = benchmarks.task_manager()
    scores, details = {}, {}
    model_dirs = [args.model, *args.baseline]
    for name, model_dir in zip(column_names(model_dirs), model_dirs):
        print(f"bench: {model_dir} ({checkpoint_kind(model_dir)}) on {', '.join(args.tasks)}")
        scores[name], details[name] = evaluate_checkpoint(model_dir, configs, args.limit, args.batch_size, args.think,
                                                          args.image_longest_edge, manager)
    return scores, details


def text_scores(args, datasets):
    """{column: {"task (metric)": score}}: base Qwen3 first (the reference), then --model's text model."""
    print(f"bench: {args.model}'s text model and {args.base_qwen} on {', '.join(args.text_tasks)}")
    checkpoints = [(args.base_qwen, False), (args.model, True)]
    results = text_bench.run(checkpoints, args.text_tasks, datasets, args.text_data_dir, args.limit, args.batch_size)
    return dict(zip(column_names([args.base_qwen, args.model]), results))


def tables(scores, forgetting):
    """The markdown saved next to the model: the image table and the forgetting table, each under a heading."""
    parts = [f"## Image benchmarks\n\n{benchmarks.markdown_table(scores)}"] if scores else []
    if forgetting:
        parts.append(f"## Forgetting: text benchmarks against base Qwen3\n\n{benchmarks.markdown_table(forgetting)}")
    return "\n\n".join(parts)


def main(argv=None):
    # Benchmarks are read from local copies only; set before `datasets` is imported.
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        if args.print_text_datasets:
            datasets = text_bench.datasets_of(text_bench.task_index(), args.text_tasks)
            print("\n".join(dict.fromkeys(d for leaves in datasets.values() for d in leaves.values())))
            return
        configs, text_datasets = checked_plan(args)
    except BenchError as error:
        raise SystemExit(f"eval_bench.py: {error}")
    scores, details = image_scores(args, configs) if configs else ({}, {})
    forgetting = text_scores(args, text_datasets) if text_datasets else {}
    markdown = tables(scores, forgetting)
    print(markdown)
    out = Path(args.model) / "bench_results.json"
    settings = {"models": dict(zip(column_names([args.model, *args.baseline]), map(str, [args.model, *args.baseline]))),
                "tasks": args.tasks, "text_tasks": args.text_tasks, "base_qwen": args.base_qwen, "limit": args.limit,
                "batch_size": args.batch_size, "think": args.think, "data_dir": str(args.data_dir),
                "text_data_dir": str(args.text_data_dir)}
    hub_ids = {"datasets": benchmarks.hub_datasets(configs, args.data_dir), "metrics": benchmarks.metric_names(configs)}
    out.write_text(json.dumps({**settings, **hub_ids, "scores": scores, "text_scores": forgetting, "results": details},
                              indent=2, ensure_ascii=False, default=str))
    out.with_suffix(".md").write_text(markdown + "\n")
    model_card.refresh_card(args.model)  # a model trained here: its card shows the tables
    print(summary_line(scores, forgetting, time.perf_counter() - started, out))
    print(f"next:\n  python eval_bench.py --model {args.model} --baseline model/SmolVLM2-256M-Video-Instruct "
          f"--base_qwen model/Qwen3-0.6B    # beside the donors\n"
          f"  python infer.py --model {args.model} --image PATH --question \"...\"")


if __name__ == "__main__":
    main()
