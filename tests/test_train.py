"""train.py end to end on tiny checkpoints and a synthetic the_cauldron, on the CPU."""

import json
import math
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

from qwen3_smvl import graft, inference, tiny
from qwen3_smvl.data import loading, the_cauldron
from qwen3_smvl.data.collate import Collator
from qwen3_smvl.training import train_config
from qwen3_smvl.training.run import load_model
from qwen3_smvl.training.train_config import DataArguments

import train
from conftest import REPO, free_port


@pytest.fixture
def config(tmp_path, tiny_smolvlm_dir, tiny_qwen_dir, cauldron_dir):
    """A short CPU run; tests override what they exercise."""
    return {
        "smolvlm_path": str(tiny_smolvlm_dir),
        "qwen_path": str(tiny_qwen_dir),
        "data_dir": str(cauldron_dir),
        "train_data": ["cocoqa", "ai2d"],
        "test_size": 8,
        "max_steps": 8,
        "per_device_train_batch_size": 2,
        "learning_rate": 5e-3,
        "warmup_steps": 0.1,
        "lr_scheduler_type": "cosine",
        "logging_steps": 1,
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "seed": 0,
        "demo_max_new_tokens": 4,
        "output_dir": str(tmp_path / "run"),
    }


def write_yaml(path, config):
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return str(path)


def run(tmp_path, config, *flags):
    train.main([write_yaml(tmp_path / "cfg.yaml", config), *flags])


def losses(output_dir):
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def state_of(module):
    return {name: tensor.clone() for name, tensor in module.state_dict().items()}


def test_trains_saves_standalone_and_runs_the_demo(tmp_path, config, tiny_qwen_dir, tiny_smolvlm_dir, capsys):
    run(tmp_path, {**config, "run_evaluation": True, "eval_max_new_tokens": 2})
    out = tmp_path / "run"
    printed = capsys.readouterr().out
    assert "trainable params:" in printed and "demo answer:" in printed and "图中有什么动物？" in printed
    assert f"python infer.py --model {out} --image" in printed  # what to run next
    found = re.search(r"^data: 88 train rows \((.+)\), 8 held out, 0 skipped, \d+ s$", printed, re.MULTILINE)
    per_source = dict(entry.split(" ") for entry in found[1].split(", "))  # 2 x 48 rows, 8 of them held out
    assert per_source.keys() == {"cocoqa", "ai2d"} and sum(map(int, per_source.values())) == 88, found[0]
    results = json.loads((out / "eval_results.json").read_text())
    assert results["summary"]["overall"]["n"] == config["test_size"]

    model = AutoModelForImageTextToText.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    qwen = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir)
    smol = AutoModelForImageTextToText.from_pretrained(tiny_smolvlm_dir)
    for name, tensor in qwen.model.state_dict().items():
        assert torch.equal(model.model.text_model.state_dict()[name], tensor), name
    for name, tensor in smol.model.vision_model.state_dict().items():
        assert torch.equal(model.model.vision_model.state_dict()[name], tensor), name
    # the connector starts from the same seeded init as a fresh graft, and training moved it
    fresh, _ = graft.stitch(tiny_smolvlm_dir, tiny_qwen_dir)
    assert not torch.equal(model.model.connector.modality_projection.proj.weight, fresh.model.connector.modality_projection.proj.weight)

    assert not list(out.glob("checkpoint-*"))  # save_strategy "no": only the final standalone model
    # The saved model is the one that answered the demo: same question, first held-out image, same reply.
    demo_reply = printed.split("demo answer:\n", 1)[1].split("\nsubset ", 1)[0]
    data_args = DataArguments(data_dir=config["data_dir"], train_data=config["train_data"], test_size=config["test_size"])
    held_out = loading.load_data(data_args, config["seed"]).held_out
    reply = inference.answer(model, processor, Collator.decode_image(held_out[0]["images"][0]), "图中有什么动物？", think=True,
                         max_new_tokens=config["demo_max_new_tokens"])
    assert reply == demo_reply


