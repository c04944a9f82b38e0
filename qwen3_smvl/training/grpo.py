"""Stage `grpo`: reinforcement learning from verifiable rewards on TRL's GRPOTrainer (`stage: grpo` in a
training YAML; `python train.py grpo_train.yaml`).

Each row's conversation up to its last assistant turn is the prompt (its images or video where they stand) and
that turn's text the reference answer the rewards (qwen3_smvl/training/rewards.py) check completions
against. The model is what every stage starts from (`init_from`, or a fresh graft), with the project's
freezing, per-part learning rates and LoRA (qwen3_smvl/training/trainable.py); the Trainer carries the
non-finite guard and the preemption stop as train.py's SFT path does; the run ends with a standalone
checkpoint (adapters merged and verified, as in stage 2).

The keys are TRL's `GRPOConfig` (num_generations, max_completion_length, temperature, beta,
num_iterations, reward_weights, loss_type, use_vllm, vllm_mode, vllm_model_impl, chat_template_kwargs,
...) plus the reward keys of `grpo_config.GRPOArguments`. Thinking is on by default (`chat_template_kwargs:
{enable_thinking: true}`: the prompt ends at the assistant's header, so the model opens its think block
itself, as it does at inference with --think, instead of the prompt closing it empty).
"""

from functools import partial

import torch

from trl import GRPOTrainer
from accelerate.utils import gather_object
from transformers import Trainer

from qwen3_smvl import inference
from qwen3_smvl.data import media, row_shape
from qwen3_smvl.data.collate import (Collator, check_media_mix, content_text, conversation, count_images, count_videos,
                                     pad_tiles)
from qwen3_smvl.training import ConfigError, preemption, rewards, step_guard


def prompt_of(row, first_turn_only=False):
    """(prompt messages, reference answer) of a row in the project's shape: the last assistant turn (the
    first with first_turn_only) and what comes before it; a ValueError says why a row has none. A turn that
    shows its reasoning inline (`<think>...</think>` in its content, which the chat template renders as
    the think block, as it does `reasoning_content`) answers with the text after it."""
    messages, _ = conversation(row)
    answers = [index for index, message in enumerate(messages) if message["role"] == "assistant"]
    if not answers:
        raise ValueError("no assistant turn, so no reference answer")
    last = answers[0] if first_turn_only else answers[-1]
    reference = rewards.final_answer(content_text(messages[last]["content"]))
    if not reference:
        raise ValueError("the last assistant turn (the reference answer) is empty, or holds only its think block")
    check_media_mix(count_images(messages[:last]), count_videos(messages[:last]))
    return messages[:last], reference


def prompt_rows(dataset, name, data_args):
    """The rows as GRPOTrainer reads them: `prompt` (the conversation before the last assistant turn),
    `answer` (that turn), `images` (decoded when read), `origin`, `source`. Rows without a usable
    reference are refused with their file:line, or dropped and counted under on_bad_sample: skip."""
    keep, bad = [], []
    for index, row in enumerate(dataset.select_columns(["messages", "videos", "origin"])):
        try:
            prompt_of(row, data_args.first_turn_only)
            keep.append(index)
        except ValueError as cause:
            bad.append(f"{row['origin']}: {cause}")
    if bad and data_args.on_bad_sample == "raise":
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise row_shape.DataError(f"{name}: {len(bad)} row(s) unusable for GRPO (on_bad_sample: skip drops them):\n  "
                        + "\n  ".join(bad[:10]) + more)
    if bad:
        print(f"{name}: skipping {len(bad)} row(s) unusable for GRPO, e.g. {bad[0]}")
    rows = dataset.select(keep) if bad else dataset
    return rows.with_transform(partial(as_prompts, first_turn_only=data_args.first_turn_only)), len(bad)


def as_prompts(batch, first_turn_only):
    """with_transform's view: decoded when a row is read, so images are never held all at once. Each image
    part carries its image and each video part its (undecoded) video: GraftGRPOTrainer encodes the prompts
    itself, and TRL's own image path (an `images` column) stays unused."""
    prompts = [prompt_of({"messages": messages}, first_turn_only) for messages in batch["messages"]]
    media_of = zip([[Collator.decode_image(image) for image in images] for images in batch["images"]], batch["videos"])
    return {"prompt": [with_media(prompt, images, videos) for (prompt, _), (images, videos) in zip(prompts, media_of)],
            "answer": [answer for _, answer in prompts], "origin": batch["origin"], "source": batch["source"]}


