"""Your own data end to end: the shipped examples/ files through the collator (images where they stand,
exact masks, tools and thinking), through train.py for a few steps, and through the data check."""

import io
import json
import re
import shutil
from pathlib import Path

import datasets
import pytest
import yaml
from PIL import Image
from transformers import AutoProcessor

from qwen3_smvl.data import check_data, sources
from qwen3_smvl.data.collate import IGNORE_INDEX, Collator
from qwen3_smvl.graft import stitch
from qwen3_smvl.training import train_processor
from qwen3_smvl.training.train_config import DataArguments, parse_config

import train
from conftest import REPO

EXAMPLES = REPO / "examples"
THINK = "<think>\n\n</think>\n\n"


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


@pytest.fixture(scope="module")
def processor(stitched_dir):
    return AutoProcessor.from_pretrained(stitched_dir)


def rows_of(name, tmp_path):
    source = sources.parse_sources([{"path": str(EXAMPLES / name)}], str(tmp_path))[0]
    ds, _ = sources.read_source(source, str(tmp_path), str(tmp_path / "cache"), max_images=2)
    return [ds[i] for i in range(len(ds))]


def decode(processor, ids, attention_mask=None):
    ids = ids if attention_mask is None else ids[attention_mask.bool()]
    return processor.tokenizer.decode(ids, skip_special_tokens=False)


def supervised(processor, batch, index=0):
    labels = batch["labels"][index]
    return decode(processor, labels[labels != IGNORE_INDEX])


def placeholders(processor, batch):
    return (batch["input_ids"] == processor.image_token_id).sum(1).tolist()


def test_chinese_llava_row_renders_and_masks_exactly(processor, tmp_path):
    chinese = rows_of("llava.json", tmp_path)[1]
    batch = Collator(processor, padding="longest")([chinese])
    block = processor.fake_image_token + processor.global_image_token + processor.image_token * 4 + processor.fake_image_token
    conversation = f"<|im_start|>user\n{block}图中是什么颜色？<|im_end|>\n<|im_start|>assistant\n{THINK}蓝色。<|im_end|>\n"
    assert decode(processor, batch["input_ids"][0], batch["attention_mask"][0]) == conversation
    assert supervised(processor, batch) == conversation.replace(block, "")  # every image token is -100
    answers = Collator(processor, padding="longest", assistant_only_loss=True)([chinese])
    assert supervised(processor, answers) == "蓝色。<|im_end|>"


def png(size, colour):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def test_interleaved_images_take_their_places_in_order(real_geometry_smolvlm_dir, tiny_qwen_dir):
    """A wide red image (1 row x 4 tiles) then a tall blue one (4 rows x 1 tile), SmolVLM2's real geometry."""
    _, processor = stitch(real_geometry_smolvlm_dir, tiny_qwen_dir)
    content = [{"type": "text", "text": "First "}, {"type": "image"}, {"type": "text", "text": " then "},
               {"type": "image"}, {"type": "text", "text": " which is blue?"}]
    row = {"messages": [{"role": "user", "content": content}, {"role": "assistant", "content": "the second"}],
           "images": [png((64, 16), (230, 20, 20)), png((16, 64), (20, 20, 230))]}
    batch = Collator(processor, padding="longest", max_length=4096, max_images=2)([row])
    text = decode(processor, batch["input_ids"][0])
    assert text.index("First ") < text.index("<row_1_col_4>") < text.index(" then ") < text.index("<row_4_col_1>")
    assert text.index(" then ") < text.index("<row_2_col_1>") < text.index("<row_4_col_1>") < text.index(" which is blue?")
    tiles = batch["pixel_values"][0]  # 4 tiles + global view per image, in the images' order
    red_minus_blue = (tiles[:, 0] - tiles[:, 2]).mean((1, 2))
    assert (red_minus_blue[:5] > 0).all() and (red_minus_blue[5:] < 0).all()


def test_text_only_and_image_rows_of_every_format_share_a_batch(processor, tmp_path):
    rows = rows_of("llava.json", tmp_path) + rows_of("messages.jsonl", tmp_path)
    batch = Collator(processor, padding="longest", max_images=2)(rows)
    assert placeholders(processor, batch) == [4, 4, 8, 4, 0, 4, 8, 0, 0, 0]
    assert batch["pixel_values"].shape[:2] == (10, 2)