def test_loss_decreases(tmp_path, config):
    run(tmp_path, {**config, "save_strategy": "steps", "save_steps": 8})
    history = losses(tmp_path / "run" / "checkpoint-8")
    assert len(history) == 8
    assert sum(history[-3:]) / 3 < sum(history[:3]) / 3


def test_lm_head_on_supervised_positions_only_trains_identically(tmp_path, config):
    histories = []
    for supervised_only in (False, True):
        out = tmp_path / f"supervised_only_{supervised_only}"
        run(tmp_path, {**config, "max_steps": 4, "gradient_accumulation_steps": 2, "save_strategy": "steps",
                       "save_steps": 4, "supervised_logits_only": supervised_only, "output_dir": str(out)})
        histories.append(losses(out / "checkpoint-4"))
    assert histories[0] == pytest.approx(histories[1], rel=1e-4)


def test_resume_continues_steps_data_order_and_schedule(tmp_path, config):
    reference = {**config, "max_steps": 6, "save_strategy": "steps", "save_steps": 3, "output_dir": str(tmp_path / "ref")}
    run(tmp_path, reference)
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "ref" / "checkpoint-3", resumed_dir / "checkpoint-3")
    run(tmp_path, {**reference, "output_dir": str(resumed_dir)})

    ref_history = json.loads((tmp_path / "ref" / "checkpoint-6" / "trainer_state.json").read_text())["log_history"]
    resumed_history = json.loads((resumed_dir / "checkpoint-6" / "trainer_state.json").read_text())["log_history"]
    pick = lambda history: [(e["step"], e["learning_rate"], e["loss"]) for e in history if "loss" in e]
    for (step, lr, loss), (r_step, r_lr, r_loss) in zip(pick(ref_history), pick(resumed_history), strict=True):
        assert step == r_step and lr == pytest.approx(r_lr) and loss == pytest.approx(r_loss, rel=1e-4)
    ref = AutoModelForImageTextToText.from_pretrained(tmp_path / "ref")
    resumed = AutoModelForImageTextToText.from_pretrained(resumed_dir)
    assert torch.allclose(ref.model.connector.modality_projection.proj.weight, resumed.model.connector.modality_projection.proj.weight, atol=1e-6)


def test_non_empty_output_dir_without_checkpoints_is_left_alone(tmp_path, config):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not empty and holds no checkpoint"):
        run(tmp_path, config)
    assert os.listdir(out) == ["notes.txt"]


def test_overwrite_output_dir_starts_afresh(tmp_path, config):
    out = tmp_path / "run"
    (out / "checkpoint-99").mkdir(parents=True)
    run(tmp_path, {**config, "max_steps": 2, "overwrite_output_dir": True})
    assert not (out / "checkpoint-99").exists() and (out / "model.safetensors").is_file()


def test_init_from_a_stitched_directory(tmp_path, config, stitched_dir):
    run(tmp_path, {**config, "init_from": str(stitched_dir), "smolvlm_path": "nowhere", "qwen_path": "nowhere", "max_steps": 2})
    assert (tmp_path / "run" / "model.safetensors").is_file()


def answer_loss_per_sample(model, processor, rows, images):
    """Summed cross-entropy over the answer tokens (+ <|im_end|>) of each row, with `images` shown."""
    collator = Collator(processor, padding="longest", assistant_only_loss=True)
    total = 0.0
    for row, image in zip(rows, images):
        batch = collator([{**row, "images": [image]}])
        with torch.no_grad():
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0, :-1]
        labels = batch["labels"][0, 1:]
        total += torch.nn.functional.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="sum").item()
    return total / len(rows)


