"""Stage 2 on tiny checkpoints: per-part learning rates, LoRA with a verified merge, activation
checkpointing, the shipped stage-2 recipes and the stage 1 -> stage 2 chain."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

from qwen3_smvl import tiny
from qwen3_smvl.data import loading, text_replay, the_cauldron
from qwen3_smvl.data.collate import Collator
from qwen3_smvl.training import lora_merge, train_config, trainable

import train
from conftest import REPO, free_port
from faults import plant_nan_batches
from test_train import config, losses, run, write_yaml  # noqa: F401 (config is a fixture)

TINY_RUN = ["--use_cpu", "true", "--bf16", "false", "--report_to", "none", "--dataloader_num_workers", "0",
            "--eval_strategy", "no", "--save_strategy", "no", "--run_evaluation", "false", "--demo_max_new_tokens", "2",
            "--test_size", "8", "--max_train_samples", "64", "--per_device_train_batch_size", "2",
            "--warmup_steps", "0", "--seed", "0", "--data_seed", "0"]



def cauldron_rows(cauldron_dir, subsets, test_size):
    """(train, held-out, problems) as train.py loads a config naming these the_cauldron subsets."""
    return loading.load_data(train_config.DataArguments(data_dir=str(cauldron_dir), train_data=subsets, test_size=test_size), 0)

def tensors(module):
    return {name: tensor.clone() for name, tensor in module.state_dict().items()}


def changed(before, after):
    return {name for name in before if not torch.equal(before[name], after[name])}


def optimizer_groups_of(checkpoint):
    state = torch.load(checkpoint / "optimizer.pt", weights_only=False)
    return {group["name"]: (group["initial_lr"], group["weight_decay"]) for group in state["param_groups"]}


def probe(processor, rows):
    """An image+text batch as the merge check builds it."""
    batch = Collator(processor, padding="longest")(rows)
    batch.pop("labels")
    return batch


def logits(model, batch):
    with torch.no_grad():
        return model.eval()(**batch).logits


def test_part_learning_rates_reach_the_optimizer_and_zero_freezes(tmp_path, config, stitched_dir, capsys):
    run(tmp_path, {**config, "init_from": str(stitched_dir), "max_steps": 2, "save_strategy": "steps", "save_steps": 2,
                   "vision_lr": 1e-3, "connector_lr": 5e-3, "text_lr": 0, "weight_decay": 0.1})
    out = tmp_path / "run"
    groups = optimizer_groups_of(out / "checkpoint-2")
    assert groups == {
        "vision (decay)": (1e-3, 0.1), "vision (no decay)": (1e-3, 0.0), "connector (decay)": (5e-3, 0.1)}
    printed = capsys.readouterr().out
    assert "optimizer group vision (no decay)" in printed and "lr 1.00e-03" in printed

    source = AutoModelForImageTextToText.from_pretrained(stitched_dir)
    trained = AutoModelForImageTextToText.from_pretrained(out)
    assert not changed(tensors(source.model.text_model), tensors(trained.model.text_model))  # text_lr 0: bitwise
    vision_changed = changed(tensors(source.model.vision_model), tensors(trained.model.vision_model))
    assert any(name.endswith("bias") for name in vision_changed) and any("weight" in name for name in vision_changed)


def test_unfreeze_last_text_layers_only(tmp_path, config, stitched_dir):
    run(tmp_path, {**config, "init_from": str(stitched_dir), "max_steps": 2, "freeze_text": False,
                   "unfreeze_text_layers": 1, "connector_lr": 0})
    source = AutoModelForImageTextToText.from_pretrained(stitched_dir)
    trained = AutoModelForImageTextToText.from_pretrained(tmp_path / "run")
    text_changed = changed(tensors(source.model.text_model), tensors(trained.model.text_model))
    assert text_changed and all(name.startswith(("layers.1.", "norm.")) for name in text_changed), text_changed
    assert "norm.weight" in text_changed
    assert not changed(tensors(source.model.connector), tensors(trained.model.connector))
    assert not changed(tensors(source.lm_head), tensors(trained.lm_head))


@pytest.mark.parametrize("bad, message", [
    ({"freeze_text": True, "text_lr": 1e-5}, "freeze_text: true contradicts text_lr: 1e-05"),
    ({"freeze_connector": False, "connector_lr": 0}, "freeze_connector: false contradicts connector_lr: 0"),
    ({"connector_lr": 0}, "nothing would train"),
    ({"lora_r": 4, "text_lr": 0}, "lora_r: 4 puts adapters on the text model"),
    ({"unfreeze_text_layers": 1}, "unfreeze_text_layers needs the text model trained in full"),
    ({"freeze_text": False, "unfreeze_text_layers": 3}, "unfreeze_text_layers: 3 is not between 1 and the text model's 2 layers"),
    ({"text_lr": 1e-3, "unfreeze_text_layers": 0}, "unfreeze_text_layers: 0 is not between 1 and the text model's 2 layers"),
    ({"lora_r": 4, "lora_target": "q_proj"}, "lora_target 'q_proj' matches no module"),
    ({"lora_r": 4, "lora_target": r"model\.vision_model\.encoder\.layers\.\d+\.self_attn\.q_proj"},
     "outside the parts with LoRA (text; lora_vision: true adds the vision tower)"),
    ({"lora_r": 4, "lora_target": r"model\.text_model\.layers\.\d+"}, "a Qwen3DecoderLayer, not a Linear layer"),
])
def test_contradictory_or_impossible_settings_are_refused(tmp_path, config, bad, message):
    with pytest.raises(SystemExit) as stop:
        run(tmp_path, {**config, **bad})
    assert message in str(stop.value)
    assert not (tmp_path / "run").exists()


def test_merge_that_loses_the_adapters_is_an_error(stitched, cauldron_dir):
    model, processor = stitched
    model_args = train_config.ModelArguments(lora_r=4, lora_dropout=0.0)
    adapted = trainable.add_adapters(model, model_args, trainable.decide(model_args, train_config.TrainingArguments(output_dir="unused")))
    for name, parameter in adapted.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter)  # a trained adapter (peft starts B at zero)
    rows = cauldron_rows(cauldron_dir, ["cocoqa"], test_size=2).train
    adapted.merge_and_unload = adapted.unload  # the peer bug: "merged" by dropping the adapters
    with pytest.raises(lora_merge.MergeError, match="the merged model's logits differ from the adapter model's"):
        lora_merge.merge_verified(adapted, probe(processor, [rows[0]]))


def test_stage1_then_stage2_lora_recipe(tmp_path, config, cauldron_dir, tiny_qwen_dir):
    """full_train.yaml's connector stage, then the shipped stage2_lora.yaml from its output."""
    stage1 = tmp_path / "stage1"
    run(tmp_path, {**config, "max_steps": 3, "output_dir": str(stage1)})
    stage2 = tmp_path / "stage2"
    train.main([str(REPO / "stage2_lora.yaml"), *TINY_RUN, "--init_from", str(stage1), "--data_dir", str(cauldron_dir),
                "--train_data", "cocoqa", "ai2d", "--max_steps", "4", "--learning_rate", "5e-3", "--text_lr", "5e-3",
                "--connector_lr", "5e-3", "--output_dir", str(stage2)])

    with safe_open(stage2 / "adapter" / "adapter_model.safetensors", "pt") as adapter:
        saved = list(adapter.keys())
    assert all(".lora_A." in key or ".lora_B." in key or ".connector." in key for key in saved), saved
    assert any(".connector." in key for key in saved)
    assert not (stage2 / "adapter_model.safetensors").exists()  # the top level is the merged model

    before = AutoModelForImageTextToText.from_pretrained(stage1)
    merged = AutoModelForImageTextToText.from_pretrained(stage2)  # plain transformers
    assert not changed(tensors(before.model.vision_model), tensors(merged.model.vision_model))
    text_changed = changed(tensors(before.model.text_model), tensors(merged.model.text_model))
    assert text_changed and all(name.endswith("_proj.weight") for name in text_changed), text_changed
    assert changed(tensors(before.model.connector), tensors(merged.model.connector))

    processor = AutoProcessor.from_pretrained(stage2)
    rows, held_out, _ = cauldron_rows(cauldron_dir, ["cocoqa", "ai2d"], test_size=8)
    batch = probe(processor, [held_out[0], rows[0]])
    adapter_model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(stage1), stage2 / "adapter")
    expected = logits(adapter_model, batch)
    assert torch.allclose(logits(merged, batch), expected, atol=1e-4 * expected.abs().max().item())
    assert not torch.allclose(logits(before, batch), expected, atol=1e-3)  # the adapters did change the model


