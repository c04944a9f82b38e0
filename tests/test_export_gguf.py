"""export_gguf.py: the two GGUFs read back with the `gguf` package hold the model's weights and a
vocabulary in which llama.cpp's idefics3 image markup finds the processor's marker ids.

Needs llama.cpp's converter (`bash get_llama_cpp.sh`, or LLAMA_CPP_DIR); skipped without it."""

import contextlib
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

import export_gguf
from conftest import ASSETS
from export_gguf import ExportError

gguf = pytest.importorskip("gguf", reason="the gguf package is in requirements-deploy.txt")
# llama.cpp's converter knows tokenizers by a hash of their pre-tokenizer's output: the tests' stand-in
# tokenizer is not among them, the real Qwen3 one is.
HAS_REAL_QWEN_TOKENIZER = (ASSETS / "qwen3-0.6b" / "vocab.json").is_file()


@pytest.fixture(scope="session")
def llama_cpp_converter():
    try:
        return export_gguf.llama_cpp_tools(None, None)[0]
    except ExportError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="session")
def f16_cli_run(stitched_dir, llama_cpp_converter, tmp_path_factory):
    """`python export_gguf.py --quant F16` on the tiny stitched model: (output directory, what it printed)."""
    if not HAS_REAL_QWEN_TOKENIZER:
        pytest.skip("llama.cpp's converter needs the real Qwen3 tokenizer (../shared/assets/qwen3-0.6b)")
    out = tmp_path_factory.mktemp("gguf")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        export_gguf.main(["--model", str(stitched_dir), "--out", str(out), "--quant", "F16"])
    return out, printed.getvalue()


@pytest.fixture(scope="session")
def f16_export(f16_cli_run):
    """(text GGUF, mmproj GGUF) of the tiny stitched model, exported with --quant F16."""
    out, _ = f16_cli_run
    return out / "text-F16.gguf", out / "mmproj-F16.gguf"


@pytest.fixture(scope="session")
def text_gguf(f16_export):
    """The exported text GGUF, parsed once (a 151k-token vocabulary takes seconds to read)."""
    return gguf.GGUFReader(f16_export[0])


def gguf_tensors(reader):
    """{name: float32 array in PyTorch's layout} of a GGUF file, dequantised."""
    return {t.name: gguf.quants.dequantize(t.data, t.tensor_type).reshape(t.data.shape[:-1] + (-1,))
            for t in reader.tensors}


def field(reader, key):
    return reader.fields[key].contents()


def as_stored(tensor, array):
    """`tensor` rounded to the precision `array` was stored in (F16 matrices, F32 norms)."""
    dtype = torch.float16 if array.ndim == 2 else torch.float32
    return tensor.detach().to(dtype).float().numpy()


def test_cli_ends_with_the_files_their_sizes_and_the_command_to_run_them(f16_cli_run):
    out, printed = f16_cli_run
    summary, next_label, command = printed.splitlines()[-3:]
    text, mmproj = out / "text-F16.gguf", out / "mmproj-F16.gguf"
    mib = lambda path: f"{path.stat().st_size / 2**20:.1f} MiB"
    assert re.fullmatch(rf"export: text-F16\.gguf \(qwen3, F16, {mib(text)}\) \+ mmproj-F16\.gguf \(idefics3, F16, "
                        rf"{mib(mmproj)}\), image markers checked, \d+ s -> {re.escape(str(out))}", summary), summary
    assert next_label == "next:" and command.strip().startswith(f"llama-mtmd-cli -m {text} --mmproj {mmproj} ")


def test_text_gguf_is_qwen3_holding_the_models_text_weights(text_gguf, stitched):
    model, _ = stitched
    text_config = model.config.text_config
    reader = text_gguf
    assert field(reader, "general.architecture") == "qwen3"
    assert field(reader, "qwen3.block_count") == text_config.num_hidden_layers
    assert field(reader, "qwen3.embedding_length") == text_config.hidden_size

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN3, text_config.num_hidden_layers)
    hf_weights = {names.get_name(name, try_suffixes=(".weight",)): weight
                  for name, weight in model.model.text_model.state_dict().items()}
    exported = gguf_tensors(text_gguf)
    # Qwen3-0.6B ties its LM head to the embeddings: llama.cpp then reuses token_embd.
    assert set(exported) == set(hf_weights)
    for name, array in exported.items():
        np.testing.assert_array_equal(array, as_stored(hf_weights[name], array), err_msg=name)


