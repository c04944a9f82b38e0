"""Tiles, tokens and FLOPs per training sample under each image resolution policy, on a
the_cauldron-like mix of image sizes (a benchmark that prints, not a test).

    python throughput/measure_resolution.py [--smolvlm DIR --qwen DIR]

Policies (in tiles of the processor's tile size, 512 px for SmolVLM2):
- default: every image resized to the 2048 px longest edge (SmolVLM2's processor: small images upscaled);
- native (`native_resolution: true`): each image at its own size rounded up to the next tile multiple,
  images over the 2048 px edge shrunk to it;
- `image_longest_edge: 1024`: every image resized to 1024 px;
- native with `image_longest_edge: 1024`.
Each sample goes through training's collator (so the tiles are the ones training sees) and one
forward + backward of the graft at real width, counted as throughput/measure_flops.py counts it (one
text and one vision layer, scaled to the real layer counts, connector trained, LM head on supervised
positions). The mix's weights are chosen to resemble the_cauldron (photos dominate; charts, screenshots
and document scans follow), not measured from it.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure_flops import ANSWERS, QUESTIONS, build, default_source, measure  # noqa: E402

from qwen3_smvl import graft  # noqa: E402
from qwen3_smvl.data.collate import Collator  # noqa: E402
from qwen3_smvl.data.the_cauldron import question_row  # noqa: E402

# (kind, (width, height), weight in the mix)
MIX = (
    ("icon / small diagram", (300, 200), 1),
    ("COCO photo (vqav2, aokvqa, cocoqa)", (640, 480), 4),
    ("chart (chartqa, plotqa)", (800, 600), 2),
    ("screenshot (screen2words, websight)", (1280, 720), 1),
    ("document scan, letter 200 dpi (docvqa)", (1700, 2200), 1),
    ("document scan, A4 300 dpi", (2480, 3508), 1),
)


def policies(tile):
    """name -> (do_resize, longest edge): the processor settings each policy saves."""
    return {
        f"default (upscale to {4 * tile})": (True, 4 * tile),
        f"native (next {tile}, cap {4 * tile})": (False, 4 * tile),
        f"image_longest_edge {2 * tile}": (True, 2 * tile),
        f"native, cap {2 * tile}": (False, 2 * tile),
    }


def sample(kind_index, width, height):
    pixels = np.random.default_rng(kind_index).integers(0, 255, (height, width, 3), dtype=np.uint8)
    question = QUESTIONS[kind_index % len(QUESTIONS)]
    return question_row([Image.fromarray(pixels)], question, ANSWERS[kind_index % len(ANSWERS)], "mix")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smolvlm", default=default_source("smolvlm2-256m-video-instruct", graft.DEFAULT_SMOLVLM))
    parser.add_argument("--qwen", default=default_source("qwen3-0.6b", graft.DEFAULT_QWEN))
    args = parser.parse_args()
    model, processor, layers = build(args.smolvlm, args.qwen)
    image_processor = processor.image_processor
    tile = image_processor.max_image_size["longest_edge"]
    collator = Collator(processor, padding="longest", supervised_logits_only=True, max_length=8192)
    rows = [sample(index, *size) for index, (_, size, _) in enumerate(MIX)]
    weights = np.array([weight for _, _, weight in MIX], dtype=float) / sum(weight for _, _, weight in MIX)
    print(f"real configs: {layers['text']} text layers, {layers['vision']} vision layers, counted on 1 + 1 and scaled; "
          f"{tile} px tiles, splitting {image_processor.do_image_splitting}; float32, CPU, forward + backward")

    measured, per_policy = {}, {}
    for name, (do_resize, edge) in policies(tile).items():
        image_processor.do_resize, image_processor.size = do_resize, {"longest_edge": edge}
        figures = []
        for row in rows:
            batch = collator([row])
            tiles, tokens = len(collator.encode(row).tiles), batch["input_ids"].shape[1]
            if (tiles, tokens) not in measured:  # the FLOPs depend on the shapes only
                measured[tiles, tokens] = measure(model, batch, layers)[0]
            figures.append((tiles, tokens, measured[tiles, tokens]))
        per_policy[name] = np.array(figures, dtype=float)

    print("\ntiles per image (tiles incl. the global view)")
    print(f"{'image kind':<42}{'size':>11}{'weight':>7}" + "".join(f"{name:>30}" for name in per_policy))
    for index, (kind, (width, height), weight) in enumerate(MIX):
        print(f"{kind:<42}{f'{width}x{height}':>11}{weight:>7}"
              + "".join(f"{int(figures[index, 0]):>30}" for figures in per_policy.values()))

    print("\nper sample on the mix (weighted mean)")
    print(f"{'policy':<30}{'tiles/sample':>14}{'tokens/sample':>15}{'TFLOP/sample':>14}{'vs default':>12}")
    default = None
    for name, figures in per_policy.items():
        tiles, tokens, tflop = weights @ figures
        default = default or tflop
        print(f"{name:<30}{tiles:>14.2f}{tokens:>15.0f}{tflop:>14.2f}{tflop / default:>11.2f}x", flush=True)


if __name__ == "__main__":
    main()
