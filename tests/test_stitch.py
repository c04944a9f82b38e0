"""The graft: a standard, reloadable checkpoint whose ids agree everywhere and whose images matter."""

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    PreTrainedTokenizerFast,
    pipeline,
)

from qwen3_smvl import graft, inference
from qwen3_smvl.training import trainable

from conftest import ASSETS, REPO


def ask(processor, image, question="What colour is it?"):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, enable_thinking=False)
    return processor(text=[prompt], images=[[image]], return_tensors="pt")


def solid(colour, size=48):
    return Image.new("RGB", (size, size), colour)


def test_saved_graft_reloads_with_plain_transformers(stitched_dir, tiny_smolvlm_dir, tiny_qwen_dir):
    model, processor = graft.stitch(tiny_smolvlm_dir, tiny_qwen_dir)
    reloaded = AutoModelForImageTextToText.from_pretrained(stitched_dir)
    reloaded_processor = AutoProcessor.from_pretrained(stitched_dir)
    graft.verify_graft(reloaded, reloaded_processor)

    inputs = ask(reloaded_processor, solid("red"))
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, reloaded(**inputs).logits)
    assert reloaded_processor.image_token == "<|image_pad|>"
    assert reloaded_processor.fake_image_token == "<|vision_start|>"
    assert reloaded_processor.global_image_token == "<|vision_pad|>"
    assert reloaded_processor.end_of_utterance_token == "<|im_end|>"
    assert reloaded.config.image_token_id == reloaded_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert reloaded.config.text_config.model_type == "qwen3"


def test_backbones_are_copied_bit_for_bit(stitched, tiny_smolvlm_dir, tiny_qwen_dir):
    model, _ = stitched
    qwen = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir)
    smol = AutoModelForImageTextToText.from_pretrained(tiny_smolvlm_dir)
    pairs = [
        (model.model.vision_model, smol.model.vision_model),
        (model.model.text_model, qwen.model),
        (model.lm_head, qwen.lm_head),
    ]
    for grafted, source in pairs:
        grafted_state, source_state = grafted.state_dict(), source.state_dict()
        assert grafted_state.keys() == source_state.keys()
        for name, tensor in source_state.items():
            assert torch.equal(grafted_state[name], tensor), name
    assert model.generation_config.eos_token_id == qwen.generation_config.eos_token_id


def test_graft_holds_each_weight_once(tiny_smolvlm_dir, tiny_qwen_dir):
    model, _ = graft.stitch(tiny_smolvlm_dir, tiny_qwen_dir)
    assert model.lm_head.weight is model.get_input_embeddings().weight  # Qwen3 ties them
    assert model.model.text_model.config is model.config.text_config
    assert model.model.vision_model.config is model.config.vision_config


def test_changing_only_the_image_changes_the_output(stitched):
    model, processor = stitched
    red, blue = ask(processor, solid("red")), ask(processor, solid("blue"))
    assert torch.equal(red["input_ids"], blue["input_ids"])
    image_id = model.config.image_token_id
    assert (red["input_ids"] == image_id).sum() == processor.image_seq_len
    with torch.no_grad():
        red_logits, blue_logits = model(**red).logits[0, -1], model(**blue).logits[0, -1]
    assert not torch.allclose(red_logits, blue_logits)


def test_pipeline_answers_as_infer_does(stitched_dir):
    """transformers' own pipeline on the saved directory gives infer.py's greedy answer (thinking on,
    the chat template's default)."""
    answer = pipeline("image-text-to-text", model=str(stitched_dir))(
        text=[{"role": "user", "content": [{"type": "image", "image": solid("green")}, {"type": "text", "text": "Colour?"}]}],
        max_new_tokens=3,
    )
    reply = answer[0]["generated_text"][-1]
    model, processor = inference.load_model(stitched_dir, device="cpu")
    assert reply["role"] == "assistant"
    assert reply["content"] == inference.answer(model, processor, solid("green"), "Colour?", think=True, max_new_tokens=3)


def test_verify_catches_an_unpatched_nested_id(stitched):
    model, processor = stitched
    model.model.image_token_id = 0  # the original recipe's silent bug: one nested copy left behind
    with pytest.raises(graft.GraftError, match="model.model.image_token_id"):
        graft.verify_graft(model, processor)


def test_verify_catches_a_vocab_mismatch(stitched):
    model, processor = stitched
    model.lm_head = torch.nn.Linear(model.lm_head.in_features, 10, bias=False)
    with pytest.raises(graft.GraftError, match="lm_head rows"):
        graft.verify_graft(model, processor)


def test_real_geometry_image_block(real_geometry_smolvlm_dir, tiny_qwen_dir):
    """SmolVLM2's own geometry: 512 px tiles of 64 features plus a global view."""
    model, processor = graft.stitch(real_geometry_smolvlm_dir, tiny_qwen_dir)
    photo = ASSETS / "images" / "dog.png"
    image = Image.open(photo).convert("RGB") if photo.is_file() else Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    )
    inputs = ask(processor, image)
    tiles = inputs["pixel_values"].shape[1]
    assert processor.image_seq_len == 64
    assert (inputs["input_ids"] == model.config.image_token_id).sum() == 64 * tiles
    assert 800 <= 64 * tiles <= 1400
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


