"""Stage grpo (`stage: grpo`, TRL's GRPOTrainer) as users run it: train.py on a YAML, the saved checkpoint
reloaded with plain transformers, bad rows refused before training, the rewards on their own."""

import json
import os
import sys

import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

import train
from conftest import REPO, free_port, launch_bounded
from swanlab_log import scalars, swanlab_dir  # noqa: F401  (the fixture)
from qwen3_smvl import inference, tiny
from qwen3_smvl.training import grpo, rewards, run
from qwen3_smvl.training.train_config import ConfigError, configure

THINK = "<think>\nthe picture is red\n</think>\n\n"


def grpo_config(tmp_path, init_from, data_dir, **overrides):
    config = {"stage": "grpo", "init_from": str(init_from), "data_dir": str(data_dir), "train_data": "cocoqa",
              "test_size": 4, "freeze_text": False, "seed": 0, "learning_rate": 1e-4, "num_generations": 4,
              "temperature": 0.5, "max_completion_length": 8, "per_device_train_batch_size": 4, "max_steps": 2,
              "logging_steps": 1, "gradient_checkpointing": False, "use_cpu": True, "save_strategy": "no",
              "output_dir": str(tmp_path / "out"), "demo_max_new_tokens": 0, **overrides}
    path = tmp_path / "grpo.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def colours_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("colours")
    tiny.write_synthetic_cauldron(root, subsets=("cocoqa",), rows_per_subset=24)
    return root


def test_correctness_reads_the_answer_after_the_think_block():
    completions = [[{"role": "assistant", "content": THINK + "Red."}], THINK + "blue", "<think>red", "Two dogs",
                   "3.14", "3.2"]
    answers = ["red", "red", "red", "2 dogs", "3.1416", "3.1416"]
    assert rewards.correctness(completions, answers, tolerance=0.01) == [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]


def test_format_wants_one_think_block_with_reasoning_then_an_answer():
    completions = [THINK + "red", "<think>\n\n</think>\n\nred", THINK, "red", THINK + "red</think>",
                   "<think>a</think><think>b</think>red"]
    assert rewards.format(completions) == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_reference_answer_leaves_out_the_reasoning_of_its_turn():
    """A row's answer may show its reasoning inline (`<think>...</think>` in `content`, which the chat template
    renders as its think block) or in `reasoning_content`: either way the reference is the answer after it."""
    question = {"role": "user", "content": "What colour is it?"}
    inline = {"messages": [question, {"role": "assistant", "content": "<think>\nIt looks red.\n</think>\n\nRed."}]}
    separate = {"messages": [question, {"role": "assistant", "content": "Red.", "reasoning_content": "It looks red."}]}
    for row in (inline, separate):
        assert grpo.prompt_of(row) == ([question], "Red.")
        assert rewards.correctness([THINK + "red"], [grpo.prompt_of(row)[1]]) == [1.0]
    with pytest.raises(ValueError, match="only its think block"):
        grpo.prompt_of({"messages": [question, {"role": "assistant", "content": "<think>\nhmm\n</think>\n\n"}]})


def test_user_reward_by_import_path_and_refusals(tmp_path, monkeypatch, colours_dir, stitched_dir):
    (tmp_path / "my_rewards.py").write_text("def short(completions, **columns):\n"
                                            "    return [1.0 if len(c[-1]['content']) < 20 else 0.0 for c in completions]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = grpo_config(tmp_path, stitched_dir, colours_dir, rewards=["correctness", "my_rewards:short"],
                         reward_weights=[1.0, 0.5])
    _, _, run_args, training_args, _ = configure([str(config)])
    assert run_args.stage == "grpo" and training_args.num_generations == 4
    assert training_args.chat_template_kwargs == {"enable_thinking": True}  # thinking on by default
    assert [f.__name__ for f in rewards.reward_functions(training_args.rewards, 0.0)] == ["correctness", "short"]
    with pytest.raises(ConfigError, match="my_rewards:nothing"):
        configure([str(config), "--rewards", "my_rewards:nothing", "--reward_weights", "1"])
    with pytest.raises(ConfigError, match="reward_weights has 1 value"):
        configure([str(config), "--reward_weights", "1"])
    with pytest.raises(ConfigError, match="unknown key 'max_completion_length'"):  # a GRPO key under stage sft
        configure([str(config), "--stage", "sft"])
    with pytest.raises(ConfigError, match=r"reads only enable_thinking; \['tools'\] would be ignored"):
        configure([str(config), "--chat_template_kwargs", '{"enable_thinking": true, "tools": []}'])