def test_tool_calls_and_thinking_are_supervised_as_rendered(processor, tmp_path):
    _, reasoning, tool_row, _, multi_turn = rows_of("messages.jsonl", tmp_path)
    collator = Collator(processor, padding="longest", assistant_only_loss=True, max_images=2)
    batch = collator([reasoning, tool_row, multi_turn])
    assert supervised(processor, batch, 0) == (
        "<think>\nThe first picture is red, the second is blue.\n</think>\n\nThe second one.<|im_end|>")
    call = '<tool_call>\n{"name": "get_colour_name", "arguments": {"rgb": [20, 160, 20]}}\n</tool_call>'
    assert supervised(processor, batch, 1) == f"{call}<|im_end|>It is green.<|im_end|>"
    assert supervised(processor, batch, 2) == "5<|im_end|>10<|im_end|>"
    text = decode(processor, batch["input_ids"][1])
    assert text.startswith("<|im_start|>system\nYou name colours.\n\n# Tools\n") and '"name": "get_colour_name"' in text
    assert "<|im_start|>user\n<tool_response>\n{\"name\": \"green\"}\n</tool_response><|im_end|>" in text


def test_a_row_placing_more_images_than_max_images_is_skipped_never_cut(processor, tmp_path):
    two_images = rows_of("llava.json", tmp_path)[2]
    with pytest.raises(ValueError, match=r"llava.json#2, .*2 images but max_images is 1"):
        Collator(processor, max_images=1)([two_images])
    collator = Collator(processor, max_images=1, on_bad_sample="skip")
    with pytest.warns(UserWarning):
        batch = collator([two_images, rows_of("llava.json", tmp_path)[0]])
    assert len(batch["input_ids"]) == 1 and collator.skipped_by_reason == {"too many images": 1}


@pytest.mark.parametrize("geometry", ["tiny", "real"])
def test_data_check_token_counts_match_the_collators(geometry, stitched_dir, real_geometry_smolvlm_dir,
                                                     tiny_qwen_dir, tmp_path):
    """Counted from header sizes and the tokenizer, without decoding an image: the collator's exact lengths."""
    if geometry == "tiny":
        processor = AutoProcessor.from_pretrained(stitched_dir)
    else:
        processor = stitch(real_geometry_smolvlm_dir, tiny_qwen_dir)[1]
    data_args = DataArguments(max_length=8192, max_images=2)
    measure = check_data.RowMeasure(processor, data_args)
    collator = Collator.from_args(processor, data_args)
    for row in rows_of("llava.json", tmp_path) + rows_of("messages.jsonl", tmp_path):
        assert measure.measure(row)[0] == len(collator.encode(row).input_ids), row["origin"]


@pytest.fixture
def config(tmp_path, tiny_smolvlm_dir, tiny_qwen_dir, cauldron_dir):
    return {
        "smolvlm_path": str(tiny_smolvlm_dir), "qwen_path": str(tiny_qwen_dir), "data_dir": str(cauldron_dir),
        "max_images": 2, "test_size": 2, "max_steps": 2, "per_device_train_batch_size": 4, "logging_steps": 1,
        "save_strategy": "no", "report_to": "none", "use_cpu": True, "seed": 0, "demo_max_new_tokens": 2,
        "output_dir": str(tmp_path / "run"), "image_cache_dir": str(tmp_path / "image_cache"),
    }


def run(tmp_path, config, *flags):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    train.main([str(path), *flags])


@pytest.mark.parametrize("train_data", [
    [{"path": str(EXAMPLES / "llava.json")}],
    [{"path": str(EXAMPLES / "messages.jsonl"), "format": "messages"}],
    ["cocoqa", {"path": str(EXAMPLES / "llava.json"), "weight": 2.0}, {"path": str(EXAMPLES / "messages.jsonl")}],
], ids=["llava", "messages", "mixture"])
def test_each_format_trains_through_train_py(tmp_path, config, train_data, capsys):
    run(tmp_path, {**config, "train_data": train_data})
    out = capsys.readouterr().out
    assert "rank 0/1: 2 steps" in out and "0 samples skipped" in out
    assert (tmp_path / "run" / "model.safetensors").is_file()
    # The data line counts the training rows per source (a mixture's repeats included) and the held-out rows.
    found = re.search(r"^data: (\d+) train rows \((.+)\), 2 held out, 0 skipped, \d+ s$", out, re.MULTILINE)
    per_source = dict(entry.rsplit(" ", 1) for entry in found[2].split(", "))
    assert set(per_source) == {entry if isinstance(entry, str) else entry["path"] for entry in train_data}
    assert sum(map(int, per_source.values())) == int(found[1])
    if len(train_data) == 1:  # every row of the example files is usable
        text = Path(train_data[0]["path"]).read_text()
        rows = len(json.loads(text)) if train_data[0]["path"].endswith(".json") else len(text.splitlines())
        assert int(found[1]) == rows - 2


