"""The run's configuration: argument dataclasses, YAML + `--key value` parsing, and every check that
can refuse a run before anything is deleted, downloaded or trained.

Every key of a training YAML is a field of `ModelArguments`, `DataArguments`, `RunArguments` below or
of transformers' `TrainingArguments` (with `stage: dpo`, of TRL's `DPOConfig`, which extends it); an unknown
key stops the run before anything is loaded.
train.py and eval_vqa.py read their configs through `parse_config`.
"""

import difflib
import importlib.util
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path

import yaml

from transformers import HfArgumentParser, TrainingArguments
from transformers.hf_argparser import string_to_bool
from transformers.models.smolvlm.image_processing_smolvlm import MAX_IMAGE_SIZE

from qwen3_smvl import graft, inference
from qwen3_smvl.data import loading, sources
from qwen3_smvl.data.collate import ON_BAD_SAMPLE_CHOICES, PADDING_CHOICES
from qwen3_smvl.training import ConfigError, attention, fused_kernels, preemption, trainable

SAVE_DTYPES = ("auto", "bfloat16", "float16", "float32")
STAGES = ("sft", "grpo", "dpo")
SHIPPED_TEXT_EVAL = str(Path(__file__).resolve().parents[2] / "text_eval.jsonl")


@dataclass
class ModelArguments:
    smolvlm_path: str = field(default=graft.DEFAULT_SMOLVLM, metadata={"help": "SmolVLM2 checkpoint (vision tower, processors)"})
    qwen_path: str = field(default=graft.DEFAULT_QWEN, metadata={"help": "Qwen3 checkpoint (text model, tokenizer)"})
    init_from: str | None = field(default=None, metadata={"help": "a directory written by `stitch.py` or by an earlier run; skips the graft"})
    # A part trains when its freeze_* is false or its *_lr above 0; unset, the connector trains, the
    # vision tower is frozen and the text model trains only under LoRA. Both set and disagreeing: refused.
    freeze_vision: bool | None = field(default=None, metadata={"help": "keep the vision tower frozen (default: yes, unless vision_lr > 0 or lora_vision)"})
    freeze_text: bool | None = field(default=None, metadata={"help": "keep the text model and LM head frozen (default: yes, unless text_lr > 0 or lora_r > 0)"})
    freeze_connector: bool | None = field(default=None, metadata={"help": "keep the connector frozen (default: no, unless connector_lr is 0)"})
    vision_lr: float | None = field(default=None, metadata={"help": "learning rate of the vision tower (default: learning_rate when it trains); 0 freezes it"})
    connector_lr: float | None = field(default=None, metadata={"help": "learning rate of the connector (default: learning_rate); 0 freezes it"})
    text_lr: float | None = field(default=None, metadata={"help": "learning rate of the text model, or of its LoRA adapters (default: learning_rate when it trains); 0 freezes it"})
    unfreeze_text_layers: int | None = field(default=None, metadata={"help": "train only the last N decoder layers (and the final norm) of the text model"})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank on the text model (0: no LoRA)"})
    lora_alpha: float = field(default=32, metadata={"help": "LoRA scaling numerator (the update is scaled by lora_alpha / lora_r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA adapters' input"})
    lora_target: str | None = field(default=None, metadata={"help": "regex matched against whole module names (default: every linear layer of the text model's decoder layers)"})
    lora_vision: bool = field(default=False, metadata={"help": "also put LoRA adapters on the vision tower's encoder layers"})
    attn_implementation: str | None = field(default=None, metadata={"help": "`sdpa` (default; per-sample SDPA under packing), `eager`, `flash_attention_2`, `flash_attention_3` or a kernels hub name (`kernels-community/flash-attn3`); the varlen ones get packed samples' boundaries from the collator, with no per-layer host sync; refused where its package or a CUDA GPU is missing (see [Throughput](throughput.md))"})


