"""A training run's building blocks, in the order train.py's main() uses them: the model and its
dtypes, the collator, the Trainer (stops on non-finite steps and preemption, packs when asked), the
LoRA merge, the standalone save under DDP or FSDP, the model card, and the demo after training.

train.py is the command (`python train.py CONFIG.yaml`); this module holds what its main() calls.
"""

import logging
import os
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, Trainer

from qwen3_smvl import graft, inference, model_card
from qwen3_smvl.data import lengths, loading, sources
from qwen3_smvl.data.collate import Collator
from qwen3_smvl.data.packing import PackingCollator, PackingTrainer
from qwen3_smvl.training import lora_merge, preemption, step_guard
from qwen3_smvl.training.attention import attention_for_packing, set_attention
from qwen3_smvl.training.train_config import ConfigError, default_arguments, seed_of_data

logger = logging.getLogger(__name__)


def training_dtype(training_args):
    """The dtype the backbone is loaded in: bf16 when training in bf16; otherwise float32, which
    fp16 autocast also computes from (Qwen3's activations overflow float16 weights)."""
    return torch.bfloat16 if training_args.bf16 else torch.float32


def source_dtype(model_args):
    """The dtype the source checkpoint is stored in (bf16 for the real ones)."""
    config = AutoConfig.from_pretrained(model_args.init_from or model_args.qwen_path)
    return config.dtype or torch.float32


def save_dtype_of(model_args, run_args):
    """The dtype the trained model is saved in: save_dtype, or with "auto" the source checkpoint's."""
    return source_dtype(model_args) if run_args.save_dtype == "auto" else getattr(torch, run_args.save_dtype)


def load_model(model_args, training_args):
    dtype = training_dtype(training_args)
    if model_args.init_from:
        # use_kernels=False wherever the package loads a model: transformers 5.25 turns hub kernels on by default
        # when `kernels` is installed and fetches them at the first train()/eval() on a GPU, which fails offline
        # (measured on an H200: "Version 2 of 'kernels-community/rotary' is not available in the local cache").
        model = AutoModelForImageTextToText.from_pretrained(model_args.init_from, dtype=dtype, use_kernels=False)
        processor = AutoProcessor.from_pretrained(model_args.init_from)
        graft.verify_graft(model, processor)
    else:
        model, processor = graft.stitch(model_args.smolvlm_path, model_args.qwen_path, dtype=dtype,
                                        seed=training_args.seed)
    set_attention(model, model_args.attn_implementation)
    return model, processor


def build_collator(processor, data_args, model):
    if not data_args.packing:
        return Collator.from_args(processor, data_args)
    return PackingCollator.from_args(processor, data_args, attn_implementation=attention_for_packing(model))


def with_token_counts(train_dataset, collator, data_args, training_args):
    """The rows with their token counts (a `length` column), which packing and group_by_length read."""
    if not (data_args.packing or training_args.train_sampling_strategy == "group_by_length"):
        return train_dataset
    with training_args.main_process_first(desc="counting tokens"):  # ranks > 0 reuse rank 0's cache
        return lengths.with_lengths(train_dataset, collator)


def demo_image_of(run_args, eval_dataset):
    """The demo's image: demo_image, else the first held-out row's; None to skip the demo."""
    if run_args.demo_max_new_tokens == 0:
        return None
    if run_args.demo_image:
        return inference.load_image(run_args.demo_image)
    if len(eval_dataset) and eval_dataset[0]["images"]:
        return Collator.decode_image(eval_dataset[0]["images"][0])
    return None


def start_swanlab(training_args):
    """Start the SwanLab run on the main process before the Trainer does: transformers'
    SwanLabCallback asks `swanlab.get_run()`, which raises in swanlab 0.10 when no run is active."""
    if "swanlab" not in training_args.report_to or training_args.process_index != 0:
        return
    import swanlab

    if not swanlab.has_run():
        swanlab.init(project=os.getenv("SWANLAB_PROJECT", "Qwen3-SmVL"), experiment_name=training_args.run_name)


def log_demo_to_swanlab(image, question, prompt, reply):
    import swanlab

    if not swanlab.has_run():
        return
    table = swanlab.echarts.Table()
    table.add(["question", "answer"], [[question, reply]])
    swanlab.log({"demo/image": swanlab.Image(image), "demo/qa": table, "demo/context": swanlab.Text(prompt + reply)})


class GraftTrainer(Trainer):
    """A Trainer that stops early on `guard` (non-finite steps, fed each training loss with its rows'
    origins) and on `preemption_stop` (a signal). Text-only batches are
    qwen3_smvl/training/text_only_batches.py's concern (trainable.prepare_trainable adds its hook)."""

    def __init__(self, *args, guard, preemption_stop, **kwargs):
        super().__init__(*args, **kwargs)
        self.guard, self.preemption_stop = guard, preemption_stop
        self.add_callback(guard)
        self.add_callback(preemption_stop)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        origins = inputs.pop(step_guard.ORIGINS, [])
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if model.training:
            self.guard.record(result[0] if return_outputs else result, origins)
        return result


