"""Export a stitched (or trained) Qwen3-SmVL checkpoint for llama.cpp: a text GGUF (architecture
qwen3) and an mmproj GGUF (projector idefics3: vision tower + connector).

    python export_gguf.py --model DIR --out DIR [--quant Q4_K_M|Q8_0|F16|F32] [--llama-cpp DIR]
    llama-mtmd-cli -m DIR/text-Q4_K_M.gguf --mmproj DIR/mmproj-Q8_0.gguf --image X -p "question"

llama.cpp's own converter (convert_hf_to_gguf.py) and quantizer (llama-quantize) do the work; they
are found in --llama-cpp DIR or $LLAMA_CPP_DIR (`bash get_llama_cpp.sh` fetches them).
The converter reads the text model as a plain Qwen3 folder (`model.text_model.*` -> `model.*`).
llama.cpp's idefics3 image markup looks SmolVLM's marker strings up as single tokens; our graft
keeps those markers on Qwen's reserved vision tokens, so the exported vocabulary names those ids
with SmolVLM's strings. The ids, and so the embeddings the model trained with, stay the same.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

from qwen3_smvl import model_card

# The strings llama.cpp's mtmd looks up for PROJECTOR_TYPE_IDEFICS3 (tools/mtmd/mtmd.cpp), by the
# tokenizer attribute SmolVLM's processor reads the same marker from.
LLAMA_CPP_MARKERS = {"fake_image_token": "<fake_token_around_image>", "global_image_token": "<global-img>"}
# Plain-text pieces of the same markup, looked up as single tokens too: before the global view, end of a tile row.
LLAMA_CPP_TEXT_PIECES = ("\n\n", "\n")
# --quant -> (converter --outtype for the text model, for the mmproj, llama-quantize type or None)
QUANTS = {
    "F32": ("f32", "f32", None),
    "F16": ("f16", "f16", None),
    "Q8_0": ("q8_0", "q8_0", None),
    "Q4_K_M": ("f16", "q8_0", "Q4_K_M"),
}
# Where get_llama_cpp.sh puts llama.cpp's source (and build) when LLAMA_CPP_DIR is not set.
DEFAULT_LLAMA_CPP = Path(__file__).resolve().parent / ".cache" / "llama.cpp"
GET_LLAMA_CPP = "run `bash get_llama_cpp.sh` (llama.cpp's source from PyPI's llama-cpp-python sdist)"


class ExportError(ValueError):
    """The checkpoint or the llama.cpp tools cannot make the export."""


def llama_cpp_tools(root, quantize_type):
    """(converter script, llama-quantize binary or None) from llama.cpp's source/build directory."""
    root = root or os.environ.get("LLAMA_CPP_DIR") or DEFAULT_LLAMA_CPP
    converter = Path(root) / "convert_hf_to_gguf.py"
    if not converter.is_file():
        raise ExportError(f"llama.cpp's converter not found: {converter} is missing; pass --llama-cpp DIR, "
                          f"set LLAMA_CPP_DIR, or {GET_LLAMA_CPP}")
    if quantize_type is None:
        return converter, None
    quantizer = Path(root) / "build" / "bin" / "llama-quantize"
    if not quantizer.is_file():
        quantizer = shutil.which("llama-quantize")
    if quantizer is None:
        raise ExportError(
            f"--quant {quantize_type} needs llama-quantize, found neither in {root}/build/bin nor on PATH "
            "(`bash get_llama_cpp.sh --build` builds it; F16/Q8_0/F32 need only the converter)"
        )
    return converter, Path(quantizer)


def check_model(model_dir):
    """Refuse anything but a SmolVLM checkpoint with a Qwen3 text model, before any work."""
    if not (Path(model_dir) / "config.json").is_file():
        raise ExportError(f"{model_dir} is not a model directory (no config.json)")
    config = AutoConfig.from_pretrained(model_dir)
    text_type = getattr(getattr(config, "text_config", None), "model_type", None)
    if config.model_type != "smolvlm" or text_type != "qwen3":
        raise ExportError(
            f"{model_dir} is a '{config.model_type}' model with a '{text_type}' text model; "
            "expected a stitched SmolVLM + Qwen3 checkpoint (stitch.py / train.py output)"
        )


def renamed_strings(value, renames):
    """`value` (parsed JSON) with every string equal to a key of `renames` replaced by its value."""
    if isinstance(value, str):
        return renames.get(value, value)
    if isinstance(value, list):
        return [renamed_strings(item, renames) for item in value]
    if isinstance(value, dict):
        return {key: renamed_strings(item, renames) for key, item in value.items()}
    return value


def write_qwen3_folder(model_dir, out_dir):
    """The text model as a plain Qwen3 checkpoint that convert_hf_to_gguf.py reads as `qwen3`,
    its tokenizer naming our marker ids with the strings llama.cpp looks up."""
    vlm = AutoModelForImageTextToText.from_pretrained(model_dir, dtype="auto")
    with torch.device("meta"):
        text = AutoModelForCausalLM.from_config(vlm.config.text_config)
    text.model, text.lm_head = vlm.model.text_model, vlm.lm_head
    text.generation_config = vlm.generation_config
    text.save_pretrained(out_dir)
    tokenizer = AutoProcessor.from_pretrained(model_dir).tokenizer
    tokenizer.save_pretrained(out_dir)
    renames = {getattr(tokenizer, attribute): marker for attribute, marker in LLAMA_CPP_MARKERS.items()}
    for name in ("tokenizer.json", "tokenizer_config.json"):
        path = Path(out_dir) / name
        path.write_text(json.dumps(renamed_strings(json.loads(path.read_text()), renames), ensure_ascii=False))