@dataclass
class DataArguments:
    data_dir: str = field(default="data/the_cauldron", metadata={"help": "the_cauldron as downloaded: `<data_dir>/<subset>/train-*.parquet`"})
    train_data: list[str] = field(default_factory=lambda: ["cocoqa"], metadata={"help": "a subset, a list, a comma-separated string, or `all` (the original's 21 subsets), and/or file sources: a path (with a `/` or a .json/.jsonl/.parquet suffix) or `{path, format, data_root, weight, max_samples}` (see [Your own data](own-data.md))"})
    eval_data: list[str] | None = field(default=None, metadata={"help": "sources in `train_data`'s forms; when set, evaluation and the demo use them and no rows are held out"})
    image_cache_dir: str = field(default="data/image_cache", metadata={"help": "where `http(s)` image and video URLs are fetched to, once, before training"})
    test_size: int = field(default=64, metadata={"help": "held-out rows (split with `data_seed`) across sources, for evaluation and the demo; unused when `eval_data` is set"})
    max_train_samples: int | None = field(default=None, metadata={"help": "cap on training rows"})
    max_length: int = field(default=2048, metadata={"help": "token cap per sample; text is cut after the image, never inside it"})
    padding: str = field(default="longest", metadata={"help": "`longest` (pad to the batch, multiple of 8) or `max_length` (the original's fixed 2K)"})
    max_images: int = field(default=1, metadata={"help": "images per row: the_cauldron rows keep their first `max_images`; a LLaVA/messages row placing more is skipped"})
    first_turn_only: bool = field(default=False, metadata={"help": "train on the first exchange only (`texts[0]`), as the original did"})
    assistant_only_loss: bool = field(default=False, metadata={"help": "supervise only the assistant turns and their `<|im_end|>`"})
    on_bad_sample: str = field(default="raise", metadata={"help": "`raise`, or `skip` (counted and reported) for unusable rows"})
    supervised_logits_only: bool = field(default=True, metadata={"help": "run the LM head only on positions with a next-token target (same loss and gradients; see [Training](training.md#batches-collatepy))"})
    text_eval_file: str | None = field(default=SHIPPED_TEXT_EVAL, metadata={"help": "JSONL of {user, assistant} pairs whose answer loss evaluation reports (forgetting); null: none"})
    image_longest_edge: int | None = field(default=None, metadata={"help": "resize images to this longest edge before tiling (default: the processor's, 2048 for SmolVLM2; a multiple of the tile size when splitting); saved with the processor"})
    image_splitting: bool | None = field(default=None, metadata={"help": "split images into tiles plus a global view; false: one tile-sized view per image (default: the processor's, true for SmolVLM2); saved with the processor"})
    native_resolution: bool | None = field(default=None, metadata={"help": "keep each image at its own size, rounded up to the next tile multiple (512 px) instead of upscaled to image_longest_edge; images over image_longest_edge are shrunk to it. Saved with the processor as `do_resize: false` (default: the processor's, off for SmolVLM2; off until its accuracy is measured; see [Throughput](throughput.md#native-resolution))"})
    video_fps: float | None = field(default=None, metadata={"help": "frames sampled per second of a video (default: the processor's, 1 for SmolVLM2); saved with the processor"})
    video_max_frames: int | None = field(default=None, metadata={"help": "most frames sampled from one video, evenly spread over longer clips (default: the processor's, 64 for SmolVLM2); saved with the processor"})
    packing: bool = field(default=False, metadata={"help": "concatenate whole samples into one row of up to max_tokens_per_batch tokens, each attending only to itself"})
    max_tokens_per_batch: int = field(default=8192, metadata={"help": "token budget of a packed row (packing: true); a longer sample goes alone"})
    packing_window: int = field(default=256, metadata={"help": "samples drawn (shuffled, seeded) per best-fit packing window"})