def test_learns_a_task_that_needs_the_image(tmp_path, config):
    """Colour naming: a blind model cannot beat ln(6) nats per answer; a seeing one can. Uses the
    offline demo's small-vocabulary checkpoints so that 60 steps are enough."""
    demo = tmp_path / "demo"
    run(tmp_path, {
        **config, "offline_demo_dir": str(demo), "train_data": ["cocoqa"], "test_size": 16,
        "freeze_text": False, "assistant_only_loss": True,
        "max_steps": 60, "per_device_train_batch_size": 8, "learning_rate": 1e-2,
    })
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "run")
    processor = AutoProcessor.from_pretrained(tmp_path / "run")
    held_out = loading.load_data(DataArguments(data_dir=str(demo / "the_cauldron"), test_size=16), config["seed"]).held_out
    rows = [held_out[i] for i in range(len(held_out))]
    seeing = answer_loss_per_sample(model, processor, rows, [row["images"][0] for row in rows])
    shuffled = answer_loss_per_sample(model, processor, rows, [row["images"][0] for row in rows[1:] + rows[:1]])
    blind_floor = math.log(len(tiny.COLOURS))
    assert seeing < 0.25 * blind_floor < blind_floor < shuffled, (seeing, blind_floor, shuffled)


def test_shipped_yamls_parse_with_documented_defaults():
    for name, subsets, output in (("cocoqa_train.yaml", "cocoqa", "freeze_llm_vlm_cocoqa"), ("full_train.yaml", "all", "freeze_llm_vlm_fulldata")):
        model_args, data_args, run_args, training_args = train_config.parse_config([str(REPO / name), "--use_cpu", "true"])  # bf16 needs a GPU or use_cpu
        assert model_args.smolvlm_path == "model/SmolVLM2-256M-Video-Instruct"
        assert model_args.qwen_path == "model/Qwen3-0.6B"
        assert data_args.data_dir == "data/the_cauldron"
        assert the_cauldron.resolve_subsets(data_args.train_data) == the_cauldron.resolve_subsets(subsets)
        assert training_args.output_dir.endswith(output)
        assert training_args.warmup_steps == 0.1 and training_args.learning_rate == 1e-4
        assert training_args.report_to == ["swanlab"] and not training_args.remove_unused_columns
        assert run_args.demo_question == "图中有什么动物？"


def test_original_warmup_ratio_is_mapped_with_a_notice(tmp_path, capsys):
    path = write_yaml(tmp_path / "old.yaml", {"warmup_ratio": 0.1, "overwrite_output_dir": True})
    _, _, run_args, training_args = train_config.parse_config([path])
    assert training_args.warmup_steps == 0.1 and run_args.overwrite_output_dir
    assert "'warmup_ratio: 0.1' mapped to 'warmup_steps: 0.1'" in capsys.readouterr().out


