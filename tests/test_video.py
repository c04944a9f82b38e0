"""Video rows as SmolVLM2 trains on them: clips written with PyAV, read from LLaVA and messages files,
sampled and expanded by transformers' own SmolVLM video processing, counted without decoding."""

import json
import re
from functools import partial

import av
import datasets
import numpy as np
import pytest
import torch
from transformers import AutoProcessor
from transformers.video_utils import read_video_pyav

from qwen3_smvl import tiny
from qwen3_smvl.data import lengths, media, sources
from qwen3_smvl.data.check_data import RowMeasure
from qwen3_smvl.data.collate import IGNORE_INDEX, BadSample, Collator
from qwen3_smvl.data.packing import PackingCollator
from qwen3_smvl.training import train_processor
from qwen3_smvl.training.train_config import DataArguments, ModelArguments

from conftest import REPO

RGB = {"red": (220, 20, 20), "green": (20, 160, 20), "blue": (20, 40, 220)}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """3 s at 8 fps, one solid colour per second; 70 s at 2 fps (long enough to skip its ends)."""
    root = tmp_path_factory.mktemp("clips")
    tiny.write_colour_video(root / "rgb.mp4", list(RGB.values()), fps=8)
    tiny.write_colour_video(root / "long.mp4", [(i * 3 % 256, 80, 80) for i in range(70)], fps=2)
    tiny.write_audio_only(root / "audio.m4a")
    with av.open(str(root / "empty.avi"), "w", format="avi") as container:  # a video stream without frames
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        container.start_encoding()
    data = (root / "rgb.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "garbage.mp4").write_bytes(b"not a video at all" * 10)
    return root


@pytest.fixture(scope="module")
def processor(stitched_dir):
    return AutoProcessor.from_pretrained(stitched_dir)


def video_row(path, question="What colour is the last second?", answer="blue"):
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]},
                {"role": "assistant", "content": answer}]
    return {"messages": json.dumps(messages), "images": [], "videos": [{"bytes": None, "path": str(path)}],
            "origin": f"{path}:1"}


def test_frames_and_prompt_equal_transformers_smolvlm_processing(processor, clips):
    video_processor = processor.video_processor
    for name, expected in (("rgb.mp4", [0, 11, 23]), ("long.mp4", None)):
        frames, metadata = media.decode_video(clips / name, video_processor)
        sample = partial(video_processor.sample_frames, num_frames=video_processor.num_frames, fps=video_processor.fps)
        theirs, their_metadata = read_video_pyav(str(clips / name), sample)
        assert list(metadata.frames_indices) == list(their_metadata.frames_indices)
        np.testing.assert_array_equal(frames, theirs)
        if expected:
            assert list(metadata.frames_indices) == expected
    # 70 s at 1 fps, at most 64 frames: min(fps x duration, max_frames), one second skipped at each end
    long_indices = media.video_metadata(clips / "long.mp4", video_processor).frames_indices
    assert len(long_indices) == 64 and long_indices[0] == 2 and long_indices[-1] == 138

    frames, metadata = media.decode_video(clips / "rgb.mp4", video_processor)
    text = "<|im_start|>user\n<|video_pad|>What colour is the last second?<|im_end|>\n"
    theirs = processor(text=[text], videos=[frames], video_metadata=[metadata], do_sample_frames=False,
                       add_special_tokens=False, return_tensors="pt")["input_ids"][0].tolist()
    ours = Collator(processor, padding="longest").encode(video_row(clips / "rgb.mp4")).input_ids.tolist()
    assert ours[: len(theirs)] == theirs  # then the assistant turn
    prompt = processor.tokenizer.decode(ours)
    assert "You are provided the following series of three frames from a 0:00:03 [H:MM:SS] video." in prompt
    assert [line for line in prompt.split("\n") if line.startswith("Frame from")] == [
        f"Frame from 00:0{k}:<|vision_start|><|vision_pad|>" + "<|image_pad|>" * processor.image_seq_len
        + "<|vision_start|>" for k in range(3)]