@dataclass
class RunArguments:
    stage: str = field(default="sft", metadata={"help": "what the run trains for: `sft` (the answers, stages 1 and 2), `grpo` (reinforcement learning from verifiable rewards through TRL's GRPOTrainer) or `dpo` (`chosen` over `rejected` answers through TRL's DPOTrainer); TRL's keys of that trainer then apply; see [Preference and RL](preference-and-rl.md)"})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "start afresh instead of resuming from `output_dir`'s last checkpoint"})
    save_dtype: str = field(default="auto", metadata={"help": "dtype of the final standalone model: `auto` (the source checkpoints' dtype, bf16 for the real ones), `bfloat16`, `float16` or `float32`"})
    demo_image: str | None = field(default=None, metadata={"help": "image for the post-training demo (none: the first held-out row's image)"})
    demo_question: str = field(default="图中有什么动物？", metadata={"help": "question for the post-training demo (asked with thinking on)"})
    demo_max_new_tokens: int = field(default=512, metadata={"help": "answer length cap for the post-training demo, thinking included; 0: no demo"})
    run_evaluation: bool = field(default=False, metadata={"help": "after training, run `eval_vqa.py`'s scoring on the held-out rows"})
    eval_max_new_tokens: int = field(default=128, metadata={"help": "answer length cap for `run_evaluation`"})
    bench_tasks: list[str] | None = field(default=None, metadata={"help": "lmms-eval tasks (eval_bench.py's names) scored on the model being trained every `bench_steps` steps, logged as `eval_bench_<task>` (see [Evaluation](evaluation.md#during-training)); default: none, off"})
    bench_steps: int = field(default=0, metadata={"help": "run `bench_tasks` every N optimizer steps; 0: at each evaluation (`eval_strategy`)"})
    bench_limit: int = field(default=16, metadata={"help": "questions per task in each `bench_tasks` run (the first N)"})
    bench_data_dir: str = field(default="data/bench", metadata={"help": "local copies of the `bench_tasks` datasets, as `download_resource.sh --bench TASK` puts them"})
    check_data: bool = field(default=False, metadata={"help": "check the config's data (counts, problems with file:line, token lengths) and exit without loading a model; exit status 1 on a problem. Runs on a machine without the recipe's GPU (a login node): it sets use_cpu, so bf16/fp16 keys do not refuse it"})
    offline_demo_dir: str | None = field(default=None, metadata={"help": "build tiny random checkpoints and synthetic data here and train on them"})
    max_nonfinite_steps: int = field(default=3, metadata={"help": "a step with a non-finite loss or gradient norm is skipped (no weight update) and logged with its rows' origins; after this many in a row the run saves a checkpoint and stops, naming the rows"})
    preempt_signals: list[str] = field(default_factory=lambda: ["SIGTERM", "SIGUSR1"], metadata={"help": "on these signals the run finishes its optimizer step, saves a checkpoint and exits with status 75: resume with the same command (`[]`: none; see [Preemption](stage2-and-multi-gpu.md#preemption-slurm-spot-instances))"})


ARGUMENT_CLASSES = (ModelArguments, DataArguments, RunArguments, TrainingArguments)
PROJECT_KEYS = {f.name for cls in ARGUMENT_CLASSES[:-1] for f in fields(cls)}
# Keys that transformers 5 dropped from TrainingArguments, and what replaces them.
RENAMED_KEYS = {"warmup_ratio": "warmup_steps"}  # a float below 1 in warmup_steps is a ratio
# The project's defaults where TrainingArguments' own do not fit a VLM run.
PROJECT_DEFAULTS = {
    "remove_unused_columns": False,  # the collator needs the raw `messages` and `images` columns
    "prediction_loss_only": True,  # evaluation would otherwise keep 2K x 152K logits per sample
    "report_to": "none",
    "output_dir": "output",
}
# A stage's own defaults: GRPO thinks (the prompt leaves the think block to the model instead of closing it
# empty); bf16 stays off unless a recipe sets it, as in every stage (TRL's configs turn it on by default).
# log_multimodal off: TRL 1.16 gathers the images for its logs only on ranks that have some, so a rank
# with text-only prompts never joins that collective and the run hangs (grpo_config.check_keys refuses it on).
STAGE_DEFAULTS = {"grpo": {"chat_template_kwargs": {"enable_thinking": True}, "bf16": False, "log_multimodal": False},
                  "dpo": {"bf16": False}}


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