def test_stage1_then_stage2_full_recipe(tmp_path, config, cauldron_dir):
    stage1 = tmp_path / "stage1"
    run(tmp_path, {**config, "max_steps": 2, "output_dir": str(stage1)})
    stage2 = tmp_path / "stage2"
    train.main([str(REPO / "stage2_full.yaml"), *TINY_RUN, "--init_from", str(stage1), "--data_dir", str(cauldron_dir),
                "--train_data", "cocoqa", "--max_steps", "2", "--output_dir", str(stage2)])
    before = AutoModelForImageTextToText.from_pretrained(stage1)
    after = AutoModelForImageTextToText.from_pretrained(stage2)
    for part in ("vision_model", "connector", "text_model"):  # every part trains, each at its own rate
        assert changed(tensors(getattr(before.model, part)), tensors(getattr(after.model, part))), part
    assert not (stage2 / "adapter").exists()


def test_lora_on_the_vision_tower_too(stitched):
    model, _ = stitched
    model_args = train_config.ModelArguments(lora_r=4, lora_vision=True)
    training_args = train_config.TrainingArguments(output_dir="unused", learning_rate=1e-3)
    parts = trainable.decide(model_args, training_args)
    adapted = trainable.prepare_trainable(model, model_args, parts)
    trained = [name for name, parameter in adapted.named_parameters() if parameter.requires_grad]
    assert any(".vision_model.encoder." in name and "lora_A" in name for name in trained)
    assert any(".text_model.layers." in name and "lora_A" in name for name in trained)
    assert all("lora_" in name or ".connector." in name for name in trained), trained
    groups = {group["name"]: group for group in trainable.optimizer_groups(adapted, parts.rates, 0.0)}
    assert set(groups) == {"vision (decay)", "connector (decay)", "text (decay)"}