def with_media(messages, images, videos):
    """The messages with each image part holding its image and each video part its video, in order."""
    held = {"image": iter(images), "video": iter(videos or [])}
    return [{**message, "content": [{**part, part["type"]: next(held[part["type"]])} if part.get("type") in held
                                    else part for part in message["content"]]}
            if isinstance(message["content"], list) else message for message in messages]


def parts_of(messages, kind):
    """What the `kind` ("image" or "video") parts of the messages hold, in order."""
    return [part[kind] for message in messages if isinstance(message["content"], list)
            for part in message["content"] if part.get("type") == kind]


def encode_prompt(processor, messages, think):
    """A prompt's tensors as inference builds them (qwen3_smvl.inference.model_inputs): the same chat
    template, image fitting and video frames (sampled by the saved processor's settings, read with PyAV)."""
    images = parts_of(messages, "image")
    videos = [media.decode_video(video, processor.video_processor) for video in parts_of(messages, "video")]
    bare = [{**message, "content": [{"type": part["type"]} if part.get("type") in ("image", "video") else part
                                    for part in message["content"]]} if isinstance(message["content"], list)
            else message for message in messages]
    return inference.model_inputs(processor, bare, images, think, videos=videos)


def pad_media(encodings):
    """The rows' pixel_values and pixel_attention_mask in one (batch, frames or tiles, ...) tensor each, as
    the collator pads a batch; None when no row has an image or a video."""
    rows = [list(encoding["pixel_values"][0]) if "pixel_values" in encoding else [] for encoding in encodings]
    masks = [list(encoding["pixel_attention_mask"][0].bool()) if "pixel_values" in encoding else []
             for encoding in encodings]
    return pad_tiles(rows, masks) or None


class GraftGRPOTrainer(GRPOTrainer):
    """GRPOTrainer with the project's non-finite guard and preemption stop (run.exit_if_cut_short reads them)."""

    def __init__(self, *args, guard, preemption_stop, **kwargs):
        super().__init__(*args, **kwargs)
        self.guard, self.preemption_stop = guard, preemption_stop
        self.prompt_media = None  # the generation batch's pixel tensors, for the forwards TRL runs on it
        self.add_callback(guard)
        self.add_callback(preemption_stop)

    def _tokenize_prompts(self, prompts):
        """The prompts encoded as inference encodes them (encode_prompt), videos included: TRL's own path
        hands a video part to the processor, which decodes it with torchcodec and renders it with SmolVLM's
        original chat template, and builds the loss's pixels from images alone. Under use_vllm, TRL's own
        path, which hands vLLM the images (videos are refused there before training)."""
        if self.use_vllm:
            return super()._tokenize_prompts(prompts)
        think = bool(self.chat_template_kwargs.get("enable_thinking"))
        encodings = [encode_prompt(self.processing_class, prompt, think) for prompt in prompts]
        fields = {key: value.to(self.accelerator.device) for key, value in (pad_media(encodings) or {}).items()}
        self.prompt_media = fields or None
        return [encoding["input_ids"][0].tolist() for encoding in encodings], None, fields

    def _get_per_token_logps_and_entropies(self, model, *args, pixel_values=None, pixel_attention_mask=None,
                                           num_images=None, **kwargs):
        # TRL's forwards on a fresh generation batch (old and reference log-probs) get no pixels, since its
        # `images` are None: they are this batch's, one pixel_values entry per row.
        if pixel_values is None and self.prompt_media is not None:
            pixel_values, pixel_attention_mask = self.prompt_media["pixel_values"], self.prompt_media["pixel_attention_mask"]
            num_images = [1] * pixel_values.shape[0]
        return super()._get_per_token_logps_and_entropies(model, *args, pixel_values=pixel_values,
                                                          pixel_attention_mask=pixel_attention_mask,
                                                          num_images=num_images, **kwargs)

    def _generate_and_score_completions(self, inputs):
        # Generation runs on the unwrapped model, outside the autocast accelerate puts around training forwards;
        # under bf16 the trained parts are float32 (trainable.upcast_trainable) beside bf16 frozen ones.
        with self.accelerator.autocast():
            output = super()._generate_and_score_completions(inputs)
        media_fields = {}
        if self.prompt_media is not None:  # the loss's forward reads them from the micro-batch, split per row
            media_fields = {**self.prompt_media, "num_images": [1] * len(inputs)}
        self.prompt_media = None
        if self.log_multimodal and not self.use_vllm:  # TRL logs the images it extracted itself, and here it extracts none
            self._logs["images"].extend(gather_object([parts_of(row["prompt"], "image") or None for row in inputs]))
        # Each completion's row (one per input), so that a non-finite step names its rows: TRL shuffles and
        # splits list values into micro-batches along with the tensors.
        return {**output, **media_fields, step_guard.ORIGINS: [row.get("origin") or "?" for row in inputs]}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if model.training:  # `inputs` is TRL's buffered micro-batch, reused with num_iterations > 1: read, not popped
            self.guard.record(loss, inputs.get(step_guard.ORIGINS, []))
        return loss


