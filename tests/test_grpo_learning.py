"""Stage grpo learns, as users run it: from a tiny graft that train.py's SFT left half trained on a colour
task, train.py with `stage: grpo` raises its correctness reward (logged in trainer_state.json) and its
greedy accuracy on held-out questions (scored by eval_vqa.py) beyond where it started, and beyond the same
GRPO run on all-gray images, whose prompts carry no colour: the gain comes from seeing. With thinking on
(GRPO's default), from a graft whose SFT data reasoned in one answer of four, the default rewards raise the
format reward, and the same run with the format reward's weight at 0 does not."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image

import eval_vqa
import train

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220)}
GRAY = (128, 128, 128)
QUESTION = "What colour is the picture?"
SFT_STEPS = 30  # the graft then names two of the three colours (67% held out), the third misspelt
# Thinking off (test_grpo_format_reward_rises_with_thinking_on thinks): answers of 4-7 tokens, so 30 steps take seconds on a CPU.
GRPO = dict(learning_rate=1e-3, temperature=0.7, max_steps=30, per_device_train_batch_size=16, seed=0,
            num_generations=4, max_completion_length=8, chat_template_kwargs={"enable_thinking": False})
REASONING = "Let me look."  # the think block of one SFT answer in four
THINKING_SFT_STEPS = 100  # the graft then opens its think block always and reasons in it in 0-2 of GRPO's first 16 samples
# GRPO's defaults otherwise: thinking on, rewards [correctness, format] weighted 1 and 1, temperature 1.0. Room for
# `<think>\nLet me look.\n</think>\n\ngreen` (27 tokens of the tiny demo's byte-level tokenizer).
THINKING_GRPO = dict(learning_rate=1e-3, max_steps=30, per_device_train_batch_size=16, seed=0, num_generations=4,
                     max_completion_length=32, logging_steps=5, logging_first_step=True)


def colour_file(folder, name, rows, rng, gray=False, reasoning_every=0):
    """A messages JSONL of colour questions about noisy solid-colour images (all gray with `gray`), each
    colour equally often; with `reasoning_every` one answer in that many shows its reasoning (`reasoning_content`,
    which the chat template renders as Qwen3's think block) and the others none (the template's empty block)."""
    (folder / f"{name}_images").mkdir()
    lines = []
    for index in range(rows):
        colour = list(COLOURS)[index % len(COLOURS)]
        rgb = GRAY if gray else COLOURS[colour]
        pixels = np.clip(np.array(rgb) + rng.integers(-20, 21, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{name}_images" / f"{index}.png")
        question = [{"type": "image", "image": f"{name}_images/{index}.png"}, {"type": "text", "text": QUESTION}]
        answer = {"role": "assistant", "content": colour}
        if reasoning_every and index % reasoning_every == 0:
            answer["reasoning_content"] = REASONING
        lines.append(json.dumps({"messages": [{"role": "user", "content": question}, answer]}))
    (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return folder / f"{name}.jsonl"


def write_config(path, **config):
    path.write_text(yaml.safe_dump({"use_cpu": True, "report_to": "none", "freeze_text": False,
                                    "text_eval_file": None, "demo_max_new_tokens": 0, **config}))
    return str(path)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The offline demo's tiny checkpoints (a small vocabulary, a cheap LM head), built once for both SFT runs."""
    return str(tmp_path_factory.mktemp("grpo_demo") / "demo")


@pytest.fixture(scope="module")
def half_trained(tmp_path_factory, demo):
    """(root, config for eval_vqa.py, the graft train.py's SFT left half trained) shared by both GRPO runs."""
    root = tmp_path_factory.mktemp("grpo_learning")
    rng = np.random.default_rng(0)
    files = {name: colour_file(root, name, rows, rng, gray=name == "gray")
             for name, rows in (("train", 96), ("gray", 96), ("held_out", 15))}
    sft = write_config(root / "sft.yaml", offline_demo_dir=demo, train_data=[str(files["train"])],
                       eval_data=[str(files["held_out"])], assistant_only_loss=True, max_steps=SFT_STEPS,
                       per_device_train_batch_size=8, learning_rate=1e-2, lr_scheduler_type="constant",
                       save_strategy="no", seed=0, output_dir=str(root / "sft"))
    train.main([sft])
    return root, sft


