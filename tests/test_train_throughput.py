"""train.py with packing, length-grouped batches and image-resolution settings, end to end on the CPU."""

import json
import shutil

import pytest
from PIL import Image
from transformers import AutoProcessor

from test_train import config, losses, run, train_on_two_cpu_ranks, write_yaml  # noqa: F401  (config is a fixture)

PACKING = {"packing": True, "max_tokens_per_batch": 320, "per_device_train_batch_size": 1}


def tokens_seen(printed):
    return [int(line.split(" tokens seen")[0].split()[-1]) for line in printed.splitlines() if " tokens seen" in line]


def image_settings(directory):
    image_processor = AutoProcessor.from_pretrained(directory).image_processor
    return image_processor.size["longest_edge"], image_processor.do_image_splitting


def test_packing_trains_with_a_worker_and_every_save_keeps_the_resolution(tmp_path, config, capsys):
    run(tmp_path, {**config, **PACKING, "max_steps": 4, "save_strategy": "steps", "save_steps": 2,
                   "dataloader_num_workers": 1, "image_longest_edge": 64, "image_splitting": True})
    out = tmp_path / "run"
    assert len(losses(out / "checkpoint-4")) == 4
    assert "sdpa_per_sample" not in (out / "config.json").read_text()  # train.py's packing attention stays local
    for directory in (out / "checkpoint-2", out / "checkpoint-4", out):
        assert image_settings(directory) == (64, True), directory
    processor = AutoProcessor.from_pretrained(out)
    encoded = processor(text=["<|image_pad|>"], images=[[Image.new("RGB", (32, 32))]])
    assert encoded["pixel_values"].shape[1] == 5  # resized to 64 px: 2 x 2 tiles of 32 px + the global view
    # a sample here is ~85 tokens (5 tiles): each pack of up to 320 holds several
    (seen,) = tokens_seen(capsys.readouterr().out)
    assert 4 * 160 < seen <= 4 * 320


def test_resume_with_packing_continues_the_same_packs(tmp_path, config):
    reference = {**config, **PACKING, "max_steps": 6, "save_strategy": "steps", "save_steps": 3,
                 "output_dir": str(tmp_path / "ref")}
    run(tmp_path, reference)
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "ref" / "checkpoint-3", resumed_dir / "checkpoint-3")
    run(tmp_path, {**reference, "output_dir": str(resumed_dir)})
    history = lambda out: [(e["step"], e["loss"], e["num_input_tokens_seen"])
                           for e in json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())["log_history"]
                           if "loss" in e]
    for (step, loss, seen), (r_step, r_loss, r_seen) in zip(history(tmp_path / "ref"), history(resumed_dir), strict=True):
        assert step == r_step and seen == r_seen and loss == pytest.approx(r_loss, rel=1e-4)


def test_group_by_length_reads_the_counted_lengths(tmp_path, config):
    """Without the `length` column transformers' LengthGroupedSampler would look for `input_ids` in the rows."""
    run(tmp_path, {**config, "max_steps": 2, "train_sampling_strategy": "group_by_length"})
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_two_cpu_ranks_train_packed(tmp_path, config):
    path = write_yaml(tmp_path / "ddp.yaml", {**config, **PACKING, "max_steps": 3, "dataloader_num_workers": 1})
    result = train_on_two_cpu_ranks(path, cwd=tmp_path)
    assert "rank 0/2: 3 steps" in result.stdout and "rank 1/2: 3 steps" in result.stdout
    seen = tokens_seen(result.stdout)
    assert len(seen) == 2 and seen[0] == seen[1] > 3 * 320  # summed over ranks: more than one rank's packs hold


def test_two_cpu_ranks_resume_in_a_later_epoch_onto_the_same_packs(tmp_path, config):
    """40 rows make a few packs of 320 tokens per epoch (how many depends on the tokenizer), so a run of
    8 steps crosses into a later epoch; the resumed run starts from the first checkpoint in it."""
    reference = {**config, **PACKING, "max_train_samples": 40, "max_steps": 8, "save_strategy": "steps",
                 "save_steps": 1, "output_dir": str(tmp_path / "ref")}
    train_on_two_cpu_ranks(write_yaml(tmp_path / "ref.yaml", reference), cwd=tmp_path)
    history = lambda out: [(e["step"], e["epoch"], e["loss"]) for e in json.loads(
        (out / "checkpoint-8" / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    ref = history(tmp_path / "ref")
    later = [step for step, epoch, _ in ref if epoch > 1 and step < 8]
    assert later, f"8 steps stay in the first epoch: {ref}"
    resumed = {**reference, "output_dir": str(tmp_path / "resumed")}
    shutil.copytree(tmp_path / "ref" / f"checkpoint-{later[0]}", tmp_path / "resumed" / f"checkpoint-{later[0]}")
    train_on_two_cpu_ranks(write_yaml(tmp_path / "resumed.yaml", resumed), cwd=tmp_path)
    again = history(tmp_path / "resumed")
    for (step, epoch, loss), (r_step, r_epoch, r_loss) in zip(ref, again, strict=True):
        assert step == r_step and epoch == pytest.approx(r_epoch) and loss == pytest.approx(r_loss, rel=1e-4)


@pytest.mark.parametrize("bad, message", [
    ({**PACKING, "per_device_train_batch_size": 2}, "a batch is one packed row"),
    ({**PACKING, "train_sampling_strategy": "group_by_length"}, "does not apply with packing"),
    ({"image_longest_edge": 5000}, "image_longest_edge: 5000 is outside 1..4096"),
    ({"image_longest_edge": 48, "image_splitting": True}, "image_longest_edge: 48 is not a multiple of the 32 px tile"),
    ({**PACKING, "max_tokens_per_batch": 0}, "must be positive"),
])
def test_bad_throughput_settings_are_refused_before_training(tmp_path, config, bad, message):
    with pytest.raises(SystemExit) as stop:
        run(tmp_path, {**config, **bad})
    assert message in str(stop.value)
    assert not (tmp_path / "run").exists()