def test_command_line_overrides_the_yaml(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", {"max_steps": 200, "train_data": "cocoqa"})
    _, data_args, _, training_args = train_config.parse_config([path, "--max_steps", "3", "--train_data", "ai2d", "chartqa"])
    assert training_args.max_steps == 3 and data_args.train_data == ["ai2d", "chartqa"]


@pytest.mark.parametrize("bad, message", [
    ({"learnig_rate": 1e-4}, "unknown key 'learnig_rate' (did you mean 'learning_rate'?)"),
    ({"max_steps": "two hundred"}, "cfg.yaml: argument --max_steps/--max-steps: invalid int value: 'two hundred'"),
    ({"padding": "shortest"}, "padding: 'shortest' is not one of"),
    ({"freeze_connector": True}, "nothing would train"),
    ({"eval_strategy": "steps", "eval_steps": 5, "test_size": 0}, "nothing to evaluate on"),
    ({"run_evaluation": True, "test_size": 0}, "nothing to evaluate on"),
    ({"remove_unused_columns": True}, "remove_unused_columns must be false"),
    ({"data_dir": "/nonexistent/the_cauldron"}, "download_resource.sh"),
    ({"qwen_path": "/nonexistent/qwen"}, "Qwen3 checkpoint not found"),
    ({"demo_image": "/nonexistent/dog.png"}, "demo_image: image not found: /nonexistent/dog.png"),
    ({"init_from": "/nonexistent/run"}, "init_from: /nonexistent/run is not a model directory"),
    ({"demo_max_new_tokens": -1}, "demo_max_new_tokens: -1 must be 0 (no demo) or more"),
])
def test_bad_configs_are_refused_before_loading(tmp_path, config, bad, message):
    with pytest.raises(SystemExit) as stop:
        run(tmp_path, {**config, **bad})
    assert message in str(stop.value)
    assert not (tmp_path / "run").exists()


def test_what_the_first_save_would_die_of_is_refused_before_training(tmp_path, config, monkeypatch):
    """A processor that cannot be written to JSON (here a SizeDict left in video_sampling, as before issue 24)
    and an output_dir that cannot be made stop the run in one line before any step; nothing is left behind."""
    from transformers.image_utils import SizeDict

    from qwen3_smvl.training import train_processor

    set_sampling = train_processor.set_video_sampling

    def leaves_a_size_dict(processor, data_args):
        set_sampling(processor, data_args)
        processor.video_processor.video_sampling["video_size"] = SizeDict(longest_edge=32)

    monkeypatch.setattr(train_processor, "set_video_sampling", leaves_a_size_dict)
    with pytest.raises(SystemExit) as stop:
        run(tmp_path, config)
    message = str(stop.value)
    assert message.startswith("train.py: the processor or config cannot be saved and reloaded") and "\n" not in message
    assert "TypeError: Object of type SizeDict is not JSON serializable" in message
    assert not (tmp_path / "run").exists()  # no checkpoint, no trial folder, not even an empty output_dir
    monkeypatch.undo()
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit, match=f"output_dir {tmp_path / 'a_file' / 'run'} cannot be written"):
        run(tmp_path, {**config, "output_dir": str(tmp_path / "a_file" / "run")})