def test_lora_resume_continues_exactly(tmp_path, config, stitched_dir):
    lora = {**config, "init_from": str(stitched_dir), "lora_r": 4, "lora_dropout": 0.0, "max_steps": 6,
            "save_strategy": "steps", "save_steps": 3, "output_dir": str(tmp_path / "ref")}
    run(tmp_path, lora)
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "ref" / "checkpoint-3", resumed_dir / "checkpoint-3")
    run(tmp_path, {**lora, "output_dir": str(resumed_dir)})

    assert losses(resumed_dir / "checkpoint-6") == pytest.approx(losses(tmp_path / "ref" / "checkpoint-6"), rel=1e-4)
    with safe_open(tmp_path / "ref" / "adapter" / "adapter_model.safetensors", "pt") as ref, \
            safe_open(resumed_dir / "adapter" / "adapter_model.safetensors", "pt") as resumed:
        assert sorted(ref.keys()) == sorted(resumed.keys())
        for key in ref.keys():
            assert torch.allclose(ref.get_tensor(key), resumed.get_tensor(key), atol=1e-6), key


@pytest.mark.parametrize("setting", [
    {},  # frozen vision tower and text model, connector trains
    {"lora_r": 4, "lora_dropout": 0.0, "connector_lr": 0},  # LoRA only: nothing before the text model needs grad
    {"freeze_text": False, "freeze_vision": False},  # everything trains
])
def test_activation_checkpointing_gives_the_same_gradients(stitched_dir, cauldron_dir, setting):
    model_args = train_config.ModelArguments(**setting)
    training_args = train_config.TrainingArguments(output_dir="unused", learning_rate=1e-3)
    rows = cauldron_rows(cauldron_dir, ["cocoqa"], test_size=2).train
    processor = AutoProcessor.from_pretrained(stitched_dir)
    batch = Collator(processor, padding="longest")([rows[0], rows[1]])
    gradients = []
    for checkpointing in (False, True):
        model = AutoModelForImageTextToText.from_pretrained(stitched_dir)
        model = trainable.prepare_trainable(model, model_args, trainable.decide(model_args, training_args))
        if checkpointing:
            model.activation_checkpointing_enable()  # what the Trainer calls for activation_checkpointing: true
        model.train()(**batch).loss.backward()
        gradients.append({name: p.grad for name, p in model.named_parameters() if p.requires_grad})
    plain, checkpointed = gradients
    assert plain.keys() == checkpointed.keys()
    for name, gradient in plain.items():
        assert checkpointed[name] is not None, f"{name} got no gradient under checkpointing"
        assert torch.allclose(gradient, checkpointed[name], atol=1e-6), name


