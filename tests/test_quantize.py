"""infer.py --quantize: bitsandbytes 4-bit/8-bit text model on the CPU, answering like the float model."""

import subprocess
import sys

import pytest
import torch
from PIL import Image

from qwen3_smvl import inference

from conftest import REPO

bnb = pytest.importorskip("bitsandbytes", reason="bitsandbytes is in requirements-deploy.txt")
QUANTIZED_LINEAR = {"4bit": bnb.nn.Linear4bit, "8bit": bnb.nn.Linear8bitLt}


@pytest.fixture(scope="module")
def image():
    return Image.new("RGB", (40, 30), "red")


@pytest.fixture(scope="module")
def float_model(stitched_dir):
    return inference.load_model(stitched_dir)


def first_token_logits(model, processor, image):
    prompt = inference.render_prompt(processor, inference.build_messages("What colour is it?"))
    inputs = processor(text=[prompt], images=[[image]], return_tensors="pt").to(model.device)
    with torch.no_grad():
        return model(**inputs).logits[0, -1].float()


@pytest.mark.parametrize("bits", ["4bit", "8bit"])
def test_quantized_text_model_answers_like_the_float_model(stitched_dir, float_model, image, bits):
    model, processor = inference.load_model(stitched_dir, quantize=bits)
    linears = [m for m in model.model.text_model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(isinstance(m, QUANTIZED_LINEAR[bits]) for m in linears)
    kept = [model.model.connector.modality_projection.proj, *model.model.vision_model.modules()]
    assert not any(isinstance(m, QUANTIZED_LINEAR[bits]) for m in kept)

    expected = first_token_logits(*float_model, image)
    logits = first_token_logits(model, processor, image)
    assert logits.argmax() == expected.argmax()
    torch.testing.assert_close(logits, expected, atol=0.1, rtol=0)
    assert inference.answer(model, processor, image, "What colour is it?", max_new_tokens=3) == \
        inference.answer(*float_model, image, "What colour is it?", max_new_tokens=3)


def test_cli_quantize_4bit_streams_an_answer(stitched_dir, tmp_path, image):
    path = tmp_path / "red.png"
    image.save(path)
    result = subprocess.run(
        [sys.executable, str(REPO / "infer.py"), "--model", str(stitched_dir), "--image", str(path),
         "--question", "What colour is it?", "--max-new-tokens", "3", "--quantize", "4bit"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    model, processor = inference.load_model(stitched_dir, quantize="4bit")
    reply = inference.answer(model, processor, image, "What colour is it?", max_new_tokens=3)
    assert reply and result.stdout == reply + "\n"