def test_evaluation_scores_a_llava_file(tmp_path, config):
    llava = str(EXAMPLES / "llava.json")
    run(tmp_path, {**config, "train_data": [{"path": str(EXAMPLES / "messages.jsonl")}], "eval_data": [{"path": llava}],
                   "run_evaluation": True, "eval_max_new_tokens": 2, "test_size": 0})
    saved = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert saved["summary"]["overall"]["n"] == 5 and saved["skipped"] == 0
    assert sorted(s["reference"] for s in saved["samples"]) == sorted(["red", "蓝色。", "red", "green", "蓝色"])
    assert {s["source"] for s in saved["samples"]} == {llava}


def without_weights(directory, tmp_path):
    """The checkpoint's configs and tokenizer only: the data check must not need the weights."""
    copy = shutil.copytree(directory, tmp_path / directory.name)
    for weights in copy.glob("*.safetensors"):
        weights.unlink()
    return str(copy)


def test_data_check_lists_every_planted_problem_and_exits_non_zero(tmp_path, config, tiny_smolvlm_dir, tiny_qwen_dir,
                                                                   capsys):
    config = {**config, "smolvlm_path": without_weights(tiny_smolvlm_dir, tmp_path),
              "qwen_path": without_weights(tiny_qwen_dir, tmp_path), "max_length": 2048,
              "train_data": [{"path": str(EXAMPLES / "llava.json")}, {"path": str(EXAMPLES / "planted")}]}
    with pytest.raises(SystemExit) as stop:
        run(tmp_path, config, "--check_data", "true")
    out = capsys.readouterr().out
    assert stop.value.code == 1 and not (tmp_path / "run").exists()
    planted = EXAMPLES / "planted"
    for line in (
        f"{planted}/llava_problems.json#1: placeholder mismatch: 2 <image> placeholder(s) for 1 image(s)",
        f"{planted}/llava_problems.json#2: missing video: video file {planted}/clip.mp4 not found",
        f"{planted}/messages_problems.jsonl:2: invalid JSON: ",
        f"{planted}/messages_problems.jsonl:3: missing image: image file {planted}/../images/missing.png not found",
        f"{planted}/messages_problems.jsonl:4: empty answer: turn 0 has an empty assistant answer",
        f"{planted}/messages_problems.jsonl:5: bad image: {planted}/not_an_image.png cannot be read",
    ):
        assert f"\n  {line}" in out
    assert f"{planted} (llava+messages): 9 rows read; text-only 1, 1 image 2, 2+ images 0;" in out
    assert "6 problem(s): placeholder mismatch 1, missing video 1, invalid JSON 1, missing image 1, empty answer 1, bad image 1" in out
    assert "keys the llava+messages reader ignores: ['score']" in out
    llava = next(line for line in out.splitlines() if line.startswith(f"{EXAMPLES / 'llava.json'} (llava)"))
    assert "5 rows read; text-only 1, 1 image 3, 2+ images 1;" in llava and "0 over max_length 2048" in llava
    longest = int(re.search(r"max (\d+);", llava)[1])
    assert re.search(r"\ndata check: 14 rows in 2 source\(s\), 6 problem\(s\) would stop training under "
                     r"on_bad_sample: raise, \d+ s$", out.rstrip())  # llava.json's 5 rows and the 9 planted

    config["train_data"] = [{"path": str(EXAMPLES / "llava.json")}, {"path": str(EXAMPLES / "messages.jsonl")}]
    with pytest.raises(SystemExit) as clean:  # the longest row is cut after its images: counted, no problem
        run(tmp_path, {**config, "max_length": longest - 1}, "--check_data", "true")
    out = capsys.readouterr().out
    assert clean.value.code == 0 and re.search(r"\ndata check: 10 rows in 2 source\(s\), 0 problem\(s\) found, \d+ s$",
                                               out.rstrip())
    assert f"1 over max_length {longest - 1}" in out