def test_labels_mask_intro_timestamps_and_frame_blocks(processor, clips):
    encoded = Collator(processor, padding="longest", assistant_only_loss=False).encode(video_row(clips / "rgb.mp4"))
    supervised = processor.tokenizer.decode(encoded.labels[encoded.labels != IGNORE_INDEX])
    assert "provided" not in supervised and "Frame" not in supervised and "<|image_pad|>" not in supervised
    assert "What colour is the last second?" in supervised and "blue" in supervised
    assert len(encoded.tiles) == 3  # one tile per frame


def test_intro_counts_each_rows_own_frames_in_a_mixed_batch(processor, clips):
    image = {"messages": json.dumps([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]},
                                     {"role": "assistant", "content": "red"}]),
             "images": [{"bytes": None, "path": str(REPO / "examples/images/red.png")}]}
    text = {"messages": json.dumps([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])}
    batch = Collator(processor, padding="longest")([video_row(clips / "rgb.mp4"), video_row(clips / "long.mp4"), image, text])
    prompts = [processor.tokenizer.decode(ids) for ids in batch["input_ids"]]
    assert "series of three frames from a 0:00:03" in prompts[0]
    assert "series of sixty-four frames from a 0:01:10" in prompts[1]
    assert batch["pixel_values"].shape[:2] == (4, 64)


def test_token_counts_without_decoding_equal_the_collators(processor, clips):
    collator = Collator(processor, padding="longest")
    counter = lengths.TokenCounter(collator)
    measure = RowMeasure(processor, DataArguments(max_length=2048))
    for name in ("rgb.mp4", "long.mp4"):
        row = video_row(clips / name)
        encoded = len(collator.encode(row).input_ids)
        assert counter(row) == encoded and measure.measure(row)[0] == encoded
    assert measure.measure(video_row(clips / "long.mp4"))[2] == 64


def test_oversized_video_is_refused_naming_what_to_lower(processor, clips):
    collator = Collator(processor, max_length=100, padding="longest")
    with pytest.raises(BadSample, match="lower video_max_frames or video_fps") as refused:
        collator.encode(video_row(clips / "long.mp4"))
    assert refused.value.reason == "video exceeds max_length"
    with pytest.raises(BadSample, match="lower video_max_frames") as counted:
        lengths.TokenCounter(collator)(video_row(clips / "long.mp4"))
    assert counted.value.reason == "video exceeds max_length"


@pytest.mark.parametrize("name, cause", [
    ("missing.mp4", "video not found"), ("garbage.mp4", "cannot be read"), ("audio.m4a", "has no video stream"),
    ("truncated.mp4", "truncated or corrupt"), ("empty.avi", "has zero frames"),
])
def test_each_bad_video_is_named_and_counted(processor, clips, name, cause):
    collator = Collator(processor, padding="longest", on_bad_sample="skip")
    row = video_row(clips / name)
    with pytest.raises(BadSample, match=cause):
        Collator(processor, padding="longest").encode(row)
    with pytest.warns(UserWarning, match=rf"{name}:1.*({cause})"):
        collator([row, video_row(clips / "rgb.mp4")])
    assert collator.skipped_by_reason == {"bad video": 1}


def test_row_limits_are_refused(processor, clips):
    two = json.loads(video_row(clips / "rgb.mp4")["messages"])
    two[0]["content"].insert(0, {"type": "video"})
    row = {**video_row(clips / "rgb.mp4"), "messages": json.dumps(two)}
    row["videos"] = row["videos"] * 2
    with pytest.raises(BadSample, match="at most one video") as refused:
        Collator(processor).encode(row)
    assert refused.value.reason == "too many videos"