def test_shipped_stage2_recipes_chain_from_stage1():
    stage1 = train_config.parse_config([str(REPO / "full_train.yaml"), "--use_cpu", "true"])[3]
    for name, expected_lrs in (("stage2_lora.yaml", {"connector": 1e-4, "text": 2e-4}),
                               ("stage2_full.yaml", {"vision": 5e-6, "connector": 1e-4, "text": 2e-5})):
        model_args, data_args, _, training_args = train_config.parse_config([str(REPO / name), "--use_cpu", "true"])
        assert model_args.init_from == stage1.output_dir
        assert trainable.decide(model_args, training_args).rates == expected_lrs
        assert data_args.assistant_only_loss and training_args.activation_checkpointing
    assert trainable.decide(model_args, training_args).adapted == set()


def test_fsdp2_on_two_cpu_ranks_matches_one_process(tmp_path, config):
    """The shipped FSDP2 config with the text model unfrozen: both ranks train on shards, the main
    process writes a whole checkpoint that plain transformers reloads, equal to a one-process run
    over the same global batches, and the same file: the same tensors (the tied LM head once), in
    save_dtype. A NaN batch on rank 1 makes both ranks skip that step, as the one-process run skips
    the batch holding that row. tests/fsdp_on_cpu.py lets accelerate run FSDP on CPU ranks."""
    fsdp = {**config, "freeze_text": False, "max_steps": 3, "per_device_train_batch_size": 1, "learning_rate": 1e-3,
            "save_dtype": "bfloat16", "output_dir": str(tmp_path / "fsdp")}
    path = write_yaml(tmp_path / "fsdp.yaml", fsdp)
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "accelerate_configs" / "fsdp2.yaml"),
         "--main_process_port", str(free_port()),
         "--num_processes", "2", str(REPO / "tests" / "fsdp_on_cpu.py"), path],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "NAN_BATCH_OF_RANK": "1:2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):
        assert re.search(rf"^rank {rank}/2: 3 steps, .* 1 non-finite steps skipped$", result.stdout, re.MULTILINE)

    origins = {}
    undo = plant_nan_batches({2}, origins)
    try:
        run(tmp_path, {**fsdp, "per_device_train_batch_size": 2, "output_dir": str(tmp_path / "single")})
    finally:
        undo()
    rank_1_row = origins[2][1]  # batch 2 of the one-process run holds step 2's rows of ranks 0 and 1
    assert f"step 2: non-finite loss and gradient norm: skipped without updating the weights (1 in a row, " \
           f"1 in this run); rows: {rank_1_row}\n" in result.stderr
    sharded_file, single_file = (tmp_path / name / "model.safetensors" for name in ("fsdp", "single"))
    assert saved_tensors(sharded_file) == saved_tensors(single_file)  # names, dtypes and shapes
    assert "lm_head.weight" not in saved_tensors(single_file)  # tied: stored once, as the embeddings
    assert sharded_file.stat().st_size == single_file.stat().st_size
    assert json.loads((tmp_path / "fsdp" / "config.json").read_text()) == \
        json.loads((tmp_path / "single" / "config.json").read_text())
    sharded = AutoModelForImageTextToText.from_pretrained(tmp_path / "fsdp", dtype=torch.float32)
    single = AutoModelForImageTextToText.from_pretrained(tmp_path / "single", dtype=torch.float32)
    assert sharded.lm_head.weight is sharded.get_input_embeddings().weight
    for name, tensor in single.state_dict().items():  # float32 training, within bf16 rounding of each other
        torch.testing.assert_close(sharded.state_dict()[name], tensor, atol=1e-5, rtol=2 ** -7, msg=name)
    assert changed(tensors(AutoModelForCausalLM.from_pretrained(config["qwen_path"]).model),
                   tensors(sharded.model.text_model))