class PackedGraftTrainer(PackingTrainer, GraftTrainer):
    """PackingTrainer's packed batches with GraftTrainer's guards."""


def build_trainer(model, processor, collator, training_args, data_args, run_args, train_dataset, eval_dataset,
                  optimizer_groups):
    # The optimizer class and settings that `optim` names, over our per-part groups; the Trainer builds
    # it itself, so resume, DDP and FSDP (which must see the optimizer at prepare time) work unchanged.
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args, model)
    settings = dict(model=model, args=training_args, train_dataset=train_dataset,
                    data_collator=step_guard.WithOrigins(collator),
                    guard=step_guard.NonFiniteGuard(run_args.max_nonfinite_steps),
                    preemption_stop=preemption.Preemption(run_args.preempt_signals),
                    eval_dataset=eval_dataset if len(eval_dataset) else None, processing_class=processor,
                    optimizer_cls_and_kwargs=(optimizer_cls, {**optimizer_kwargs, "params": optimizer_groups}))
    if data_args.packing:
        return PackedGraftTrainer(**settings, max_tokens_per_batch=data_args.max_tokens_per_batch,
                                  packing_window=data_args.packing_window, packing_seed=seed_of_data(training_args))
    return GraftTrainer(**settings)


def probe_batch(processor, data_args, datasets, device):
    """One collated row: the first held-out (else training) row with an image, else the first row."""
    rows = [row for dataset in datasets for row in dataset.select(range(min(len(dataset), 64)))]
    row = next((row for row in rows if row["images"]), rows[0])
    batch = Collator.from_args(processor, data_args, padding="longest", supervised_logits_only=False)([row])
    batch.pop("labels")
    return {key: value.to(device) for key, value in batch.items()}


def merge_adapters(trainer, probe, output_dir):
    """Writes the adapter (and the parts trained in full) to output_dir/adapter, then returns the
    model with the adapters merged in, verified against the adapter model on `probe`."""
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(Path(output_dir) / lora_merge.ADAPTER_DIR)
    # Without accelerate's bf16 autocast around forward (bf16: true), which the merged model would not
    # have: the check compares float32 logits with float32 logits.
    return lora_merge.merge_verified(trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False), probe)


def check_fsdp_took_effect(trainer):
    """accelerate runs FSDP on accelerators only: launched with an FSDP config and use_cpu, the run
    would silently hold the whole model on every rank (DDP)."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and not trainer.is_fsdp_enabled:
        raise ConfigError(f"launched with an FSDP accelerate config, but accelerate enables FSDP only on GPUs "
                          f"(it would run as {trainer.accelerator.distributed_type}); drop use_cpu or the FSDP config")


def save_standalone(trainer, processor, dtype, output_dir):
    """Model + processor in output_dir, in `dtype`, loadable without this repo. Under FSDP every
    rank helps gather the shards and the main process writes the whole model."""
    if not trainer.is_fsdp_enabled:
        trainer.model.to(dtype)
        trainer.save_model(output_dir)
    else:
        state_dict = trainer.accelerator.get_state_dict(trainer.model)
        if trainer.is_world_process_zero():
            save_gathered(trainer.accelerator.unwrap_model(trainer.model), state_dict, dtype, output_dir)
    if trainer.is_world_process_zero():
        processor.save_pretrained(output_dir)


def save_gathered(model, state_dict, dtype, output_dir):
    """Writes the gathered FSDP weights as a one-process model's save_pretrained writes them. The gather
    gives each name its own copy, so tied names (lm_head.weight and the input embeddings) would no
    longer share storage and both be written: they share one tensor again. config.json records the
    dtype of the model's parameters (float32 shards), so it is set to the dtype written."""
    state_dict = {name: tensor.to(dtype) for name, tensor in state_dict.items()}
    for tied, source in model.all_tied_weights_keys.items():
        if tied in state_dict and source in state_dict:
            state_dict[tied] = state_dict[source]
    model.save_pretrained(output_dir, state_dict=state_dict)
    model.config.dtype = dtype
    model.config.save_pretrained(output_dir)


def exit_if_cut_short(trainer):
    """After max_nonfinite_steps non-finite steps in a row, or a preemption signal, the Trainer saved a
    checkpoint and returned early: the run exits there instead of saving the standalone model."""
    guard, preempted = trainer.guard, trainer.preemption_stop
    if not (guard.error or preempted.signal_name):
        return
    trainer.accelerator.wait_for_everyone()  # torchrun stops every rank as soon as one exits
    checkpoint = Path(trainer.args.output_dir) / f"checkpoint-{trainer.state.global_step}"
    if guard.error:
        raise SystemExit(f"train.py: {guard.error}; {checkpoint} holds the weights from before them")
    sys.stderr.write(f"train.py: {preempted.signal_name} received: stopped after step {trainer.state.global_step} "
                     f"with the complete checkpoint {checkpoint}; run the same command to resume\n")  # one write per rank
    raise SystemExit(preemption.PREEMPTED_EXIT_STATUS)