def test_readers_take_llava_video_keys_and_messages_video_parts(tmp_path, monkeypatch, clips):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    llava = [
        {"video": "rgb.mp4", "conversations": [{"from": "human", "value": "<video>\nWhat colour ends it?"},
                                                {"from": "gpt", "value": "blue"}]},
        {"video": ["rgb.mp4"], "conversations": [{"from": "human", "value": "No placeholder?"},
                                                  {"from": "gpt", "value": "first"}]},
        {"video": "rgb.mp4", "conversations": [{"from": "human", "value": "<video><video>"}, {"from": "gpt", "value": "x"}]},
        {"video": "gone.mp4", "conversations": [{"from": "human", "value": "<video>"}, {"from": "gpt", "value": "x"}]},
    ]
    (clips / "llava.json").write_text(json.dumps(llava))
    messages = [
        {"messages": [{"role": "user", "content": [{"type": "video", "path": "rgb.mp4"}, {"type": "text", "text": "A?"}]},
                      {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": "rgb.mp4"}},
                                                   {"type": "text", "text": "B?"}]}, {"role": "assistant", "content": "b"}]},
    ]
    (clips / "messages.jsonl").write_text("\n".join(json.dumps(row) for row in messages) + "\n")
    read = {}
    for name in ("llava.json", "messages.jsonl"):
        source = sources.parse_sources([{"path": str(clips / name)}], str(tmp_path))[0]
        read[name], _ = sources.read_source(source, str(tmp_path), str(tmp_path / "cache"), max_images=1)
    rows = read["llava.json"]
    assert json.loads(rows[0]["messages"])[0]["content"] == [{"type": "video"}, {"type": "text", "text": "What colour ends it?"}]
    assert json.loads(rows[1]["messages"])[0]["content"][0] == {"type": "video"}
    assert rows[0]["videos"] == [{"bytes": None, "path": str(clips / "rgb.mp4")}] and rows[0]["images"] == []
    assert rows[2]["problem"].startswith("placeholder mismatch: 2 <video> placeholder(s) for 1 video(s)")
    assert rows[3]["problem"].startswith("missing video:") and "gone.mp4" in rows[3]["problem"]
    assert [row["videos"][0]["path"] for row in read["messages.jsonl"]] == [str(clips / "rgb.mp4")] * 2


def test_video_sampling_keys_are_saved_with_the_processor(stitched_dir, tmp_path, clips):
    processor = AutoProcessor.from_pretrained(stitched_dir)
    train_processor.set_video_sampling(processor, DataArguments(video_fps=2, video_max_frames=4))
    processor.save_pretrained(tmp_path)
    reloaded = AutoProcessor.from_pretrained(tmp_path).video_processor
    assert (reloaded.fps, reloaded.num_frames) == (2, 4)
    assert list(media.video_metadata(clips / "rgb.mp4", reloaded).frames_indices) == [0, 7, 15, 23]


def test_packing_a_video_row_equals_its_unpacked_loss(stitched, clips):
    model, processor = stitched
    rows = [video_row(clips / "rgb.mp4"), video_row(clips / "rgb.mp4", "Again?", "blue, again")]
    plain = Collator(processor, padding="longest", supervised_logits_only=False)
    with torch.no_grad():
        unpacked = [model(**plain([row])).loss * (plain([row])["labels"][0, 1:] != IGNORE_INDEX).sum() for row in rows]
        packed_batch = PackingCollator(processor, padding="longest", supervised_logits_only=False,
                                       attn_implementation="sdpa")(rows)
        tokens = (packed_batch["labels"][0, 1:] != IGNORE_INDEX).sum()
        packed = model(**packed_batch).loss * tokens
    torch.testing.assert_close(packed, sum(unpacked), rtol=1e-4, atol=1e-4)