def test_bad_rows_are_named_before_training(tmp_path, stitched_dir):
    image = REPO / "examples" / "images" / "red.png"
    good = {"messages": [{"role": "user", "content": [{"type": "image", "image": str(image)}, {"type": "text", "text": "Colour?"}]},
                         {"role": "assistant", "content": "red"}]}
    no_answer = {"messages": [{"role": "user", "content": "What colour is it?"}]}
    missing_image = {"messages": [{"role": "user", "content": [{"type": "image", "image": str(tmp_path / "gone.png")}]},
                                  {"role": "assistant", "content": "red"}]}
    for name, bad, expected in (("no_answer", no_answer, "no assistant turn"), ("missing", missing_image, "missing image")):
        data = tmp_path / f"{name}.jsonl"
        data.write_text("".join(json.dumps(row) + "\n" for row in [good] * 6 + [bad]))
        config = grpo_config(tmp_path, stitched_dir, tmp_path, train_data=[str(data)], test_size=1)
        with pytest.raises(SystemExit, match=rf"{data}:7: {expected}"):
            train.main([str(config)])
    assert not (tmp_path / "out").exists()


def test_grpo_with_lora_saves_a_checkpoint_that_reloads_with_identical_logits(tmp_path, colours_dir, stitched_dir,
                                                                              monkeypatch, swanlab_dir):
    """LoRA merged at the end as in stage 2; the KL term on (beta > 0), so the adapter-free reference runs too;
    mean reward per function, completion length and KL logged to SwanLab (offline) at every step."""
    seen = {}
    standalone_model = run.standalone_model
    monkeypatch.setattr(run, "standalone_model", lambda trainer, *args: seen.setdefault(
        "model", standalone_model(seen.setdefault("trainer", trainer), *args)))
    config = grpo_config(tmp_path, stitched_dir, colours_dir, lora_r=4, beta=0.01, demo_max_new_tokens=4,
                         report_to="swanlab")
    train.main([str(config)])
    out = tmp_path / "out"
    assert (out / "adapter" / "adapter_config.json").is_file()
    keys = ["rewards/correctness/mean", "rewards/format/mean", "completions/mean_length", "kl"]
    history = [entry for entry in seen["trainer"].state.log_history if "kl" in entry]
    assert [entry["step"] for entry in history] == [1, 2]
    board = scalars(swanlab_dir)  # each logged step's reward, length and KL, as on the SwanLab board
    for key in keys:
        assert board[f"train/{key}"] == pytest.approx({entry["step"]: entry[key] for entry in history}), key
    card = ModelCard.load(out / "README.md")  # every stage's output says what it is
    assert "stage 3: reinforcement learning from verifiable rewards (GRPO), LoRA" in card.text
    assert "Qwen/Qwen3-0.6B" in card.data.base_model
    model = AutoModelForImageTextToText.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    question = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]}]
    prompt = processor.apply_chat_template(question, add_generation_prompt=True, enable_thinking=True)
    batch = processor(text=[prompt], images=[[Image.open(REPO / "examples" / "images" / "red.png")]], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, seen["model"].eval()(**batch).logits)


def test_video_and_image_rows_train_and_the_video_prompt_is_what_inference_builds(tmp_path, stitched_dir, monkeypatch):
    """A messages JSONL with a video row and an image row in one batch: two steps, a saved model; the prompt
    GRPO generates from for the video (frames sampled by the run's processor, thinking on) is token for
    token what qwen3_smvl.inference builds from the saved checkpoint for that video and question."""
    tiny.write_colour_video(tmp_path / "clip.mp4", [(255, 0, 0), (0, 0, 255)], fps=4, size=(32, 32), seconds_each=2)
    question = "What colour ends it?"
    video_row = {"messages": [{"role": "user", "content": [{"type": "video", "path": "clip.mp4"}, {"type": "text", "text": question}]},
                              {"role": "assistant", "content": "blue"}]}
    image_row = {"messages": [{"role": "user", "content": [{"type": "image", "image": str(REPO / "examples" / "images" / "red.png")},
                                                           {"type": "text", "text": "Colour?"}]},
                              {"role": "assistant", "content": "red"}]}
    (tmp_path / "train.jsonl").write_text(json.dumps(video_row) + "\n" + json.dumps(image_row) + "\n")
    (tmp_path / "eval.jsonl").write_text(json.dumps(image_row) + "\n")
    prompts = []
    tokenize = grpo.GraftGRPOTrainer._tokenize_prompts

    def recording(self, batch):
        encoded = tokenize(self, batch)
        prompts.extend(encoded[0])
        return encoded

    monkeypatch.setattr(grpo.GraftGRPOTrainer, "_tokenize_prompts", recording)
    frames_in_loss = []  # per micro-batch row, the frames or tiles the loss's forward gets
    compute_loss = grpo.GraftGRPOTrainer.compute_loss
    monkeypatch.setattr(grpo.GraftGRPOTrainer, "compute_loss", lambda self, model, inputs, *args, **kwargs: (
        frames_in_loss.extend((inputs["pixel_values"].flatten(2) != 0).any(-1).sum(-1).tolist())
        or compute_loss(self, model, inputs, *args, **kwargs)))
    config = grpo_config(tmp_path, stitched_dir, tmp_path, train_data=[str(tmp_path / "train.jsonl")],
                         eval_data=[str(tmp_path / "eval.jsonl")], test_size=0, per_device_train_batch_size=4,
                         num_generations=2, video_max_frames=3)
    with pytest.raises(SystemExit, match="use_vllm: true reads images only"):  # TRL hands vLLM images alone
        train.main([str(config), "--use_vllm", "true", "--vllm_model_impl", "transformers"])
    assert not (tmp_path / "out").exists()
    train.main([str(config)])
    _, processor = inference.load_model(tmp_path / "out", device="cpu")
    messages = inference.build_messages(question, True, kind="video")
    video = inference.load_video(tmp_path / "clip.mp4", processor)
    expected = inference.model_inputs(processor, messages, [], think=True, videos=[video])["input_ids"][0].tolist()
    assert len(video[0]) == 3 and processor.video_token not in processor.decode(expected)
    assert expected in prompts
    assert 3 in frames_in_loss and 1 in frames_in_loss  # the video's 3 frames; the image, one tile (no splitting)
    assert json.loads((tmp_path / "out" / "run_summary.json").read_text())["steps"] == 2