def build_trainer(model, processor, training_args, run_args, train_dataset, eval_dataset, optimizer_groups):
    trainer = GraftGRPOTrainer(
        model=model, args=training_args, processing_class=processor,
        reward_funcs=rewards.reward_functions(training_args.rewards, training_args.answer_tolerance),
        train_dataset=train_dataset, eval_dataset=eval_dataset if eval_dataset is not None and len(eval_dataset) else None,
        guard=step_guard.NonFiniteGuard(run_args.max_nonfinite_steps),
        preemption_stop=preemption.Preemption(run_args.preempt_signals),
    )
    # Our per-part groups under the optimizer `optim` names; the Trainer builds it at train(), so resume works.
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args, model)
    trainer.optimizer_cls_and_kwargs = (optimizer_cls, {**optimizer_kwargs, "params": optimizer_groups})
    return trainer


def describe_rewards(training_args):
    weights = training_args.reward_weights or [1.0] * len(training_args.rewards)
    return "rewards: " + ", ".join(f"{name} x{weight:g}" for name, weight in zip(training_args.rewards, weights))


def train(argv, model_args, data_args, run_args, training_args, parts):
    """train.py's run for stage grpo, in the same order: refusals first, then train, merge, save, demo; True
    on the process that saved the model."""
    from qwen3_smvl import graft
    from qwen3_smvl.data import loading
    from qwen3_smvl.training import run, train_processor, trainable
    from qwen3_smvl.training.safe_resume import CheckpointError, plan_output_dir
    from qwen3_smvl.training.train_config import seed_of_data

    try:
        output_plan = plan_output_dir(training_args.output_dir, run_args.overwrite_output_dir)
        with training_args.main_process_first(desc="loading data"):
            loaded = loading.load_data(data_args, seed_of_data(training_args))
        train_rows, held_out, load_problems = loaded
        if training_args.use_vllm and any(row_shape.has_videos(rows) for rows in (train_rows, held_out)):
            raise ConfigError("use_vllm: true reads images only (TRL hands vLLM a prompt's images, not its video); "
                              "train the video rows with generation through transformers (use_vllm: false)")
        train_dataset, skipped = prompt_rows(train_rows, "train_data", data_args)
        eval_dataset, _ = prompt_rows(held_out, "held-out rows", data_args)
        if training_args.process_index == 0:
            print(f"{loading.summary_line(loaded, 0)}; {skipped} without a reference answer skipped")
        demo_image = run.demo_image_of(run_args, held_out)
        save_dtype = run.save_dtype_of(model_args, run_args)
        model, processor = run.load_model(model_args, training_args)
        train_processor.check_video_template(processor, model_args, (train_rows, held_out))
        train_processor.set_image_resolution(processor, data_args)
        train_processor.set_video_sampling(processor, data_args)
        model = trainable.prepare_trainable(model, model_args, parts, training_args.seed)
        optimizer_groups = trainable.optimizer_groups(model, parts.rates, training_args.weight_decay)
        train_processor.check_saves(processor, model.config, training_args.output_dir)
        run.start_swanlab(training_args)
        trainer = build_trainer(model, processor, training_args, run_args, train_dataset, eval_dataset, optimizer_groups)
    except (ConfigError, CheckpointError, graft.GraftError, row_shape.DataError) as error:
        raise SystemExit(f"train.py: {error}")
    with training_args.main_process_first(desc="output_dir"):
        checkpoint = output_plan.apply(training_args.process_index == 0)
    if trainer.is_world_process_zero():
        print("\n".join([*output_plan.describe(), graft.trainable_summary(model), *trainable.describe(optimizer_groups),
                         describe_rewards(training_args)]))
    run.train_and_save(trainer, processor, checkpoint, parts, data_args, (held_out, train_rows), save_dtype)
    print(f"rank {training_args.process_index}/{training_args.world_size}: {trainer.state.global_step} steps, "
          f"{trainer.guard.skipped} non-finite steps skipped")
    for source, counts in load_problems.items():
        print(f"rows of {source} skipped when loading: {counts}")
    if not trainer.is_world_process_zero():
        return False
    summary = run.run_summary(trainer, parts, model_args, data_args, run_args, training_args, train_rows, held_out)
    run.card_and_demo(trainer, processor, summary, save_dtype, demo_image, run_args)
    return True
