"""The run's configuration: argument dataclasses, YAML + `--key value` parsing, and every check that
can refuse a run before anything is deleted, downloaded or trained.

Every key of a training YAML is a field of `ModelArguments`, `DataArguments`, `RunArguments` below or
of transformers' `TrainingArguments`; an unknown key stops the run before anything is loaded.
train.py and eval_vqa.py read their configs through `parse_config`.
"""

import difflib
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml
from transformers import HfArgumentParser, TrainingArguments

import infer
import sources
import stitch
from collate import ON_BAD_SAMPLE_CHOICES, PADDING_CHOICES

SAVE_DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass
class ModelArguments:
    smolvlm_path: str = field(default=stitch.DEFAULT_SMOLVLM, metadata={"help": "SmolVLM2 checkpoint (vision tower, processors)"})
    qwen_path: str = field(default=stitch.DEFAULT_QWEN, metadata={"help": "Qwen3 checkpoint (text model, tokenizer)"})
    init_from: str | None = field(default=None, metadata={"help": "a directory written by `stitch.py` or by an earlier run; skips the graft"})
    freeze_vision: bool = field(default=True, metadata={"help": "keep the vision tower frozen"})
    freeze_text: bool = field(default=True, metadata={"help": "keep the text model and LM head frozen"})
    freeze_connector: bool = field(default=False, metadata={"help": "keep the connector frozen"})


@dataclass
class DataArguments:
    data_dir: str = field(default="data/the_cauldron", metadata={"help": "the_cauldron as downloaded: `<data_dir>/<subset>/train-*.parquet`"})
    train_data: list[str] = field(default_factory=lambda: ["cocoqa"], metadata={"help": "a subset, a list, a comma-separated string, or `all` (the original's 21 subsets), and/or file sources `{path, format, data_root, weight, max_samples}` (see [Your own data](#your-own-data))"})
    eval_data: list[str] | None = field(default=None, metadata={"help": "sources in `train_data`'s forms; when set, evaluation and the demo use them and no rows are held out"})
    image_cache_dir: str = field(default="data/image_cache", metadata={"help": "where `http(s)` image URLs are fetched to, once, before training"})
    test_size: int = field(default=64, metadata={"help": "held-out rows (split with `data_seed`) across sources, for evaluation and the demo; unused when `eval_data` is set"})
    max_train_samples: int | None = field(default=None, metadata={"help": "cap on training rows"})
    max_length: int = field(default=2048, metadata={"help": "token cap per sample; text is cut after the image, never inside it"})
    padding: str = field(default="longest", metadata={"help": "`longest` (pad to the batch, multiple of 8) or `max_length` (the original's fixed 2K)"})
    max_images: int = field(default=1, metadata={"help": "images per row: the_cauldron rows keep their first `max_images`; a LLaVA/messages row placing more is skipped"})
    first_turn_only: bool = field(default=False, metadata={"help": "train on the first exchange only (`texts[0]`), as the original did"})
    assistant_only_loss: bool = field(default=False, metadata={"help": "supervise only the assistant turns and their `<|im_end|>`"})
    on_bad_sample: str = field(default="raise", metadata={"help": "`raise`, or `skip` (counted and reported) for unusable rows"})
    supervised_logits_only: bool = field(default=True, metadata={"help": "run the LM head only on positions with a next-token target (same loss and gradients; see below)"})


@dataclass
class RunArguments:
    overwrite_output_dir: bool = field(default=False, metadata={"help": "start afresh instead of resuming from `output_dir`'s last checkpoint"})
    save_dtype: str = field(default="auto", metadata={"help": "dtype of the final standalone model: `auto` (the source checkpoints' dtype, bf16 for the real ones), `bfloat16`, `float16` or `float32`"})
    demo_image: str | None = field(default=None, metadata={"help": "image for the post-training demo (none: the first held-out row's image)"})
    demo_question: str = field(default="图中有什么动物？", metadata={"help": "question for the post-training demo (asked with thinking on)"})
    demo_max_new_tokens: int = field(default=512, metadata={"help": "answer length cap for the demo, thinking included"})
    run_evaluation: bool = field(default=False, metadata={"help": "after training, run `eval_vqa.py`'s scoring on the held-out rows"})
    eval_max_new_tokens: int = field(default=128, metadata={"help": "answer length cap for `run_evaluation`"})
    check_data: bool = field(default=False, metadata={"help": "check the config's data (counts, problems with file:line, token lengths) and exit without loading a model; exit status 1 on a problem"})
    offline_demo_dir: str | None = field(default=None, metadata={"help": "build tiny random checkpoints and synthetic data here and train on them"})


ARGUMENT_CLASSES = (ModelArguments, DataArguments, RunArguments, TrainingArguments)
# Keys that transformers 5 dropped from TrainingArguments, and what replaces them.
RENAMED_KEYS = {"warmup_ratio": "warmup_steps"}  # a float below 1 in warmup_steps is a ratio
# The project's defaults where TrainingArguments' own do not fit a VLM run.
PROJECT_DEFAULTS = {
    "remove_unused_columns": False,  # the collator needs the raw `messages` and `images` columns
    "prediction_loss_only": True,  # evaluation would otherwise keep 2K x 152K logits per sample
    "report_to": "none",
    "output_dir": "output",
}


class ConfigError(ValueError):
    """A config that must not start a run; the message names the file and key."""


def read_yaml(path):
    try:
        config = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found")
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}")
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold a mapping of key: value, not {type(config).__name__}")
    return config