def recipe_overrides(tmp_path, init_from, **more):
    """grpo_train.yaml's command-line overrides in the tests: model, data and output paths, sizes, the CPU."""
    settings = {"init_from": init_from, "test_size": 1, "max_steps": 2, "per_device_train_batch_size": 2,
                "num_generations": 2, "gradient_accumulation_steps": 1, "max_completion_length": 8,
                "use_cpu": "true", "report_to": "none", "save_strategy": "no", "demo_max_new_tokens": 2,
                "output_dir": tmp_path / "out", **more}
    return [item for key, value in settings.items() for item in (f"--{key}", str(value))]


def test_shipped_recipe_in_one_process_on_its_two_subsets(tmp_path, stitched_dir, monkeypatch):
    """`python train.py grpo_train.yaml` as written (clevr and cocoqa from data_dir, LoRA, both rewards,
    thinking on), sizes and paths overridden: it trains and saves a standalone model."""
    tiny.write_synthetic_cauldron(tmp_path / "cauldron", subsets=("clevr", "cocoqa"), rows_per_subset=8)
    monkeypatch.chdir(tmp_path)
    train.main([str(REPO / "grpo_train.yaml"), *recipe_overrides(tmp_path, stitched_dir, data_dir=tmp_path / "cauldron")])
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert {mix["source"] for mix in summary["data_mix"]} == {"clevr", "cocoqa"}
    assert summary["steps"] == 2 and summary["lora"]["r"] == 16
    assert summary["stage"].startswith("stage 3: reinforcement learning from verifiable rewards (GRPO)")
    assert AutoModelForImageTextToText.from_pretrained(tmp_path / "out").config.model_type == "smolvlm"


def test_shipped_recipe_on_two_ddp_ranks_with_a_text_only_prompt_on_one(tmp_path, stitched_dir):
    """grpo_train.yaml under `accelerate launch` (its comment's launch for several GPUs), the shipped DDP config on
    two CPU ranks: each step one rank's prompt has an image and the other's none (GRPO gives each rank one
    prompt's group here); the connector trains (connector_lr), so only the image rank reaches it; both finish."""
    image = REPO / "examples" / "images" / "red.png"
    with_image = {"messages": [{"role": "user", "content": [{"type": "image", "image": str(image)}, {"type": "text", "text": "Colour?"}]},
                               {"role": "assistant", "content": "red"}]}
    text_only = {"messages": [{"role": "user", "content": "Say red."}, {"role": "assistant", "content": "red"}]}
    (tmp_path / "train.jsonl").write_text(json.dumps(with_image) + "\n" + json.dumps(text_only) + "\n")
    (tmp_path / "eval.jsonl").write_text(json.dumps(with_image) + "\n")
    args = recipe_overrides(tmp_path, stitched_dir, train_data=f"{{path: {tmp_path / 'train.jsonl'}}}",
                            eval_data=f"{{path: {tmp_path / 'eval.jsonl'}}}", per_device_train_batch_size=1)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "accelerate_configs" / "ddp.yaml"),
               "--num_processes", "2", "--main_process_port", str(free_port()), str(REPO / "train.py"),
               str(REPO / "grpo_train.yaml"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    stdout, _ = launch_bounded(command, "grpo_train.yaml under DDP on two CPU ranks", tmp_path, env)
    for rank in (0, 1):
        assert f"rank {rank}/2: 2 steps" in stdout
    assert (tmp_path / "out" / "model.safetensors").is_file()


@pytest.mark.parametrize("recipe", ["grpo_train.yaml", "demo_grpo.yaml"])
def test_shipped_grpo_recipes_pass_the_config_checks(recipe, stitched_dir, colours_dir):
    """Parsed and checked as written, with only the model and data pointed at tiny local copies."""
    _, data_args, run_args, training_args, parts = configure(
        [str(REPO / recipe), "--init_from", str(stitched_dir), "--data_dir", str(colours_dir), "--use_cpu", "true",
         "--offline_demo_dir", ""])
    thinking = recipe == "grpo_train.yaml"  # the demo's tiny graft never reasons: its demo trains answers only
    assert run_args.stage == "grpo" and training_args.chat_template_kwargs == {"enable_thinking": thinking}
    assert len(training_args.reward_weights or training_args.rewards) == len(training_args.rewards)
