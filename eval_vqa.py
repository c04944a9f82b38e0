"""VQA accuracy and eval loss of a trained Qwen3-SmVL on the rows its training config held out.

    python eval_vqa.py cocoqa_train.yaml --model model/freeze_llm_vlm_cocoqa [--samples 200] [--max-new-tokens 128] [--think]

The rows are the config's eval_data when set, else the ones train.py held out for the config's
train_data, test_size and data seed, so the model never trained on them; further `--key value` flags
override the YAML as in train.py. Each row's conversation up to its last assistant turn (images where
they stand) is answered and the reply scored against that turn; the eval loss is the mean
cross-entropy over the tokens the config's collator supervises (the Trainer's eval_loss averages
per-row means instead). A table goes to stdout and the summary with every answer to
<model>/eval_results.json. Next to it, the loss on the answers of a text-only held-out set
(`text_eval_file`, shipped: text_eval.jsonl) shows whether training damaged Qwen3's language.
"""

import argparse
import sys
from pathlib import Path

from qwen3_smvl import graft, inference, model_card
from qwen3_smvl.data import loading, row_shape
from qwen3_smvl.evaluation import vqa
from qwen3_smvl.training.train_config import ConfigError, parse_config, seed_of_data, use_offline_demo


def held_out_rows(config_argv):
    """(rows, data_args, data seed): the rows train.py holds out for this config."""
    # Only the data fields are used: use_cpu keeps a bf16 training config parseable without a GPU.
    model_args, data_args, run_args, training_args = parse_config([*config_argv, "--use_cpu", "true"])
    if run_args.offline_demo_dir:
        use_offline_demo(model_args, data_args, run_args)
    if data_args.test_size == 0 and not data_args.eval_data:
        raise ConfigError("test_size is 0 and eval_data is not set: the config holds out no rows to evaluate on")
    rows = loading.load_data(data_args, seed_of_data(training_args)).held_out
    return rows, data_args, seed_of_data(training_args)


def parse_args(argv):
    """-> (eval_vqa.py's options, the YAML and its overrides for train_config.parse_config)."""
    parser = argparse.ArgumentParser(
        prog="eval_vqa.py", allow_abbrev=False, usage="%(prog)s CONFIG.yaml --model DIR [options] [--key value ...]",
        description="VQA accuracy and eval loss on the rows a train.py config holds out.",
        epilog="Any other --key value overrides the YAML, as in train.py.",
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="a model directory written by train.py or stitch.py")
    parser.add_argument("--samples", type=int, metavar="N", help="evaluate the first N held-out rows only")
    parser.add_argument("--max-new-tokens", "--max_new_tokens", type=int, default=vqa.DEFAULT_MAX_NEW_TOKENS,
                        metavar="N", help="answer length cap, thinking included (default %(default)s)")
    parser.add_argument("--think", action="store_true", help="answer with thinking on (training used it off)")
    config = argv[:1] if argv and not argv[0].startswith("-") else []
    args, overrides = parser.parse_known_args(argv[len(config):])
    return args, [*config, *overrides]


def main(argv=None):
    args, config_argv = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if not (Path(args.model) / "config.json").is_file():
            raise ConfigError(f"--model {args.model} is not a model directory (no config.json)")
        if (args.samples is not None and args.samples < 1) or args.max_new_tokens < 1:
            raise ConfigError("--samples and --max-new-tokens must be positive")
        rows, data_args, seed = held_out_rows(config_argv)
        if data_args.text_eval_file:
            loading.load_text_rows(data_args.text_eval_file)  # refused now rather than after the VQA pass
    except (ConfigError, loading.DataError) as error:
        raise SystemExit(f"eval_vqa.py: {error}")
    if args.samples:
        rows = rows.select(range(min(args.samples, len(rows))))
    model, processor = inference.load_model(args.model)
    try:
        if row_shape.has_videos(rows):
            graft.check_renders_videos(processor, args.model)
    except graft.GraftError as error:
        raise SystemExit(f"eval_vqa.py: {error}")
    settings = {
        "model": str(args.model), "config": config_argv, "data_dir": data_args.data_dir,
        "train_data": data_args.train_data, "eval_data": data_args.eval_data, "test_size": data_args.test_size, "data_seed": seed,
        "text_eval_file": data_args.text_eval_file,
    }
    vqa.evaluate_and_report(model, processor, rows, data_args, args.model, args.max_new_tokens, args.think, settings)
    model_card.refresh_card(args.model)  # a model trained here: its card shows the new figures
    print(f"next:\n  python infer.py --model {args.model} --image PATH --question \"...\"\n"
          f"  python export_gguf.py --model {args.model} --out gguf/    # for llama.cpp")


if __name__ == "__main__":
    main()