def stage_trainer_config(stage):
    """The trainer's own config class of a stage: transformers' TrainingArguments, or TRL's for grpo (with
    the project's reward keys, qwen3_smvl/training/grpo.py) and dpo."""
    if stage == "grpo":
        from qwen3_smvl.training.grpo_config import GRPOArguments

        return GRPOArguments
    if stage == "dpo":
        from trl import DPOConfig

        return DPOConfig
    return TrainingArguments


# The project's defaults for TRL's keys, by config class. DPO's loss_type: sigmoid DPO alone can widen the margin while both
# answers' probabilities fall (p(chosen) 0.5 -> 0.3 on a tiny graft); its SFT term on the chosen answer
# keeps p(chosen) rising (docs/design.md).
TRL_DEFAULTS = {"DPOConfig": {"loss_type": ["sigmoid", "sft"]}}


def trainer_keys(config_class):
    """`config_class`'s keys as a dataclass the parser can hold beside the project's: the keys the project's
    dataclasses also have (DPOConfig's `max_length`) are the project's, and feed the trainer's config too;
    TRL_DEFAULTS (per config class: GRPOConfig has a `loss_type` of its own) replace TRL's defaults."""
    if config_class is TrainingArguments:
        return TrainingArguments
    project_defaults = TRL_DEFAULTS.get(config_class.__name__, {})

    def default(f):
        if f.name in project_defaults:
            return field(default_factory=lambda: list(project_defaults[f.name]), metadata=f.metadata)
        return field(default=f.default, default_factory=f.default_factory, metadata=f.metadata)

    kept = [(f.name, f.type, default(f)) for f in fields(config_class) if f.init and f.name not in PROJECT_KEYS]
    return make_dataclass(f"{config_class.__name__}Keys", kept)


def stage_of(config, overrides, source):
    values = overrides.get("stage")
    stage = values[-1] if values else config.get("stage", "sft")
    if stage not in STAGES:
        raise ConfigError(f"{source}: stage: '{stage}' is not one of {STAGES}")
    return stage


def checks_data_only(config, overrides):
    """Whether the run is `--check_data true`: it loads no model, so it runs on a machine without the
    recipe's GPU (a login node) and the precision keys must not refuse it there."""
    values = overrides.get("check_data")
    if values is None:
        return bool(config.get("check_data"))
    return not values or string_to_bool(values[-1])


def check_known_keys(config, source, classes=ARGUMENT_CLASSES):
    known = {f.name for cls in classes for f in fields(cls)}
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
    stage = stage_of(config, overrides, source)
    trainer_config = stage_trainer_config(stage)
    classes = (*ARGUMENT_CLASSES[:-1], trainer_keys(trainer_config))
    check_known_keys(config, source, classes)
    check_known_keys(overrides, "command line", classes)
    parser = HfArgumentParser(classes)

    def refuse(message):  # argparse would print the usage of ~150 TrainingArguments first
        raise ConfigError(message)

    parser.error = refuse
    data_check_on_cpu = {"use_cpu": True} if checks_data_only(config, overrides) else {}
    parser.set_defaults(**{**PROJECT_DEFAULTS, **STAGE_DEFAULTS.get(stage, {}), **config, **data_check_on_cpu})
    cli = [token for key, values in overrides.items() for token in (f"--{key}", *values)]
    try:
        model_args, data_args, run_args, training_args = parser.parse_args_into_dataclasses(args=cli)
        if trainer_config is not TrainingArguments:
            shared = {key: getattr(data_args, key) for key in PROJECT_KEYS & {f.name for f in fields(trainer_config)}}
            training_args = trainer_config(**vars(training_args), **shared)
    except (ValueError, TypeError, NotImplementedError) as error:
        raise ConfigError(f"{source}: {error}")
    if stage != "grpo" and "include_num_input_tokens_seen" not in {**config, **overrides}:
        # Set after parsing: argparse reads a string default of this str|bool field as a bool.
        training_args.include_num_input_tokens_seen = "non_padding"  # summed over ranks
    return model_args, data_args, run_args, training_args


def default_arguments(stage="sft"):
    """The four argument dataclasses as an empty config of `stage` gives them (what the model card compares
    a run with: a grpo or dpo run's training arguments are TRL's, with TRL's defaults)."""
    return parse_config(["--stage", stage])


