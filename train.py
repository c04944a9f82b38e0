"""Train the grafted Qwen3-SmVL on the_cauldron and/or your own files, from a YAML config.

    python train.py cocoqa_train.yaml [--key value ...]          # flags override the YAML
    python train.py cocoqa_train.yaml --check_data true          # check the data and exit (no model load)
    accelerate launch train.py full_train.yaml                  # several GPUs

The keys are documented in train_config.py and the README. The run: parse and check the config,
load the data and the model, decide the output directory (resume, set aside, overwrite), train, save
a standalone model, ask the demo question, and optionally evaluate.
"""

import logging
import os
import sys

import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, Trainer

import check_data
import data
import infer
import stitch
from collate import Collator
from safe_resume import CheckpointError, plan_output_dir
from train_config import ConfigError, configure, seed_of_data

logger = logging.getLogger("train")


def training_dtype(training_args):
    """The dtype the backbone is loaded in: bf16 when training in bf16; otherwise float32, which
    fp16 autocast also computes from (Qwen3's activations overflow float16 weights)."""
    return torch.bfloat16 if training_args.bf16 else torch.float32


def source_dtype(model_args):
    """The dtype the source checkpoint is stored in (bf16 for the real ones)."""
    config = AutoConfig.from_pretrained(model_args.init_from or model_args.qwen_path)
    return config.dtype or torch.float32


def load_model(model_args, training_args):
    dtype = training_dtype(training_args)
    if model_args.init_from:
        model = AutoModelForImageTextToText.from_pretrained(model_args.init_from, dtype=dtype)
        processor = AutoProcessor.from_pretrained(model_args.init_from)
        stitch.verify_graft(model, processor)
        return model, processor
    return stitch.stitch(model_args.smolvlm_path, model_args.qwen_path, dtype=dtype, seed=training_args.seed)


def prepare_trainable(model, model_args):
    """Freeze per the switches; trainable weights of a half-precision model train in float32
    (the optimizer's small updates vanish in bf16), the frozen backbone stays in its dtype."""
    stitch.set_trainable(
        model,
        vision=not model_args.freeze_vision,
        connector=not model_args.freeze_connector,
        text=not model_args.freeze_text,
    )
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()


def demo_image_of(run_args, eval_dataset):
    """The demo's image: demo_image, else the first held-out row's; None to skip the demo."""
    if run_args.demo_image:
        return infer.load_image(run_args.demo_image)
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
    """A Trainer for which a batch of text-only rows is no error: with the text model frozen nothing
    trainable takes part in such a batch, so its loss has no graph; it is tied to the trainable weights
    with a zero factor (a zero gradient, and DDP ranks still agree on which weights got one)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss = result[0] if return_outputs else result
        if model.training and not loss.requires_grad:
            loss = loss + sum(p.sum() for p in model.parameters() if p.requires_grad) * 0
            result = (loss, *result[1:]) if return_outputs else loss
        return result


def build_trainer(model, processor, training_args, data_args, train_dataset, eval_dataset):
    return GraftTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset if len(eval_dataset) else None,
        data_collator=Collator.from_args(processor, data_args),
        processing_class=processor,
    )


def save_standalone(trainer, processor, dtype, output_dir):
    """Model + processor in output_dir, in `dtype`, loadable without this repo."""
    trainer.model.to(dtype)
    trainer.save_model(output_dir)
    if trainer.is_world_process_zero():
        processor.save_pretrained(output_dir)


def next_steps(output_dir, argv):
    config = argv[0] if argv and not argv[0].startswith("--") else "CONFIG.yaml"
    return (f"saved the trained model to {output_dir}; next:\n"
            f"  python infer.py --model {output_dir} --image PATH --question \"...\"\n"
            f"  python eval_vqa.py {config} --model {output_dir}")


def main(argv=None):
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:  # everything that can refuse the run, before anything is deleted or trained
        argv = sys.argv[1:] if argv is None else argv
        model_args, data_args, run_args, training_args = configure(argv)
        if run_args.check_data:
            raise SystemExit(check_data.run(model_args, data_args))
        output_plan = plan_output_dir(training_args.output_dir, run_args.overwrite_output_dir)
        with training_args.main_process_first(desc="loading data"):  # ranks > 0 reuse rank 0's cache
            train_dataset, eval_dataset, load_problems = data.load_data(data_args, seed_of_data(training_args))
        demo_image = demo_image_of(run_args, eval_dataset)
        save_dtype = source_dtype(model_args) if run_args.save_dtype == "auto" else getattr(torch, run_args.save_dtype)
        model, processor = load_model(model_args, training_args)
    except (ConfigError, CheckpointError, stitch.GraftError, data.DataError) as error:
        raise SystemExit(f"train.py: {error}")
    with training_args.main_process_first(desc="output_dir"):
        checkpoint = output_plan.apply(training_args.process_index == 0)
    if training_args.process_index == 0 and output_plan.describe():
        print("\n".join(output_plan.describe()))

    prepare_trainable(model, model_args)
    start_swanlab(training_args)
    trainer = build_trainer(model, processor, training_args, data_args, train_dataset, eval_dataset)
    if trainer.is_world_process_zero():
        print(stitch.trainable_summary(model))
    trainer.train(resume_from_checkpoint=checkpoint and str(checkpoint))
    save_standalone(trainer, processor, save_dtype, training_args.output_dir)
    print(f"rank {training_args.process_index}/{training_args.world_size}: {trainer.state.global_step} steps, "
          f"{trainer.state.num_input_tokens_seen} tokens seen, {trainer.data_collator.skipped} samples skipped")
    for source, counts in load_problems.items():
        print(f"rows of {source} skipped when loading: {counts}")
    if not trainer.is_world_process_zero():
        return
    if demo_image is None:
        print("demo: skipped (no demo_image and no held-out row with an image)")
    else:
        prompt, reply = infer.demo(trainer.model, processor, demo_image, run_args.demo_question, run_args.demo_max_new_tokens)
        if "swanlab" in training_args.report_to:
            log_demo_to_swanlab(demo_image, run_args.demo_question, prompt, reply)
    if run_args.run_evaluation:
        import eval_vqa

        settings = {"train_data": data_args.train_data, "eval_data": data_args.eval_data,
                    "data_seed": seed_of_data(training_args)}
        eval_vqa.evaluate_and_report(
            trainer.model, processor, eval_dataset, data_args, training_args.output_dir,
            max_new_tokens=run_args.eval_max_new_tokens, settings=settings,
        )
    print(next_steps(training_args.output_dir, argv))

if __name__ == "__main__":
    main()