@pytest.fixture(scope="module")
def sometimes_thinks(tmp_path_factory, demo):
    """The folder holding `train.jsonl` and the graft (`sft`) train.py's SFT trained on it, with its default
    loss on the whole conversation: one answer in four reasons, the others teach Qwen3's empty think block."""
    root = tmp_path_factory.mktemp("grpo_format")
    data = colour_file(root, "train", 96, np.random.default_rng(0), reasoning_every=4)
    sft = write_config(root / "sft.yaml", offline_demo_dir=demo, train_data=[str(data)], test_size=0,
                       max_steps=THINKING_SFT_STEPS, per_device_train_batch_size=8, learning_rate=1e-2,
                       lr_scheduler_type="constant", save_strategy="no", seed=0, output_dir=str(root / "sft"))
    train.main([sft])
    return root


def logged(out, steps, key):
    """`key`'s values in the log_history of the run's last checkpoint, in step order."""
    state = json.loads((out / f"checkpoint-{steps}" / "trainer_state.json").read_text())
    return [entry[key] for entry in state["log_history"] if key in entry]


def accuracy(config, model):
    eval_vqa.main([config, "--model", str(model), "--max-new-tokens", "8"])
    return json.loads((model / "eval_results.json").read_text())["summary"]["overall"]["accuracy"]


def grpo(root, sft, data, name):
    """train.py stage grpo on `data`; -> (its output dir, logged correctness means)."""
    out = root / name
    config = write_config(root / f"{name}.yaml", stage="grpo", init_from=str(root / "sft"), data_dir=str(root),
                          train_data=[str(data)], test_size=0, rewards=["correctness"], logging_steps=5, save_strategy="steps", save_steps=GRPO["max_steps"], output_dir=str(out),
                          gradient_checkpointing=False, **GRPO)
    train.main([config])
    return out, logged(out, GRPO["max_steps"], "rewards/correctness/mean")


def grpo_thinking(root, name, **keys):
    """train.py stage grpo from the sometimes-thinking graft, GRPO's defaults but THINKING_GRPO and `keys`;
    -> the logged format reward means (step 1, then every 5 steps)."""
    out = root / name
    config = write_config(root / f"{name}.yaml", stage="grpo", init_from=str(root / "sft"), data_dir=str(root),
                          train_data=[str(root / "train.jsonl")], test_size=0, save_strategy="steps",
                          save_steps=THINKING_GRPO["max_steps"], output_dir=str(out), gradient_checkpointing=False,
                          **THINKING_GRPO, **keys)
    train.main([config])
    return logged(out, THINKING_GRPO["max_steps"], "rewards/format/mean")


def test_grpo_raises_correctness_from_seeing(half_trained):
    """Measured over GRPO seeds 0-4: held-out accuracy 67% -> 100% from seeing every time, 33% or 67% after the
    gray run; the logged reward in the last ten steps 0.57-0.86 from seeing, 0.19-0.45 from gray images."""
    root, sft = half_trained
    start = accuracy(sft, root / "sft")
    seeing, seeing_rewards = grpo(root, sft, root / "train.jsonl", "seeing")
    gray, gray_rewards = grpo(root, sft, root / "gray.jsonl", "gray")
    after, after_gray = accuracy(sft, seeing), accuracy(sft, gray)
    # A colour's held-out images differ only by noise, so accuracy moves by thirds: one more colour named.
    assert 0.3 <= start <= 0.7 and after >= start + 0.3 and after >= after_gray + 0.3, (start, after, after_gray)
    late = lambda rewards: sum(rewards[-2:]) / 2  # the last ten steps' completions
    assert late(seeing_rewards) >= late(gray_rewards) + 0.25, (seeing_rewards, gray_rewards)


def test_grpo_format_reward_rises_with_thinking_on(sometimes_thinks):
    """Measured over GRPO seeds 0-4: the format reward at step 1 0.0-0.125; over the last ten steps 0.90-0.95
    with the default rewards, 0.00-0.02 with format's weight at 0 (correctness alone favours the empty think
    block, after which this graft answers best)."""
    rewarded = grpo_thinking(sometimes_thinks, "rewarded")
    unrewarded = grpo_thinking(sometimes_thinks, "unrewarded", reward_weights=[1.0, 0.0])
    late = lambda means: sum(means[-2:]) / 2  # the last ten steps' completions
    assert max(rewarded[0], unrewarded[0]) <= 0.25, (rewarded, unrewarded)  # step 1: the graft rarely reasons
    assert late(rewarded) >= 0.8 and late(rewarded) >= rewarded[0] + 0.5, rewarded
    assert late(unrewarded) <= 0.2, unrewarded