def rename_old_keys(config, source):
    for old, new in RENAMED_KEYS.items():
        if old in config:
            if new in config:
                raise ConfigError(f"{source}: both '{old}' and '{new}' are set; transformers 5 knows only '{new}'")
            value = " ".join(config[old]) if isinstance(config[old], list) else config[old]
            print(f"notice: {source}: '{old}: {value}' mapped to '{new}: {value}' (transformers 5 dropped '{old}')")
            config[new] = config.pop(old)
    return config


def check_known_keys(config, source):
    known = {f.name for cls in ARGUMENT_CLASSES for f in fields(cls)}
    for key in config:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown key '{key}'{hint}")


def split_cli_overrides(flags):
    """`--key value [value ...]` / `--key=value` / a bare `--flag` -> {key: [values]}."""
    overrides, key = {}, None
    for flag in flags:
        if flag.startswith("--"):
            key, has_value, value = flag[2:].partition("=")
            key = key.replace("-", "_")
            overrides[key] = [value] if has_value else []
        elif key is None:
            raise ConfigError(f"command line: expected --key value, got '{flag}'")
        else:
            overrides[key].append(flag)
    return overrides


def parse_config(argv):
    """YAML file (optional, first) plus --key value overrides -> the four argument dataclasses."""
    config, source = {}, "command line"
    if argv and not argv[0].startswith("--"):
        source = argv[0]
        config = rename_old_keys(read_yaml(source), source)
        argv = argv[1:]
    overrides = rename_old_keys(split_cli_overrides(argv), "command line")
    check_known_keys(config, source)
    check_known_keys(overrides, "command line")
    parser = HfArgumentParser(ARGUMENT_CLASSES)

    def refuse(message):  # argparse would print the usage of ~150 TrainingArguments first
        raise ConfigError(message)

    parser.error = refuse
    parser.set_defaults(**{**PROJECT_DEFAULTS, **config})
    cli = [token for key, values in overrides.items() for token in (f"--{key}", *values)]
    try:
        model_args, data_args, run_args, training_args = parser.parse_args_into_dataclasses(args=cli)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{source}: {error}")
    if "include_num_input_tokens_seen" not in {**config, **overrides}:
        # Set after parsing: argparse reads a string default of this str|bool field as a bool.
        training_args.include_num_input_tokens_seen = "non_padding"  # summed over ranks
    return model_args, data_args, run_args, training_args


def use_offline_demo(model_args, data_args, run_args):
    """Point the run at tiny random checkpoints and synthetic data, built once under the cache dir."""
    import tiny

    paths = tiny.prepare_offline_demo(run_args.offline_demo_dir)
    model_args.smolvlm_path, model_args.qwen_path = str(paths["smolvlm"]), str(paths["qwen"])
    data_args.data_dir = str(paths["data"])


def seed_of_data(training_args):
    return training_args.seed if training_args.data_seed is None else training_args.data_seed


def check_config(model_args, data_args, run_args, training_args):
    """Refuse what would fail (or silently mislead) only after hours of GPU time."""
    choices = {"padding": PADDING_CHOICES, "on_bad_sample": ON_BAD_SAMPLE_CHOICES}
    for key, allowed in choices.items():
        if getattr(data_args, key) not in allowed:
            raise ConfigError(f"{key}: '{getattr(data_args, key)}' is not one of {allowed}")
    if run_args.save_dtype not in SAVE_DTYPES:
        raise ConfigError(f"save_dtype: '{run_args.save_dtype}' is not one of {SAVE_DTYPES}")
    if data_args.max_length < 1 or data_args.max_images < 1 or data_args.test_size < 0:
        raise ConfigError("max_length and max_images must be positive and test_size not negative")
    if (training_args.eval_strategy != "no" or run_args.run_evaluation) and data_args.test_size == 0 and not data_args.eval_data:
        raise ConfigError("eval_strategy or run_evaluation is set but test_size is 0 and eval_data is not set: "
                          "nothing to evaluate on")
    if training_args.remove_unused_columns:
        raise ConfigError("remove_unused_columns must be false: the collator reads the raw `messages` and `images` columns")
    for key in ("train_data", "eval_data"):
        try:
            sources.parse_sources(getattr(data_args, key), data_args.data_dir, key)
        except sources.DataError as error:
            raise ConfigError(str(error))
    if model_args.freeze_vision and model_args.freeze_text and model_args.freeze_connector:
        raise ConfigError("freeze_vision, freeze_text and freeze_connector are all true: nothing would train")
    if run_args.demo_image:
        try:
            infer.load_image(run_args.demo_image)
        except (FileNotFoundError, ValueError) as error:
            raise ConfigError(f"demo_image: {error}")
    if model_args.init_from and not (Path(model_args.init_from) / "config.json").is_file():
        raise ConfigError(f"init_from: {model_args.init_from} is not a model directory (no config.json)")
    if not model_args.init_from:
        stitch.check_source_dirs(model_args.smolvlm_path, model_args.qwen_path, need_weights=not run_args.check_data)


def configure(argv):
    """Parsed and checked arguments, with the offline demo's paths filled in when asked for."""
    model_args, data_args, run_args, training_args = parse_config(argv)
    if run_args.offline_demo_dir:
        use_offline_demo(model_args, data_args, run_args)
    check_config(model_args, data_args, run_args, training_args)
    return model_args, data_args, run_args, training_args