def train_on_two_cpu_ranks(config_path, cwd):
    """`python train.py config_path` as two gloo ranks (accelerate launch --multi_gpu with use_cpu); must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--main_process_port", str(free_port()),
         "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "train.py"), config_path],
        capture_output=True, text=True, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_cli_and_two_cpu_ranks_train_together(tmp_path, config, cauldron_dir, stitched_dir):
    """`accelerate launch --multi_gpu` with use_cpu runs two gloo ranks (`--cpu` alone runs one)."""
    path = write_yaml(tmp_path / "ddp.yaml", {**config, "max_steps": 3, "per_device_train_batch_size": 1})
    result = train_on_two_cpu_ranks(path, cwd=tmp_path)
    assert "rank 0/2: 3 steps" in result.stdout and "rank 1/2: 3 steps" in result.stdout
    assert (tmp_path / "run" / "model.safetensors").is_file()

    # Tokens seen are summed over ranks: six samples' worth, more than one rank's three could hold.
    collator = Collator(AutoProcessor.from_pretrained(stitched_dir), padding="longest")
    train_rows = loading.load_data(DataArguments(data_dir=str(cauldron_dir), train_data=["cocoqa", "ai2d"], test_size=8), 0).train
    lengths = [int(collator([row])["attention_mask"].sum()) for row in train_rows]
    seen = [int(line.split(" tokens seen")[0].split()[-1]) for line in result.stdout.splitlines() if " tokens seen" in line]
    assert len(seen) == 2 and seen[0] == seen[1]
    assert 6 * min(lengths) <= seen[0] <= 6 * max(lengths) and seen[0] > 3 * max(lengths)


def stored_dtypes(model_dir):
    with safe_open(model_dir / "model.safetensors", "pt") as weights:
        return {weights.get_slice(name).get_dtype() for name in weights.keys()}


@pytest.mark.parametrize("precision", [{"bf16": True}, {"bf16": False}, {"fp16": True}], ids=["bf16", "float32", "fp16"])
def test_bf16_sources_train_in_every_precision(tmp_path, config, bf16_smolvlm_dir, bf16_qwen_dir, precision):
    """The real checkpoints are bf16; training them in float32 (T4/V100s, CPUs) once died in the connector."""
    run(tmp_path, {**config, "smolvlm_path": str(bf16_smolvlm_dir), "qwen_path": str(bf16_qwen_dir),
                   "max_steps": 3, "demo_max_new_tokens": 2, **precision})
    out = tmp_path / "run"
    assert stored_dtypes(out) == {"BF16"}  # saved in the sources' dtype
    trained = AutoModelForImageTextToText.from_pretrained(out).model.connector.modality_projection.proj.weight
    fresh, _ = graft.stitch(bf16_smolvlm_dir, bf16_qwen_dir)
    assert torch.isfinite(trained).all()
    assert not torch.equal(trained, fresh.model.connector.modality_projection.proj.weight)


def test_save_dtype_overrides_the_sources_dtype(tmp_path, config, bf16_smolvlm_dir, bf16_qwen_dir):
    run(tmp_path, {**config, "smolvlm_path": str(bf16_smolvlm_dir), "qwen_path": str(bf16_qwen_dir),
                   "max_steps": 1, "demo_max_new_tokens": 1, "bf16": False, "save_dtype": "float32"})
    assert stored_dtypes(tmp_path / "run") == {"F32"}


def test_seed_seeds_the_fresh_connector(tmp_path, config):
    def connector(seed):
        model_args, _, _, training_args = train_config.parse_config([write_yaml(tmp_path / "c.yaml", {**config, "seed": seed})])
        model, _ = load_model(model_args, training_args)
        return model.model.connector.modality_projection.proj.weight

    assert torch.equal(connector(1), connector(1))
    assert not torch.equal(connector(1), connector(2))


@pytest.mark.parametrize("bad, message", [
    ({"data_dir": "/nonexistent/the_cauldron"}, "data_dir /nonexistent/the_cauldron does not exist"),
    ({"train_data": ["docvqa"]}, "no subset of ['docvqa'] could be loaded"),
    ({"qwen_path": "/nonexistent/qwen"}, "Qwen3 checkpoint not found"),
])
def test_refused_overwrite_leaves_the_old_checkpoints(tmp_path, config, bad, message):
    old = tmp_path / "run" / "checkpoint-4"
    old.mkdir(parents=True)
    (old / "trainer_state.json").write_text("{}")
    with pytest.raises(SystemExit) as stop:
        run(tmp_path, {**config, **bad, "overwrite_output_dir": True})
    assert message in str(stop.value)
    assert (old / "trainer_state.json").is_file()


def test_unreadable_demo_image_is_refused_before_training(tmp_path, config):
    broken = tmp_path / "dog.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(SystemExit, match=f"demo_image: {broken} cannot be read"):
        run(tmp_path, {**config, "demo_image": str(broken)})
    assert not (tmp_path / "run").exists()


def test_unexpected_errors_keep_their_traceback(tmp_path, config, monkeypatch):
    """Only the project's own refusals become one-line exits; a bug elsewhere keeps its traceback."""
    def broken_library(*args, **kwargs):
        raise ValueError("a bug deep inside a library")

    monkeypatch.setattr(loading, "load_data", broken_library)
    with pytest.raises(ValueError, match="a bug deep inside a library"):
        run(tmp_path, config)


def test_each_module_is_imported_once():
    """eval_vqa imports the config module, not train: `python train.py` no longer loads train.py twice."""
    code = "import sys, train, eval_vqa; print(sorted(m for m in sys.modules if m in ('train', '__main__', 'evaluate')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-2] == "['__main__', 'train']"
    evaluating = subprocess.run([sys.executable, "-c", "import eval_vqa, sys; print('train' in sys.modules)"],
                                capture_output=True, text=True, cwd=REPO, timeout=120)
    assert evaluating.stdout.split("\n")[-2] == "False"