def use_offline_demo(model_args, data_args, run_args):
    """Point the run at tiny random checkpoints and synthetic data, built once under the cache dir."""
    from qwen3_smvl import tiny

    paths = tiny.prepare_offline_demo(run_args.offline_demo_dir)
    model_args.smolvlm_path, model_args.qwen_path = str(paths["smolvlm"]), str(paths["qwen"])
    data_args.data_dir = str(paths["data"])


def seed_of_data(training_args):
    return training_args.seed if training_args.data_seed is None else training_args.data_seed


def check_throughput_keys(data_args, training_args):
    if data_args.max_tokens_per_batch < 1 or data_args.packing_window < 1:
        raise ConfigError("max_tokens_per_batch and packing_window must be positive")
    if data_args.image_longest_edge is not None and not 1 <= data_args.image_longest_edge <= MAX_IMAGE_SIZE:
        raise ConfigError(f"image_longest_edge: {data_args.image_longest_edge} is outside 1..{MAX_IMAGE_SIZE} "
                          "(SmolVLM's image processor caps images at that size)")
    if data_args.video_fps is not None and not data_args.video_fps > 0:
        raise ConfigError(f"video_fps: {data_args.video_fps} must be above 0")
    if data_args.video_max_frames is not None and data_args.video_max_frames < 1:
        raise ConfigError(f"video_max_frames: {data_args.video_max_frames} must be at least 1")
    if not data_args.packing:
        return
    if training_args.per_device_train_batch_size != 1:
        raise ConfigError(f"per_device_train_batch_size is {training_args.per_device_train_batch_size} but packing is on: "
                          "a batch is one packed row of max_tokens_per_batch tokens (set it to 1, tune max_tokens_per_batch)")
    if training_args.train_sampling_strategy != "random":
        raise ConfigError(f"train_sampling_strategy: '{training_args.train_sampling_strategy}' does not apply with packing, "
                          "which draws its own shuffled best-fit batches")


def check_bench_keys(run_args, training_args):
    """bench_tasks: the numbers, something to trigger it, lmms-eval installed, the tasks known and their data there."""
    if run_args.bench_steps < 0 or run_args.bench_limit < 1:
        raise ConfigError(f"bench_steps must not be negative and bench_limit must be positive "
                          f"(got {run_args.bench_steps}, {run_args.bench_limit})")
    if not run_args.bench_steps and training_args.eval_strategy == "no":
        raise ConfigError("bench_tasks is set with bench_steps: 0 (at each evaluation) but eval_strategy is 'no'; "
                          "set bench_steps or eval_strategy")
    if importlib.util.find_spec("lmms_eval") is None:
        raise ConfigError("bench_tasks needs lmms-eval: pip install -r requirements-eval.txt")
    from qwen3_smvl.evaluation import benchmarks

    try:
        benchmarks.checked_configs(run_args.bench_tasks, run_args.bench_data_dir)
    except benchmarks.BenchError as error:
        raise ConfigError(f"bench_tasks: {error}")


def check_dpo_keys(model_args, data_args, run_args, training_args):
    """What stage dpo cannot do, refused before anything loads."""
    if not model_args.init_from:
        raise ConfigError("stage: dpo starts from a trained checkpoint (stage 1 or 2's output): set init_from")
    if data_args.packing or training_args.train_sampling_strategy == "group_by_length":
        raise ConfigError("stage: dpo batches whole preference pairs: packing and group_by_length do not apply")
    if run_args.run_evaluation:
        raise ConfigError("run_evaluation scores short answers against a reference; with stage: dpo the held-out "
                          "pairs' preference metrics (eval_rewards/accuracies, eval_logps/chosen) are logged at each "
                          "evaluation (eval_strategy) instead")
    if training_args.precompute_ref_log_probs:
        raise ConfigError("precompute_ref_log_probs: TRL's DPOTrainer does not precompute for image rows")


