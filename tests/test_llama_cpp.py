"""Opt-in (`pytest -m llamacpp`): an unmodified llama.cpp runs export_gguf.py's GGUFs and answers as
transformers does. Needs llama.cpp built: `bash get_llama_cpp.sh --build` (or LLAMA_CPP_DIR)."""

import subprocess

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from qwen3_smvl import inference

import export_gguf
from conftest import ASSETS
from export_gguf import ExportError

# llama.cpp's converter knows tokenizers by a hash of their pre-tokenizer's output: the tests' stand-in
# tokenizer is not among them, the real Qwen3 one is.
needs_real_qwen_tokenizer = pytest.mark.skipif(
    not (ASSETS / "qwen3-0.6b" / "vocab.json").is_file(),
    reason="llama.cpp's converter needs the real Qwen3 tokenizer (../shared/assets/qwen3-0.6b)",
)
pytestmark = [pytest.mark.llamacpp, needs_real_qwen_tokenizer]
QUESTION = "What colour is it?"
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def mtmd_cli():
    try:
        quantizer = export_gguf.llama_cpp_tools(None, "Q4_K_M")[1]
    except ExportError as error:
        pytest.skip(str(error))
    cli = quantizer.with_name("llama-mtmd-cli")
    if not cli.is_file():
        pytest.skip(f"{cli} is not built (bash get_llama_cpp.sh --build)")
    return cli


@pytest.fixture(scope="module")
def sharp_split_dir(stitched_dir, tmp_path_factory):
    """The tiny stitched model made to answer something image-dependent, with a processor that splits
    images into tiles. A random tiny Qwen3's logits are nearly flat (its greedy answer is "\\n" over
    and over); scaling the text model's matrices sharpens them, so every image feature and prompt
    token steers the answer. Tiles: llama.cpp always adds the global view to them, as SmolVLM's
    processor does for any image bigger than one tile (README, "One-tile images")."""
    out = tmp_path_factory.mktemp("sharp_split")
    model, processor = inference.load_model(stitched_dir)
    with torch.no_grad():
        for weight in model.model.text_model.parameters():
            if weight.ndim == 2:
                weight.mul_(25)
    model.save_pretrained(out)
    tile = processor.image_processor.max_image_size["longest_edge"]
    processor.image_processor.do_image_splitting = True
    processor.image_processor.size = {"longest_edge": 2 * tile}
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def quadrants(sharp_split_dir, tmp_path_factory):
    """A 2 x 2-tile image of four flat colours: resizing it to the global view differs between
    PIL and llama.cpp only along the colour edges."""
    tile = AutoProcessor.from_pretrained(sharp_split_dir).image_processor.max_image_size["longest_edge"]
    image = Image.new("RGB", (2 * tile, 2 * tile))
    for index, colour in enumerate(["red", "green", "blue", "yellow"]):
        image.paste(Image.new("RGB", (tile, tile), colour), ((index % 2) * tile, (index // 2) * tile))
    path = tmp_path_factory.mktemp("image") / "quadrants.png"
    image.save(path)
    return path


@pytest.fixture(scope="module")
def transformers_answer(sharp_split_dir, quadrants):
    # llama-mtmd-cli renders the chat without Qwen3's empty think block: infer.py's --think prompt.
    model, processor = inference.load_model(sharp_split_dir)
    return lambda tokens: inference.answer(model, processor, inference.load_image(quadrants), QUESTION, think=True,
                                       max_new_tokens=tokens)


def llama_cpp_answer(cli, text_gguf, mmproj_gguf, image):
    command = [cli, "-m", text_gguf, "--mmproj", mmproj_gguf, "--image", image, "-p", QUESTION,
               "-n", NEW_TOKENS, "--temp", "0", "-t", "2"]
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, errors="replace", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gguf")


def test_f16_export_answers_exactly_as_transformers(mtmd_cli, sharp_split_dir, quadrants, transformers_answer, export_dir):
    text, mmproj = export_gguf.export(sharp_split_dir, export_dir, quant="F16")
    assert llama_cpp_answer(mtmd_cli, text, mmproj, quadrants) == transformers_answer(NEW_TOKENS).strip()


def test_q8_0_export_starts_its_answer_as_transformers(mtmd_cli, sharp_split_dir, quadrants, transformers_answer, export_dir):
    text, mmproj = export_gguf.export(sharp_split_dir, export_dir, quant="Q8_0")
    assert llama_cpp_answer(mtmd_cli, text, mmproj, quadrants).startswith(transformers_answer(3).strip())


def test_q4_k_m_export_is_quantized_by_llama_quantize_and_answers(mtmd_cli, sharp_split_dir, quadrants, export_dir):
    gguf = pytest.importorskip("gguf")
    text, mmproj = export_gguf.export(sharp_split_dir, export_dir, quant="Q4_K_M")
    file_type = gguf.GGUFReader(text).fields["general.file_type"].contents()
    assert file_type == gguf.LlamaFileType.MOSTLY_Q4_K_M
    assert gguf.GGUFReader(mmproj).fields["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_Q8_0
    assert len(llama_cpp_answer(mtmd_cli, text, mmproj, quadrants)) > 0
