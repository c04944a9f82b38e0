"""FLOPs and bytes saved for backward per training sample at the real model size (a benchmark that
prints, not a test).

    python throughput/measure_flops.py [--smolvlm DIR --qwen DIR]

The grafted model is built from the real configs (../shared/assets, or the downloaded checkpoints'
configs) with random weights, frozen as the recipe freezes it (only the connector trains), in float32
on the CPU. A real-size forward + backward of all 28 + 12 layers takes minutes per recipe on a small
CPU, so the model is built with ONE text layer and ONE vision layer and the counts are scaled by layer
count: torch.utils.flop_counter attributes every FLOP, backward included, to the module that ran it,
and each layer of a stack does the same work, so

    FLOPs = counted total + (text layers - 1) x FLOPs of text layer 0 + (vision layers - 1) x vision layer 0

and likewise for the bytes the autograd graph keeps for backward (torch.autograd.graph.saved_tensors_hooks,
each storage counted once, parameters not counted: a machine-independent memory figure). Everything
else (embeddings, connector, LM head, loss) runs at full size.

The sample is cocoqa-like: a 640x480 photo, a short question, a one-word answer. Recipes: the original
(2K padding, LM head on every position), today's default (`longest`, LM head on supervised positions),
packing 8 such samples into one 8K row (with plain SDPA the block-diagonal mask is dense, so attention
runs over the whole row; train.py's per-sample SDPA, like flash-attention's varlen kernel, attends
within each sample only), and the default at image_longest_edge 1536/1024/512.
Attention is counted as torch counts its CUDA kernels: the full score matrix (a causal kernel that
skips the upper triangle does about half of that part).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_backward_flop, sdpa_flop
from torch.utils.module_tracker import ModuleTracker
from transformers import SmolVLMForConditionalGeneration

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qwen3_smvl import graft  # noqa: E402
from qwen3_smvl.data.collate import Collator  # noqa: E402
from qwen3_smvl.data.packing import PER_SAMPLE_SDPA, PackingCollator  # noqa: E402
from qwen3_smvl.data.the_cauldron import question_row  # noqa: E402
from qwen3_smvl.training import train_config, trainable  # noqa: E402

ASSETS = REPO.parent / "shared" / "assets"
QUESTIONS = ["What is the color of the dog?", "How many dogs are there?", "What are the dogs lying on?",
             "What animal is shown?", "Where are the dogs?", "What color is the collar?",
             "Is this photo taken outdoors?", "What is the dog doing?"]
ANSWERS = ["brown", "three", "grass", "dogs", "field", "red", "yes", "lying"]


# torch counts SDPA's CUDA kernels but not the CPU one, so attention would be missing from every row.
# Same formula as the CUDA kernels: the whole score matrix, causal and masked blocks included.
register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu, get_raw=True)(sdpa_flop)
register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward, get_raw=True)(sdpa_backward_flop)


def default_source(asset, download):
    return str(ASSETS / asset) if (ASSETS / asset / "config.json").is_file() else download


def build(smolvlm_path, qwen_path):
    """The graft with one text and one vision layer; returns (model, processor, real layer counts)."""
    smol_config, qwen_config = graft.load_source_configs(smolvlm_path, qwen_path)
    layers = {"text": qwen_config.num_hidden_layers, "vision": smol_config.vision_config.num_hidden_layers}
    qwen_config.num_hidden_layers = 1
    smol_config.vision_config.num_hidden_layers = 1
    tokenizer = graft.load_tokenizer(qwen_path)
    config = graft.build_config(smol_config, qwen_config, tokenizer)
    model = SmolVLMForConditionalGeneration(config).float()
    model.set_attn_implementation("sdpa")
    trainable.prepare_trainable(model, train_config.ModelArguments(), trainable.Trainable({"connector": 1e-4}))  # the connector only
    return model, graft.build_processor(smolvlm_path, tokenizer, config), layers


def rows(count):
    pixels = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    photo = Image.fromarray(pixels)
    return [question_row([photo], QUESTIONS[i % 8], ANSWERS[i % 8], "cocoqa") for i in range(count)]


class SavedBytes:
    """Bytes of the tensors autograd keeps for backward, split into text layer 0 and the rest."""

    def __init__(self, model):
        self.parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.seen, self.layer0, self.rest = set(), 0, 0
        self.tracker = ModuleTracker()

    def pack(self, tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.parameters and storage.data_ptr() not in self.seen:
            self.seen.add(storage.data_ptr())
            if any(name.endswith("text_model.layers.0") for name in self.tracker.parents):
                self.layer0 += storage.nbytes()
            else:
                self.rest += storage.nbytes()
        return tensor

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda tensor: tensor)


def measure(model, batch, layers):
    """(TFLOP, GB saved for backward) of one forward + backward, scaled to the real layer counts."""
    saved = SavedBytes(model)
    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter, saved.tracker, saved.hooks():
        model(**batch).loss.backward()
    per_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}

    def module(suffix):
        return next(count for name, count in per_module.items() if name.endswith(suffix))

    flops = (counter.get_total_flops() + (layers["text"] - 1) * module("text_model.layers.0")
             + (layers["vision"] - 1) * module("encoder.layers.0"))
    return flops / 1e12, (saved.rest + layers["text"] * saved.layer0) / 1e9


def recipes(processor):
    """name -> (collator, samples in the batch, image_longest_edge)."""
    return {
        "original: 2K padding, LM head on every position": (Collator(processor, padding="max_length"), 1, 2048),
        "default: longest, LM head on supervised positions": (
            Collator(processor, padding="longest", supervised_logits_only=True), 1, 2048),
        "packing: 8 samples in one 8K row, SDPA, dense mask": (
            PackingCollator(processor, supervised_logits_only=True), 8, 2048),
        "packing: 8 samples in one 8K row, per-sample SDPA": (
            PackingCollator(processor, supervised_logits_only=True, attn_implementation=PER_SAMPLE_SDPA), 8, 2048),
        **{f"default, image_longest_edge {edge}": (
            Collator(processor, padding="longest", supervised_logits_only=True), 1, edge) for edge in (1536, 1024, 512)},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smolvlm", default=default_source("smolvlm2-256m-video-instruct", graft.DEFAULT_SMOLVLM))
    parser.add_argument("--qwen", default=default_source("qwen3-0.6b", graft.DEFAULT_QWEN))
    args = parser.parse_args()
    model, processor, layers = build(args.smolvlm, args.qwen)
    print(f"real configs: {layers['text']} text layers, {layers['vision']} vision layers, counted on 1 + 1 and scaled; "
          "float32, CPU, forward + backward, connector trained")
    print(f"{'recipe':<54}{'tokens/sample':>14}{'real':>7}{'TFLOP/sample':>14}{'vs original':>12}{'GB saved/sample':>17}")
    original = None
    for name, (collator, samples, edge) in recipes(processor).items():
        processor.image_processor.size = {"longest_edge": edge}
        model.set_attn_implementation(PER_SAMPLE_SDPA if "per-sample" in name else "sdpa")
        batch = collator(rows(samples))
        tflop, saved = measure(model, batch, layers)
        tflop, saved = tflop / samples, saved / samples
        original = original or tflop
        positions = batch["input_ids"].numel() / samples
        real = int(batch["attention_mask"].sum()) / samples if "attention_mask" in batch else positions
        print(f"{name:<54}{positions:>14.0f}{real:>7.0f}{tflop:>14.2f}{tflop / original:>11.2f}x{saved:>17.2f}",
              flush=True)


if __name__ == "__main__":
    main()