def test_mmproj_is_idefics3_holding_vision_tower_and_connector(f16_export, stitched):
    model, _ = stitched
    reader = gguf.GGUFReader(f16_export[1])
    assert field(reader, "clip.projector_type") == "idefics3"
    assert field(reader, "clip.vision.projector.scale_factor") == model.config.scale_factor
    exported = gguf_tensors(reader)
    blocks = {name.split(".")[2] for name in exported if name.startswith("v.blk.")}
    assert len(blocks) == model.config.vision_config.num_hidden_layers
    connector = model.model.connector.modality_projection.proj.weight
    np.testing.assert_array_equal(exported["mm.model.fc.weight"], as_stored(connector, exported["mm.model.fc.weight"]))
    patch = model.model.vision_model.embeddings.patch_embedding.weight
    np.testing.assert_array_equal(exported["v.patch_embd.weight"], patch.detach().numpy())  # kept in F32


def gguf_vocabulary(reader):
    return field(reader, "tokenizer.ggml.tokens"), field(reader, "tokenizer.ggml.token_type")


def test_llama_cpp_marker_strings_name_the_processors_marker_ids(text_gguf, stitched):
    tokenizer = stitched[1].tokenizer
    tokens, types = gguf_vocabulary(text_gguf)
    for attribute, marker in export_gguf.LLAMA_CPP_MARKERS.items():
        marker_id = tokenizer.convert_tokens_to_ids(getattr(tokenizer, attribute))
        # llama.cpp takes the first entry spelled so; it must be the one the model trained with.
        assert tokens.index(marker) == marker_id
        assert types[marker_id] == gguf.TokenType.CONTROL
    assert tokens[tokenizer.convert_tokens_to_ids(tokenizer.image_token)] == tokenizer.image_token


def llama_cpp_image_markup(tokens, tokenizer, rows, cols, features):
    """The ids llama.cpp's mtmd builds around an idefics3 image of rows x cols tiles plus the global
    view (tools/mtmd/mtmd.cpp): each tile after "<fake_token_around_image><row_R_col_C>", "\\n"
    between rows, then "\\n\\n" <fake_token_around_image> <global-img>, global view, <fake_token_around_image>.
    Single-token strings are looked up in the GGUF vocabulary as llama.cpp does; the row/col text
    is ordinary BPE text, tokenized here with the same vocabulary."""
    lookup = lambda text: export_gguf.llama_cpp_lookup(tokens, text)
    image = [tokenizer.convert_tokens_to_ids(tokenizer.image_token)] * features
    ids = []
    for row in range(1, rows + 1):
        for col in range(1, cols + 1):
            ids += [lookup("<fake_token_around_image>")]
            ids += tokenizer.encode(f"<row_{row}_col_{col}>", add_special_tokens=False) + image
        if row < rows:
            ids.append(lookup("\n"))
    fake = lookup("<fake_token_around_image>")
    return ids + [lookup("\n\n"), fake, lookup("<global-img>")] + image + [fake]


def test_llama_cpp_image_markup_tokenizes_to_the_processors_ids(text_gguf, stitched_dir):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(stitched_dir)
    tile = processor.image_processor.max_image_size["longest_edge"]
    # A 2 x 3 tile image, as SmolVLM's processor splits it (llama.cpp splits the same way).
    processor.image_processor.do_image_splitting = True
    processor.image_processor.size = {"longest_edge": 3 * tile}
    image = Image.new("RGB", (3 * tile, 2 * tile), "red")
    ids = processor(text=[processor.image_token], images=[[image]])["input_ids"][0]
    tokens, _ = gguf_vocabulary(text_gguf)
    assert ids == llama_cpp_image_markup(tokens, processor.tokenizer, 2, 3, processor.image_seq_len)


def test_export_refuses_a_model_that_is_not_a_stitched_qwen3(tiny_smolvlm_dir, llama_cpp_converter, tmp_path):
    with pytest.raises(ExportError, match="'llama' text model"):
        export_gguf.export(tiny_smolvlm_dir, tmp_path, quant="F16")
    assert not any(tmp_path.iterdir())


def test_missing_llama_cpp_says_how_to_get_it(stitched_dir, tmp_path):
    with pytest.raises(ExportError, match="get_llama_cpp.sh"):
        export_gguf.export(stitched_dir, tmp_path / "out", quant="F16", llama_cpp=tmp_path / "nowhere")