def test_data_check_measures_at_trainings_image_resolution(tmp_path, config, real_geometry_smolvlm_dir,
                                                           tiny_qwen_dir, capsys):
    """--image_longest_edge changes what the check counts, to exactly the collator's lengths at that edge."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (1600, 1200), "red").save(photos / "wide.jpg")
    Image.new("RGB", (700, 1500), "blue").save(photos / "tall.jpg")
    Image.new("RGB", (300, 200), "green").save(photos / "icon.jpg")
    (photos / "photos.json").write_text(json.dumps([
        {"image": name, "conversations": [{"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": colour}]}
        for name, colour in (("wide.jpg", "red"), ("tall.jpg", "blue"), ("icon.jpg", "green"))]))
    config = {**config, "smolvlm_path": without_weights(real_geometry_smolvlm_dir, tmp_path),
              "qwen_path": without_weights(tiny_qwen_dir, tmp_path), "max_length": 8192,
              "train_data": [{"path": str(photos / "photos.json")}]}
    source = sources.parse_sources(config["train_data"], str(tmp_path))[0]
    rows = sources.read_source(source, str(tmp_path), str(tmp_path / "cache"), max_images=2)[0]
    longest = []
    for edge in (512, 1024, 2048):
        with pytest.raises(SystemExit) as stop:
            run(tmp_path, {**config, "image_longest_edge": edge}, "--check_data", "true")
        assert stop.value.code == 0
        counted = int(re.search(r"tokens p50 \d+, p95 \d+, max (\d+);", capsys.readouterr().out)[1])
        processor = stitch(real_geometry_smolvlm_dir, tiny_qwen_dir)[1]
        train_processor.set_image_resolution(processor, DataArguments(image_longest_edge=edge))
        collator = Collator(processor, max_length=8192)
        assert counted == max(len(collator.encode(rows[i]).input_ids) for i in range(len(rows))), edge
        longest.append(counted)
    assert longest[0] < longest[1] < longest[2]
    # native_resolution: the icon and the tall photo are not upscaled, so the median row shrinks, as the collator's
    with pytest.raises(SystemExit) as stop:
        run(tmp_path, {**config, "native_resolution": True}, "--check_data", "true")
    assert stop.value.code == 0
    median = int(re.search(r"tokens p50 (\d+),", capsys.readouterr().out)[1])
    processor = stitch(real_geometry_smolvlm_dir, tiny_qwen_dir)[1]
    train_processor.set_image_resolution(processor, DataArguments(native_resolution=True))
    collator = Collator(processor, max_length=8192)
    lengths = sorted(len(collator.encode(rows[i]).input_ids) for i in range(len(rows)))
    assert median == lengths[1] < longest[2]


def test_text_only_batches_train_with_the_text_model_frozen(tmp_path, config, capsys):
    """Nothing trainable takes part in a text-only batch when only the connector trains: no error, no change."""
    rows = [{"messages": [{"role": "user", "content": f"{a} + {a}?"}, {"role": "assistant", "content": str(2 * a)}]}
            for a in range(6)]
    path = tmp_path / "text.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run(tmp_path, {**config, "train_data": [{"path": str(path)}], "freeze_text": True})
    assert "rank 0/1: 2 steps" in capsys.readouterr().out


def test_rows_skipped_when_loading_are_reported_per_source_at_the_end(tmp_path, config, capsys):
    planted = str(EXAMPLES / "planted")
    with pytest.warns(UserWarning, match="skipping 4 unusable row"):
        run(tmp_path, {**config, "train_data": [{"path": planted}], "on_bad_sample": "skip", "test_size": 0,
                       "per_device_train_batch_size": 5})
    out = capsys.readouterr().out
    assert (f"rows of {planted} skipped when loading: "
            "{'placeholder mismatch': 1, 'missing video': 1, 'invalid JSON': 1, 'missing image': 1}") in out
    assert re.search(rf"^data: 5 train rows \({planted} 5\), 0 held out, 4 skipped \(placeholder mismatch 1, missing video 1, "
                     r"invalid JSON 1, missing image 1\), \d+ s$", out, re.MULTILINE)  # 9 rows, 4 unusable
    assert "rank 0/1: 2 steps" in out


def test_the_shipped_mixture_example_names_all_three_formats(monkeypatch):
    monkeypatch.chdir(REPO)
    _, data_args, _, _ = parse_config([str(EXAMPLES / "mixture_demo.yaml")])
    parsed = sources.parse_sources(data_args.train_data, data_args.data_dir)
    assert [(s.name, s.weight) for s in parsed] == [
        ("cocoqa", None), ("examples/llava.json", 2.0), ("examples/messages.jsonl", 1.0)]