def check_config(model_args, data_args, run_args, training_args):
    """Refuse what would fail (or silently mislead) only after hours of GPU time. Returns what trains
    (trainable.decide's answer, which refuses parts that cannot train as asked)."""
    choices = {"padding": PADDING_CHOICES, "on_bad_sample": ON_BAD_SAMPLE_CHOICES}
    for key, allowed in choices.items():
        if getattr(data_args, key) not in allowed:
            raise ConfigError(f"{key}: '{getattr(data_args, key)}' is not one of {allowed}")
    if run_args.stage not in STAGES:
        raise ConfigError(f"stage: '{run_args.stage}' is not one of {STAGES}")
    if run_args.stage == "grpo":
        from qwen3_smvl.training import grpo_config

        grpo_config.check_keys(data_args, run_args, training_args)
    if run_args.stage == "dpo":
        check_dpo_keys(model_args, data_args, run_args, training_args)
    if run_args.save_dtype not in SAVE_DTYPES:
        raise ConfigError(f"save_dtype: '{run_args.save_dtype}' is not one of {SAVE_DTYPES}")
    if run_args.demo_max_new_tokens < 0:
        raise ConfigError(f"demo_max_new_tokens: {run_args.demo_max_new_tokens} must be 0 (no demo) or more")
    if run_args.max_nonfinite_steps < 1:
        raise ConfigError(f"max_nonfinite_steps: {run_args.max_nonfinite_steps} must be at least 1")
    try:
        preemption.signal_numbers(run_args.preempt_signals)
    except preemption.SignalNameError as error:
        raise ConfigError(str(error))
    if data_args.max_length < 1 or data_args.max_images < 1 or data_args.test_size < 0:
        raise ConfigError("max_length and max_images must be positive and test_size not negative")
    check_throughput_keys(data_args, training_args)
    attention.check_attention(model_args.attn_implementation, training_args)
    fused_kernels.configure_liger(training_args, data_args)
    if run_args.run_evaluation and data_args.text_eval_file:
        loading.load_text_rows(data_args.text_eval_file)
    if (training_args.eval_strategy != "no" or run_args.run_evaluation) and data_args.test_size == 0 and not data_args.eval_data:
        raise ConfigError("eval_strategy or run_evaluation is set but test_size is 0 and eval_data is not set: "
                          "nothing to evaluate on")
    if training_args.push_to_hub or training_args.hub_model_id:
        target = f"hf:{training_args.hub_model_id or 'USER/NAME'}"
        raise ConfigError(f"push_to_hub/hub_model_id: train.py does not push during training (the Trainer would upload "
                          f"checkpoints without the model card); drop them and, after training, run `python publish.py "
                          f"--model {training_args.output_dir} --to {target}` (or --to modelscope:USER/NAME)")
    if training_args.remove_unused_columns:
        raise ConfigError("remove_unused_columns must be false: the collator reads the raw `messages` and `images` columns")
    for key in ("train_data", "eval_data"):
        try:
            sources.parse_sources(getattr(data_args, key), data_args.data_dir, key)
        except sources.DataError as error:
            raise ConfigError(str(error))
    parts = trainable.decide(model_args, training_args)
    if run_args.bench_tasks:
        check_bench_keys(run_args, training_args)
    if run_args.demo_image:
        try:
            inference.load_image(run_args.demo_image)
        except (FileNotFoundError, ValueError) as error:
            raise ConfigError(f"demo_image: {error}")
    if model_args.init_from and not (Path(model_args.init_from) / "config.json").is_file():
        raise ConfigError(f"init_from: {model_args.init_from} is not a model directory (no config.json)")
    if not model_args.init_from:
        graft.check_source_dirs(model_args.smolvlm_path, model_args.qwen_path, need_weights=not run_args.check_data)
    return parts


def configure(argv):
    """Parsed and checked arguments, with the offline demo's paths filled in when asked for, and what
    trains (a trainable.Trainable)."""
    model_args, data_args, run_args, training_args = parse_config(argv)
    if run_args.offline_demo_dir:
        use_offline_demo(model_args, data_args, run_args)
    parts = check_config(model_args, data_args, run_args, training_args)
    return model_args, data_args, run_args, training_args, parts