def saved_tensors(safetensors_file):
    """{name: (dtype, shape)} of what a safetensors file holds."""
    with safe_open(safetensors_file, "pt") as weights:
        return {name: (weights.get_slice(name).get_dtype(), tuple(weights.get_slice(name).get_shape()))
                for name in weights.keys()}


def test_fsdp_config_on_cpu_without_fsdp_is_refused(tmp_path, config, monkeypatch):
    """Launched with an FSDP config where accelerate cannot shard, the run stops instead of silently
    keeping the whole model on every rank."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(SystemExit, match="accelerate enables FSDP only on GPUs"):
        run(tmp_path, {**config, "freeze_text": False})
    assert not list((tmp_path / "run").iterdir())  # the Trainer makes output_dir; nothing is written


def test_stage2_recipes_replay_text_at_smolvlm2s_share(tmp_path, monkeypatch):
    """Both recipes mix the converted replay set (download_resource.sh --replay) with the_cauldron's 21
    subsets; drawn through data.load_data, about 14% of the training rows are the replay's text-only rows."""
    parsed = [train_config.parse_config([str(REPO / name), "--use_cpu", "true"])[1]
              for name in ("stage2_lora.yaml", "stage2_full.yaml")]
    assert parsed[0].train_data == parsed[1].train_data
    data_args = parsed[0]
    monkeypatch.chdir(tmp_path)  # the recipes' relative data paths, laid out as the download leaves them
    tiny.write_synthetic_cauldron(tmp_path / data_args.data_dir, subsets=the_cauldron.ALL_SUBSETS, rows_per_subset=40)
    replay = tmp_path / "data/text_replay/sharegpt_zh_en.jsonl"
    text_replay.convert(tiny.write_tiny_sharegpt_zh_en(tmp_path / "data/text_replay/ShareGPT-Chinese-English-90k"), replay)

    loaded = loading.load_data(data_args, seed=0)
    counts = loading.rows_per_source(loaded.train)
    replay_name = "data/text_replay/sharegpt_zh_en.jsonl"
    assert set(counts) == {*the_cauldron.ALL_SUBSETS, replay_name}
    share = counts[replay_name] / len(loaded.train)
    assert 0.12 < share < 0.16, (share, counts)
    row = next(r for r in loaded.train.select(range(200)) if r["source"] == replay_name)
    assert row["images"] == [] and [m["role"] for m in json.loads(row["messages"])] == ["user", "assistant"]


def test_missing_replay_file_names_the_download(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(train_config.ConfigError, match=r"sharegpt_zh_en.jsonl does not exist; run `bash download_resource.sh --replay`"):
        train_config.configure([str(REPO / "stage2_lora.yaml"), "--use_cpu", "true", "--init_from", str(tmp_path)])