def test_video_image_and_text_rows_train_evaluate_check_and_infer(tmp_path, monkeypatch, clips, cauldron_dir,
                                                                   tiny_smolvlm_dir, tiny_qwen_dir, capsys):
    """Done-when: a LLaVA file with video rows and a messages file with video parts train mixed with
    image rows; evaluation scores the video rows; the data check reports frames; infer.py --video answers."""
    import yaml

    import infer
    import train

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    turn = lambda q, a: [{"from": "human", "value": f"<video>\n{q}"}, {"from": "gpt", "value": a}]  # noqa: E731
    (tmp_path / "videos.json").write_text(json.dumps(
        [{"video": str(clips / "rgb.mp4"), "conversations": turn(f"Last colour {i}?", "blue")} for i in range(6)]
        + [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}]))
    parts = [{"type": "video", "path": str(clips / "long.mp4")}, {"type": "text", "text": "Long?"}]
    (tmp_path / "videos.jsonl").write_text("\n".join(json.dumps(
        {"messages": [{"role": "user", "content": parts}, {"role": "assistant", "content": "yes"}]}) for _ in range(4)))
    config = {
        "smolvlm_path": str(tiny_smolvlm_dir), "qwen_path": str(tiny_qwen_dir), "data_dir": str(cauldron_dir),
        "train_data": ["cocoqa", {"path": str(tmp_path / "videos.json")}, {"path": str(tmp_path / "videos.jsonl")}],
        "eval_data": [{"path": str(tmp_path / "videos.json")}], "run_evaluation": True, "eval_max_new_tokens": 2,
        "video_max_frames": 8, "max_steps": 2, "per_device_train_batch_size": 8, "train_sampling_strategy": "group_by_length",
        "save_strategy": "no", "report_to": "none", "use_cpu": True, "seed": 0, "demo_max_new_tokens": 2,
        "output_dir": str(tmp_path / "run"), "image_cache_dir": str(tmp_path / "image_cache"),
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as exited:
        train.main([str(path), "--check_data", "true"])
    assert exited.value.code == 0
    checked = capsys.readouterr().out
    assert "videos at 1 fps up to 8 frames" in checked
    assert "6 video rows: frames per video p50 3, max 3" in checked and "4 video rows: frames per video p50 8" in checked
    assert f"({tmp_path / 'videos.json'}#0: " in checked and "% of max_length 2048" in checked
    train.main([str(path)])
    out = capsys.readouterr().out
    assert "rank 0/1: 2 steps" in out and "0 samples skipped" in out
    saved = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert saved["skipped"] == 0 and saved["summary"]["overall"]["n"] == 7
    assert AutoProcessor.from_pretrained(tmp_path / "run").video_processor.num_frames == 8
    infer.main(["--model", str(tmp_path / "run"), "--video", str(clips / "long.mp4"), "--question", "Long?",
                "--max-new-tokens", "2"])
    with pytest.raises(SystemExit, match="has no video stream"):
        infer.main(["--model", str(tmp_path / "run"), "--video", str(clips / "audio.m4a"), "--question", "?"])


def test_a_checkpoint_saved_before_video_support_is_refused_with_the_fix(stitched_dir, tmp_path, clips, monkeypatch,
                                                                        capsys):
    """Its chat template (the current one without the video branch) refuses video parts: the run stops
    with one line naming the cause and the fix, before any training; image-only runs are unaffected."""
    import shutil

    import yaml

    import infer
    import train

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    old = tmp_path / "old"
    shutil.copytree(stitched_dir, old)
    template = (REPO / "chat_template.jinja").read_text()
    video_branch = "            {%- elif part.type == 'video' %}\n                {{- '<|video_pad|>' }}\n"
    assert video_branch in template
    (old / "chat_template.jinja").write_text(template.replace(video_branch, ""))
    turn = [{"from": "human", "value": "<video>\nLast colour?"}, {"from": "gpt", "value": "blue"}]
    (tmp_path / "videos.json").write_text(json.dumps([{"video": str(clips / "rgb.mp4"), "conversations": turn}] * 3))
    config = {"init_from": str(old), "train_data": [{"path": str(tmp_path / "videos.json")}], "test_size": 1,
              "max_steps": 1, "save_strategy": "no", "report_to": "none", "use_cpu": True,
              "output_dir": str(tmp_path / "run")}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    fix = f"copy this repo's chat_template.jinja over {old / 'chat_template.jinja'}"
    with pytest.raises(SystemExit, match="its chat template cannot render video parts") as stopped:
        train.main([str(tmp_path / "cfg.yaml")])
    assert fix in str(stopped.value) and "\n" not in str(stopped.value)
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit) as checked:
        train.main([str(tmp_path / "cfg.yaml"), "--check_data", "true"])
    assert checked.value.code == 1 and f"its video rows cannot be encoded: {old}: its chat template" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="infer.py: .*cannot render video parts"):
        infer.main(["--model", str(old), "--video", str(clips / "rgb.mp4"), "--question", "?"])
    image_rows = datasets.Dataset.from_dict({"videos": [[], []]}, features=datasets.Features(
        {"videos": datasets.List({"bytes": datasets.Value("binary"), "path": datasets.Value("string")})}))
    train_processor.check_video_template(AutoProcessor.from_pretrained(old), ModelArguments(init_from=str(old)),
                                         [image_rows])  # no video rows: the old template is fine
    (old / "chat_template.jinja").write_text(template)  # the fix
    train.main([str(tmp_path / "cfg.yaml")])
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_the_data_check_names_every_bad_video_and_sums_up_the_good_ones(tmp_path, monkeypatch, clips, tiny_smolvlm_dir,
                                                                       tiny_qwen_dir, capsys):
    import yaml

    import train

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    names = ["rgb.mp4", "truncated.mp4", "audio.m4a", "empty.avi", "garbage.mp4", "gone.mp4", "long.mp4"]
    turn = [{"from": "human", "value": "<video>\nWhat happens?"}, {"from": "gpt", "value": "colours"}]
    (tmp_path / "videos.json").write_text(json.dumps([{"video": str(clips / name), "conversations": turn} for name in names]))
    config = {"smolvlm_path": str(tiny_smolvlm_dir), "qwen_path": str(tiny_qwen_dir), "video_max_frames": 8,
              "train_data": [{"path": str(tmp_path / "videos.json")}], "image_cache_dir": str(tmp_path / "cache")}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as exited:
        train.main([str(tmp_path / "cfg.yaml"), "--check_data", "true"])
    out = capsys.readouterr().out
    assert exited.value.code == 1
    where = f"{tmp_path / 'videos.json'}#"
    for index, cause in ((1, "bad video: .*truncated.mp4 cannot be read .*truncated or corrupt"),
                         (2, "bad video: .*audio.m4a has no video stream"), (3, "bad video: .*empty.avi has zero frames"),
                         (4, "bad video: .*garbage.mp4 cannot be read"), (5, "missing video: video file .*gone.mp4 not found")):
        assert re.search(rf"^  {re.escape(where)}{index}: {cause}", out, re.MULTILINE), (index, out)
    assert "5 problem(s): bad video 4, missing video 1" in out
    assert re.search(rf"2 video rows: frames per video p50 \d+, max 8; tokens per video p50 \d+, max \d+ "
                     rf"\({re.escape(where)}6: \d+% of max_length 2048", out), out