def train_and_save(trainer, processor, checkpoint, parts, data_args, probe_rows, save_dtype):
    """Every stage ends so: train (resuming from `checkpoint`), exit where the run was cut short, merge LoRA
    adapters (checked on a batch of `probe_rows`), save the standalone model in output_dir."""
    output_dir = trainer.args.output_dir
    trainer.train(resume_from_checkpoint=checkpoint and str(checkpoint))
    exit_if_cut_short(trainer)
    if parts.adapted:
        probe = probe_batch(processor, data_args, probe_rows, trainer.model.device)
        trainer.model = merge_adapters(trainer, probe, output_dir)
    save_standalone(trainer, processor, save_dtype, output_dir)


def card_and_demo(trainer, processor, summary, save_dtype, demo_image, run_args):
    """On the main process after the save: the model card, then the demo question; the trained model."""
    output_dir = trainer.args.output_dir
    print(f"model card: {model_card.write_card(output_dir, summary)}")
    model = standalone_model(trainer, save_dtype, output_dir)
    post_training_demo(model, processor, demo_image, run_args, trainer.args)
    return model


def standalone_model(trainer, dtype, output_dir):
    """The trained model for the demo and evaluation on the main process alone; a sharded one would
    wait for the other ranks, so under FSDP it is read back from output_dir."""
    if not trainer.is_fsdp_enabled:
        return trainer.model
    model = AutoModelForImageTextToText.from_pretrained(output_dir, dtype=dtype, use_kernels=False)
    return model.to(trainer.args.device)


def post_training_demo(model, processor, demo_image, run_args, training_args):
    """The demo question on the trained model (main process), logged to SwanLab when it reports there."""
    if demo_image is None:
        print("demo: skipped (demo_max_new_tokens: 0)" if run_args.demo_max_new_tokens == 0
              else "demo: skipped (no demo_image and no held-out row with an image)")
        return
    prompt, reply = inference.demo(model, processor, demo_image, run_args.demo_question, run_args.demo_max_new_tokens)
    if "swanlab" in training_args.report_to:
        log_demo_to_swanlab(demo_image, run_args.demo_question, prompt, reply)


# Keys whose value says where this machine keeps things, not how the model was trained.
LOCAL_KEYS = ("output_dir", "logging_dir", "run_name", "smolvlm_path", "qwen_path", "data_dir", "image_cache_dir",
              "bench_data_dir", "offline_demo_dir")


STAGE_3 = {"grpo": "stage 3: reinforcement learning from verifiable rewards (GRPO)",
           "dpo": "stage 3: preference tuning (DPO)"}


def stage_of(parts, run_stage="sft"):
    """The stage a run's trained parts and its `stage` key make it: the connector alone is stage 1, the text
    model too is stage 2; grpo and dpo are stage 3, whatever trains."""
    if run_stage in STAGE_3:
        how = "LoRA" if parts.adapted else "full"
        return f"{STAGE_3[run_stage]}, {how}: " + " and ".join(sorted(parts.rates))
    if "text" not in parts.rates:
        return "stage 1: connector alignment (" + " and ".join(sorted(parts.rates)) + ")"
    how = "LoRA on Qwen3" if "text" in parts.adapted else "Qwen3 in full"
    return f"stage 2: instruction tuning, {how}"


def hardware_of(training_args):
    device = training_args.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type.upper()
    return f"{training_args.world_size} × {name}"


def run_summary(trainer, parts, model_args, data_args, run_args, training_args, train_dataset, eval_dataset):
    """What the model card says about this run (model_card.RunSummary)."""
    donors, donors_from = model_card.donors_of(model_args.smolvlm_path, model_args.qwen_path, model_args.init_from)
    subsets = {source.name: source.subset for source in sources.parse_sources(data_args.train_data, data_args.data_dir)}
    demo = bool(run_args.offline_demo_dir)
    mix = [{"source": name, "rows": rows, "dataset": None if demo else model_card.hub_dataset_of(name, subsets.get(name))}
           for name, rows in loading.rows_per_source(train_dataset).items()]
    state = trainer.state
    runtime = next((entry["train_runtime"] for entry in reversed(state.log_history) if "train_runtime" in entry), None)
    rows_per_step = (training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
                     * training_args.world_size)
    recipe = model_card.differences((model_args, data_args, run_args, training_args), default_arguments(run_args.stage), LOCAL_KEYS)
    lora = {"r": model_args.lora_r, "alpha": model_args.lora_alpha, "parts": sorted(parts.adapted)} if parts.adapted else None
    return model_card.RunSummary(
        stage=stage_of(parts, run_args.stage), donors=donors, donors_from=donors_from, recipe=recipe, learning_rates=parts.rates,
        lora=lora, init_from=model_args.init_from, data_mix=mix, held_out_rows=len(eval_dataset),
        steps=state.global_step, samples_seen=state.global_step * rows_per_step, packed=data_args.packing,
        tokens_seen=int(state.num_input_tokens_seen) or None, epochs=state.epoch, hardware=hardware_of(training_args),
        train_seconds=runtime, offline_demo=demo,
    )
