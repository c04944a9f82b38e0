"""Train the grafted Qwen3-SmVL on the_cauldron and/or your own files, from a YAML config.

    python train.py cocoqa_train.yaml [--key value ...]          # flags override the YAML
    python train.py cocoqa_train.yaml --check_data true          # check the data and exit (no model load)
    python train.py dpo_train.yaml                              # stage: dpo, preference pairs (TRL's DPOTrainer)
    accelerate launch train.py full_train.yaml                  # several GPUs

The keys are documented in qwen3_smvl/training/train_config.py and the README. The run: parse and check the config,
load the data and the model, decide the output directory (resume, set aside, overwrite), train, save
a standalone model, ask the demo question, and optionally evaluate.
"""

import logging
import sys
import time

logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)  # why: qwen3_smvl/training/train_config.py
from qwen3_smvl import graft, model_card  # noqa: E402
from qwen3_smvl.data import check_data, loading  # noqa: E402
from qwen3_smvl.evaluation import bench_callback, vqa  # noqa: E402
from qwen3_smvl.training import dpo, run, train_processor, trainable  # noqa: E402
from qwen3_smvl.training.safe_resume import CheckpointError, plan_output_dir  # noqa: E402
from qwen3_smvl.training.train_config import ConfigError, configure, seed_of_data  # noqa: E402


def next_steps(output_dir, argv):
    config = argv[0] if argv and not argv[0].startswith("--") else "CONFIG.yaml"
    return (f"saved the trained model to {output_dir}; next:\n"
            f"  python infer.py --model {output_dir} --image PATH --question \"...\"\n"
            f"  python web_demo.py --model {output_dir}    # a chat page on http://127.0.0.1:7860\n"
            f"  python eval_vqa.py {config} --model {output_dir}")


def main(argv=None):
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:  # everything that can refuse the run, before anything is deleted or trained
        argv = sys.argv[1:] if argv is None else argv
        model_args, data_args, run_args, training_args, parts = configure(argv)  # parts: what trains
        if run_args.check_data:
            raise SystemExit(check_data.run(model_args, data_args, preference=run_args.stage == "dpo"))
        if run_args.stage == "grpo":  # TRL's GRPOTrainer: qwen3_smvl/training/grpo.py holds that run
            from qwen3_smvl.training import grpo

            if grpo.train(argv, model_args, data_args, run_args, training_args, parts):  # rank 0, model saved
                print(next_steps(training_args.output_dir, argv))
            return
        output_plan = plan_output_dir(training_args.output_dir, run_args.overwrite_output_dir)
        started = time.perf_counter()
        with training_args.main_process_first(desc="loading data"):  # ranks > 0 reuse rank 0's cache
            loaded = loading.load_data(data_args, seed_of_data(training_args))
            if run_args.stage == "dpo":
                loaded = dpo.preference_rows(loaded, data_args.on_bad_sample)
        if training_args.process_index == 0:
            print(loading.summary_line(loaded, time.perf_counter() - started))
        train_dataset, eval_dataset, load_problems = loaded
        demo_image = run.demo_image_of(run_args, eval_dataset)
        save_dtype = run.save_dtype_of(model_args, run_args)
        model, processor = run.load_model(model_args, training_args)
        train_processor.check_video_template(processor, model_args, (train_dataset, eval_dataset))
        train_processor.set_image_resolution(processor, data_args)
        train_processor.set_video_sampling(processor, data_args)
        if run_args.stage == "dpo":
            collator = dpo.PreferenceCollator(processor, training_args.max_length)
        else:
            collator = run.build_collator(processor, data_args, model)
            train_dataset = run.with_token_counts(train_dataset, collator, data_args, training_args)
        model = trainable.prepare_trainable(model, model_args, parts, training_args.seed)
        optimizer_groups = trainable.optimizer_groups(model, parts.rates, training_args.weight_decay)
        # last of the model's checks: it makes output_dir, which a later refusal would leave behind
        train_processor.check_saves(processor, model.config, training_args.output_dir)
        run.start_swanlab(training_args)
        if run_args.stage == "dpo":
            trainer = dpo.build_trainer(model, dpo.load_reference(model_args, training_args), processor, collator,
                                        training_args, run_args, train_dataset, eval_dataset, optimizer_groups)
        else:
            trainer = run.build_trainer(model, processor, collator, training_args, data_args, run_args, train_dataset,
                                        eval_dataset, optimizer_groups)
        run.check_fsdp_took_effect(trainer)
        bench_callback.attach(trainer, run_args)
    except (ConfigError, CheckpointError, graft.GraftError, loading.DataError) as error:
        raise SystemExit(f"train.py: {error}")
    with training_args.main_process_first(desc="output_dir"):
        checkpoint = output_plan.apply(training_args.process_index == 0)
    if training_args.process_index == 0 and output_plan.describe():
        print("\n".join(output_plan.describe()))
    if trainer.is_world_process_zero():
        print("\n".join([graft.trainable_summary(model), *trainable.describe(optimizer_groups)]))
    run.train_and_save(trainer, processor, checkpoint, parts, data_args, (eval_dataset, train_dataset), save_dtype)
    print(f"rank {training_args.process_index}/{training_args.world_size}: {trainer.state.global_step} steps, "
          f"{trainer.state.num_input_tokens_seen} tokens seen, {collator.skipped} samples skipped, "
          f"{trainer.guard.skipped} non-finite steps skipped")
    for source, counts in load_problems.items():
        print(f"rows of {source} skipped when loading: {counts}")
    if not trainer.is_world_process_zero():
        return
    summary = run.run_summary(trainer, parts, model_args, data_args, run_args, training_args, train_dataset, eval_dataset)
    model = run.card_and_demo(trainer, processor, summary, save_dtype, demo_image, run_args)
    if run_args.run_evaluation:
        settings = {"train_data": data_args.train_data, "eval_data": data_args.eval_data,
                    "data_seed": seed_of_data(training_args)}
        vqa.evaluate_and_report(
            model, processor, eval_dataset, data_args, training_args.output_dir,
            max_new_tokens=run_args.eval_max_new_tokens, settings=settings,
        )
        model_card.refresh_card(training_args.output_dir)  # with the held-out results
    print(next_steps(training_args.output_dir, argv))


if __name__ == "__main__":
    main()