def save_with_transformers(smolvlm_dir, tokenizer_dir, out, sampling=True):
    """A SmolVLM source as transformers 5's own save_pretrained writes it (one processor_config.json holding
    the image and video processors); sampling=False: its video processor carries no sampling settings,
    only the image processor has a `video_sampling` (as in the hub's preprocessor_config.json)."""
    from transformers import (
        AutoImageProcessor,
        AutoModelForImageTextToText,
        AutoVideoProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    from qwen3_smvl import graft

    image = AutoImageProcessor.from_pretrained(smolvlm_dir)
    video = AutoVideoProcessor.from_pretrained(smolvlm_dir)
    if not sampling:
        video = SmolVLMVideoProcessor(size=dict(video.size), max_image_size=video.max_image_size)
        image.video_sampling = {"fps": 2, "max_frames": 6, "video_size": dict(video.size)}
    SmolVLMProcessor(image_processor=image, video_processor=video, tokenizer=graft.load_tokenizer(tokenizer_dir),
                     image_seq_len=4).save_pretrained(out)
    AutoModelForImageTextToText.from_pretrained(smolvlm_dir).save_pretrained(out)
    return out


def save_in_the_separate_layout(model_dir, out):
    """A checkpoint in the layout from before transformers 5 (and the hub's SmolVLM2): the image and video
    processors in preprocessor_config.json / video_preprocessor_config.json, each written by its own save."""
    import shutil

    processor = AutoProcessor.from_pretrained(model_dir)
    shutil.copytree(model_dir, out, ignore=shutil.ignore_patterns("processor_config.json", "checkpoint-*"))
    processor.image_processor.save_pretrained(out)
    processor.video_processor.save_pretrained(out)
    (out / "processor_config.json").write_text(json.dumps({"image_seq_len": processor.image_seq_len,
                                                           "processor_class": "SmolVLMProcessor"}))
    return out


def answers_a_video(model_dir, clip, capsys):
    import infer

    loaded = AutoProcessor.from_pretrained(model_dir).video_processor
    infer.main(["--model", str(model_dir), "--video", str(clip), "--question", "Colour?", "--max-new-tokens", "2"])
    assert "error" not in capsys.readouterr().err.lower()
    return loaded.fps, loaded.num_frames


@pytest.mark.parametrize("sampling", [False, True], ids=["no-sampling", "saved-sampling"])
def test_a_source_saved_by_transformers_trains_checkpoints_resumes_and_answers(
        tmp_path, monkeypatch, clips, tiny_smolvlm_dir, tiny_qwen_dir, capsys, sampling):
    """Done-when of issue 24: a source in transformers 5's one-file layout (without video sampling settings:
    the whole chain; with them: the first run), a video row in the data given as a plain path; then that
    run's output as init_from, in its own layout and rewritten in the layout from before transformers 5."""
    import yaml

    import train

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    source = save_with_transformers(tiny_smolvlm_dir, tiny_qwen_dir, tmp_path / "source", sampling)
    assert not (source / "preprocessor_config.json").exists() and (source / "processor_config.json").is_file()
    turn = lambda q, a: [{"from": "human", "value": f"<video>\n{q}"}, {"from": "gpt", "value": a}]  # noqa: E731
    (tmp_path / "videos.json").write_text(json.dumps(
        [{"video": str(clips / "rgb.mp4"), "conversations": turn(f"Last colour {i}?", "blue")} for i in range(4)]
        + [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}]))
    monkeypatch.chdir(tmp_path)
    config = {"smolvlm_path": str(source), "qwen_path": str(tiny_qwen_dir), "train_data": ["videos.json"],
              "test_size": 1, "max_steps": 2, "save_steps": 2, "per_device_train_batch_size": 2, "report_to": "none",
              "use_cpu": True, "seed": 0, "demo_max_new_tokens": 0, "output_dir": str(tmp_path / "run")}

    def write(name, settings):
        (tmp_path / name).write_text(yaml.safe_dump(settings))
        return str(tmp_path / name)

    with pytest.raises(SystemExit) as checked:
        train.main([write("cfg.yaml", config), "--check_data", "true"])
    assert checked.value.code == 0
    assert "4 video rows: frames per video" in capsys.readouterr().out
    train.main([write("cfg.yaml", config)])
    assert (tmp_path / "run" / "checkpoint-2" / "processor_config.json").is_file()
    if not sampling:  # the rest reads the run's output, written alike in both cases
        train.main([write("cfg.yaml", {**config, "max_steps": 3})])  # resumes from checkpoint-2
    out = capsys.readouterr().out
    assert "demo: skipped (demo_max_new_tokens: 0)" in out
    assert answers_a_video(tmp_path / "run", clips / "rgb.mp4", capsys) == ((1, 64) if sampling else (2, 6))
    if sampling:
        return
    assert f"resuming from {tmp_path / 'run' / 'checkpoint-2'}" in out and "rank 0/1: 3 steps" in out
    old = save_in_the_separate_layout(tmp_path / "run", tmp_path / "old")
    for init_from in (tmp_path / "run", old):  # the graft as the next source, in either layout
        output_dir = tmp_path / f"from-{init_from.name}"
        train.main([write("next.yaml", {**config, "init_from": str(init_from), "smolvlm_path": "nowhere",
                                        "qwen_path": "nowhere", "max_steps": 1, "output_dir": str(output_dir)})])
        assert "rank 0/1: 1 steps" in capsys.readouterr().out
        assert answers_a_video(output_dir, clips / "rgb.mp4", capsys) == (2, 6)