def run_tool(command, what):
    """Runs a llama.cpp tool with its own output (per-tensor lines, progress bar) going to ours."""
    result = subprocess.run([str(part) for part in command])
    if result.returncode != 0:
        raise ExportError(f"{what} failed (exit {result.returncode}); its output is above")


def byte_level(text):
    """`text` as a byte-level BPE vocabulary spells it (GPT-2's byte-to-unicode map, as Qwen's)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = bytes_to_unicode()
    return "".join(alphabet[byte] for byte in text.encode())


def llama_cpp_lookup(tokens, text):
    """The id llama.cpp's mtmd `lookup_token` finds for `text` in a GGUF vocabulary: the first
    whose piece equals it (control tokens are their own piece; others are byte-level spelled)."""
    for spelling in (text, byte_level(text)):
        if spelling in tokens:
            return tokens.index(spelling)
    return None


def marker_mismatches(text_gguf, tokenizer):
    """Where the ids llama.cpp finds for its idefics3 markup differ from the processor's."""
    from gguf import GGUFReader

    field = GGUFReader(text_gguf).fields["tokenizer.ggml.tokens"]
    tokens = [bytes(field.parts[index]).decode("utf-8") for index in field.data]
    wanted = {marker: [tokenizer.convert_tokens_to_ids(getattr(tokenizer, attribute))]
              for attribute, marker in LLAMA_CPP_MARKERS.items()}
    wanted |= {piece: tokenizer.encode(piece, add_special_tokens=False) for piece in LLAMA_CPP_TEXT_PIECES}
    problems = []
    for text, ids in wanted.items():
        found = llama_cpp_lookup(tokens, text)
        if [found] != ids:
            problems.append(f"{text!r}: llama.cpp finds id {found}, the processor uses {ids}")
    return problems


def export(model_dir, out_dir, quant="Q4_K_M", llama_cpp=None):
    """Write text-<quant>.gguf and mmproj-<type>.gguf into out_dir; returns their paths."""
    text_type, mmproj_type, quantize_type = QUANTS[quant]
    converter, quantizer = llama_cpp_tools(llama_cpp, quantize_type)
    check_model(model_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text_gguf = out_dir / f"text-{quant}.gguf"
    mmproj_gguf = out_dir / f"mmproj-{mmproj_type.upper()}.gguf"
    with tempfile.TemporaryDirectory(dir=out_dir) as scratch:
        qwen_dir = Path(scratch) / "qwen3"
        write_qwen3_folder(model_dir, qwen_dir)
        converted = Path(scratch) / "text.gguf" if quantize_type else text_gguf
        run_tool([sys.executable, converter, qwen_dir, "--outfile", converted, "--outtype", text_type], "text conversion")
        if quantize_type:
            run_tool([quantizer, converted, text_gguf, quantize_type], "llama-quantize")
    run_tool([sys.executable, converter, model_dir, "--mmproj", "--outfile", mmproj_gguf, "--outtype", mmproj_type],
             "mmproj conversion")
    problems = marker_mismatches(text_gguf, AutoProcessor.from_pretrained(model_dir).tokenizer)
    if problems:
        raise ExportError(f"{text_gguf}: llama.cpp's image markup would not match the processor's:\n  - "
                          + "\n  - ".join(problems))
    return text_gguf, mmproj_gguf


def summary_line(quant, paths, seconds, out_dir):
    """The export's one line: each file with what llama.cpp reads it as, its type and size."""
    kinds = (("qwen3", quant), ("idefics3", QUANTS[quant][1].upper()))
    files = " + ".join(f"{path.name} ({kind}, {type_}, {path.stat().st_size / 2**20:.1f} MiB)"
                       for path, (kind, type_) in zip(paths, kinds))
    return f"export: {files}, image markers checked, {seconds:.0f} s -> {out_dir}"


def write_cards(model_dir, out_dir):
    """The model's card lists the GGUF files when they went into its directory; a folder elsewhere
    gets its own card (a model trained here only: others have no run_summary.json)."""
    model, out = Path(model_dir).resolve(), Path(out_dir).resolve()
    inside = out == model or model in out.parents
    return model_card.refresh_card(model_dir) if inside else model_card.refresh_card(model_dir, out_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="stitched or trained checkpoint directory")
    parser.add_argument("--out", required=True, help="directory for the two GGUF files")
    parser.add_argument("--quant", choices=QUANTS, default="Q4_K_M",
                        help="text weights' type (the mmproj is Q8_0 for Q4_K_M, else the same)")
    parser.add_argument("--llama-cpp", help="llama.cpp source directory (default: $LLAMA_CPP_DIR, else .cache/llama.cpp)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        text_gguf, mmproj_gguf = export(args.model, args.out, args.quant, args.llama_cpp)
    except ExportError as error:
        raise SystemExit(f"export_gguf.py: {error}")
    print(summary_line(args.quant, (text_gguf, mmproj_gguf), time.perf_counter() - started, args.out))
    card = write_cards(args.model, args.out)
    if card:
        print(f"model card: {card} (lists the GGUF files)")
    print(f"next:\n  llama-mtmd-cli -m {text_gguf} --mmproj {mmproj_gguf} --image PATH -p \"...\"")


if __name__ == "__main__":
    main()