def test_cli_writes_a_loadable_directory(tmp_path, tiny_smolvlm_dir, tiny_qwen_dir):
    out = tmp_path / "stitched"
    result = subprocess.run(
        [sys.executable, str(REPO / "stitch.py"), "--smolvlm", str(tiny_smolvlm_dir), "--qwen", str(tiny_qwen_dir), "--out", str(out)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    model = AutoModelForImageTextToText.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    with torch.no_grad():
        assert torch.isfinite(model(**ask(processor, solid("red"))).logits).all()

    # The summary line states what the saved directory holds, and the next line what to run on it.
    summary, *next_lines = result.stdout.splitlines()[-4:]
    found = re.fullmatch(r"stitched: (\S+) text \+ (\S+) vision, connector (\d+)->(\d+) fresh, (\S+) params "
                         r"\((\S+) trainable\), verified, \d+ s -> (.+)", summary)
    assert found, summary
    projection = model.model.connector.modality_projection.proj
    assert found.group(1, 2, 7) == (tiny_qwen_dir.name, tiny_smolvlm_dir.name, str(out))
    assert (int(found[3]), int(found[4])) == (projection.in_features, projection.out_features)
    assert counted(found[5]) == pytest.approx(sum(p.numel() for p in model.parameters()), rel=5e-3)
    assert counted(found[6]) == pytest.approx(projection.weight.numel(), rel=5e-3)  # the connector trains first
    assert next_lines[0] == "next:" and f"--init_from {out}" in next_lines[1]


def counted(text):
    """A count as short_count writes it (12.6M) back as a number."""
    return float(text.rstrip("KMB")) * {"K": 1e3, "M": 1e6, "B": 1e9}.get(text[-1], 1)


@pytest.mark.skipif(not (ASSETS / "qwen3-0.6b" / "config.json").is_file(), reason="needs ../shared/assets")
def test_dry_run_on_real_configs_prints_the_original_figure():
    report = graft.dry_run(ASSETS / "smolvlm2-256m-video-instruct", ASSETS / "qwen3-0.6b")
    assert "trainable params: 12.00M || all params: 662.87M || trainable %: 1.81" in report
    assert "12288 -> 1024" in report
    assert "<|image_pad|>    id 151655" in report


def test_dry_run_needs_no_weights(tmp_path, tiny_smolvlm_dir, tiny_qwen_dir):
    smol, qwen = tmp_path / "smol", tmp_path / "qwen"
    shutil.copytree(tiny_smolvlm_dir, smol, ignore=shutil.ignore_patterns("*.safetensors"))
    shutil.copytree(tiny_qwen_dir, qwen, ignore=shutil.ignore_patterns("*.safetensors"))
    report = graft.dry_run(smol, qwen)
    model, _ = graft.stitch(tiny_smolvlm_dir, tiny_qwen_dir)
    trainable.set_trainable(model)
    assert report.splitlines()[-1] == graft.trainable_summary(model)
    with pytest.raises(graft.GraftError, match="has no weights"):
        graft.stitch(smol, qwen)


def test_missing_directory_is_named(tmp_path, tiny_qwen_dir):
    with pytest.raises(graft.GraftError, match="nowhere.*no config.json"):
        graft.stitch(tmp_path / "nowhere", tiny_qwen_dir)


def test_text_model_must_be_a_causal_lm(tiny_smolvlm_dir):
    with pytest.raises(graft.GraftError, match="not a causal language model"):
        graft.stitch(tiny_smolvlm_dir, tiny_smolvlm_dir)


def test_tokenizer_without_vision_tokens_is_refused(tmp_path, tiny_smolvlm_dir, tiny_qwen_dir):
    qwen = tmp_path / "qwen"
    shutil.copytree(tiny_qwen_dir, qwen, ignore=shutil.ignore_patterns("tokenizer*", "vocab.json", "merges.txt"))
    from tokenizers import Tokenizer, models, pre_tokenizers

    plain = Tokenizer(models.BPE(vocab={chr(c): i for i, c in enumerate(range(32, 127))}, merges=[]))
    plain.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    PreTrainedTokenizerFast(tokenizer_object=plain, eos_token="~").save_pretrained(qwen)
    with pytest.raises(graft.GraftError, match=r"lacks Qwen's vision tokens"):
        graft.stitch(tiny_smolvlm_dir, qwen)


def test_cli_reports_errors_in_one_line(tmp_path, tiny_qwen_dir):
    result = subprocess.run(
        [sys.executable, str(REPO / "stitch.py"), "--smolvlm", str(tmp_path / "missing"), "--qwen", str(tiny_qwen_dir), "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "stitch.py: SmolVLM2 checkpoint not found" in result.stderr
