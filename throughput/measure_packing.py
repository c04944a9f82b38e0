"""Image tokens per resolution, real-token fraction and CPU training samples/s: batch-8 `longest`
padding vs packing (a benchmark that prints, not a test).

    python throughput/measure_packing.py [--rows 512] [--step-rows 32] [--rounds 2]

Processor: SmolVLM2's image processor config and the real Qwen3 tokenizer from ../shared/assets when
present (else qwen3_smvl/tiny.py's real geometry and the stand-in tokenizer). Rows: a mixed set shaped like
the_cauldron: one image of 300-2200 px per side (random aspect), a short question, answers of 1-200
tokens. Token counts come from qwen3_smvl/data/lengths.py (image headers, no decoding), as training computes them.

- Image table: tiles and image-block tokens per image for common sizes at each `image_longest_edge`.
- Real tokens: non-padding share of the positions computed, for batch-8 `longest` (random batches and
  transformers' group_by_length) and packing at an 8K budget (no padding at all; its figure is the
  share of the budget filled, which is what sets the number of steps).
- samples/s: forward + backward + AdamW on the collated batches of the same `--step-rows` rows, on a
  TINY-WIDTH model (qwen3_smvl/tiny.py: 2 text layers of 64, 2 vision layers of 32) at SmolVLM2's real image
  geometry, one CPU thread, LM head on supervised positions, SDPA (per sample when packing, as
  train.py sets it); the two recipes' steps interleaved, so that both see the same machine load.
  Collation is not timed: DataLoader workers do it in parallel.
"""

import argparse
import io
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from transformers.trainer_pt_utils import LengthGroupedSampler

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qwen3_smvl import graft, tiny  # noqa: E402
from qwen3_smvl.data.collate import Collator  # noqa: E402
from qwen3_smvl.data.lengths import TokenCounter  # noqa: E402
from qwen3_smvl.data.packing import PER_SAMPLE_SDPA, PackedBatches, PackingCollator  # noqa: E402
from qwen3_smvl.data.the_cauldron import question_row  # noqa: E402
from qwen3_smvl.training import trainable  # noqa: E402

from measure_collate import build_processor  # noqa: E402

TABLE_SIZES = [(640, 480), (1024, 768), (1700, 2200), (300, 200)]
LONGEST_EDGES = (2048, 1536, 1024, 512)
WORDS = "the a dog cat red blue table chart value year left right small large shows two three".split()


def jpeg(size, colour):
    """Pixel content changes neither token counts nor compute: a plain image encodes fast."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def mixed_rows(count, seed=0):
    """the_cauldron-like rows: image sides 300-2200 px, answers of 1-200 words (~1-200 tokens)."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        size = (rng.randint(300, 2200), rng.randint(300, 2200))
        answer = " ".join(rng.choice(WORDS) for _ in range(int(200 ** rng.random())))  # log-uniform 1..200
        image = {"bytes": jpeg(size, (index * 37 % 256, 90, 160)), "path": None}
        rows.append(question_row([image], "What does the image show?", answer, "mixed"))
    return rows


def image_table(processor):
    counter = TokenCounter(Collator(processor))
    image_processor = processor.image_processor
    print("image tokens per image (tiles incl. the global view / tokens of the image block):")
    print(f"{'longest edge':>12} " + " ".join(f"{w}x{h:<12}" for w, h in TABLE_SIZES))
    for edge in LONGEST_EDGES:
        image_processor.size = {"longest_edge": edge}
        counter.block_length.cache_clear()
        cells = []
        for width, height in TABLE_SIZES:
            tiles = max(image_processor.get_number_of_image_patches(height, width)[0], 1)
            cells.append(f"{tiles:>2} / {counter.image_block_length(width, height):<8}")
        print(f"{edge:>12} " + " ".join(f"{cell:<16}" for cell in cells))
    image_processor.do_image_splitting = False
    counter.block_length.cache_clear()
    print(f"{'no splitting':>12} " + " ".join(f"{' 1 / ' + str(counter.image_block_length(w, h)):<16}" for w, h in TABLE_SIZES))
    image_processor.do_image_splitting, image_processor.size = True, {"longest_edge": 2048}
    print()


def real_token_table(lengths, budget):
    rng = random.Random(0)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    grouped = list(LengthGroupedSampler(8, lengths=lengths, generator=torch.Generator().manual_seed(0)))
    print(f"real tokens over {len(lengths)} mixed rows ({sum(lengths) / len(lengths):.0f} tokens/sample on average, "
          f"{min(lengths)}-{max(lengths)}):")
    for name, ordering in (("batch 8, longest, random batches", order), ("batch 8, longest, group_by_length", grouped)):
        batches = [ordering[i:i + 8] for i in range(0, len(ordering), 8)]
        computed = sum(-(-max(lengths[i] for i in batch) // 8) * 8 * len(batch) for batch in batches)
        print(f"  {name:<38} {sum(lengths) / computed:7.1%} of {computed} positions, {len(batches)} steps")
    packs = list(PackedBatches(lengths, budget, seed=0))
    print(f"  {f'packing, {budget} budget':<38} {1:7.1%} of {sum(lengths)} positions (no padding); "
          f"budget filled {sum(lengths) / (budget * len(packs)):.1%}, {len(packs)} steps "
          f"({len(lengths) / len(packs):.1f} samples/step)\n")


def tiny_model(workdir, processor):
    """A tiny-width model at the real image geometry, with `processor`'s tokenizer."""
    qwen = tiny.build_tiny_qwen(workdir / "qwen", processor.tokenizer.name_or_path)
    smolvlm = tiny.build_tiny_smolvlm(workdir / "smolvlm", geometry="real")
    model, _ = graft.stitch(smolvlm, qwen)
    trainable.set_trainable(model)
    return model.float()


def step_seconds(model, optimizer, batch):
    start = time.perf_counter()
    model(**batch).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def samples_per_second(model, processor, rows, budget, rounds):
    lengths = [TokenCounter(Collator(processor))(row) for row in rows]
    longest = Collator(processor, padding="longest", supervised_logits_only=True)
    padded = [longest(rows[i:i + 8]) for i in range(0, len(rows), 8)]
    packer = PackingCollator(processor, supervised_logits_only=True, attn_implementation=PER_SAMPLE_SDPA)
    packed = [packer([rows[i] for i in pack]) for pack in PackedBatches(lengths, budget, seed=0)]
    # attention as train.py sets it: SDPA, per sample when packing
    recipes = {"batch 8, longest": (padded, "sdpa"), f"packing, {budget} budget": (packed, PER_SAMPLE_SDPA)}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    for batches, attention in recipes.values():  # warm-up
        model.set_attn_implementation(attention)
        step_seconds(model, optimizer, batches[0])
    seconds = {name: 0.0 for name in recipes}
    for _ in range(rounds):  # one step of each recipe in turn, so that both see the same machine load
        for step in range(max(len(batches) for batches, _ in recipes.values())):
            for name, (batches, attention) in recipes.items():
                if step < len(batches):
                    model.set_attn_implementation(attention)
                    seconds[name] += step_seconds(model, optimizer, batches[step])
    print(f"CPU training samples/s on {len(rows)} of the mixed rows (tiny-width model, real image geometry, "
          f"{torch.get_num_threads()} thread, {rounds} rounds, steps of the two recipes interleaved):")
    for name, (batches, _) in recipes.items():
        positions = sum(batch["input_ids"].numel() for batch in batches)
        print(f"  {name:<24} {rounds * len(rows) / seconds[name]:6.2f} samples/s  ({len(batches)} steps, {positions} positions)")
    names = list(recipes)
    print(f"  packing / longest: {seconds[names[0]] / seconds[names[1]]:.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=512, help="rows for the real-token table")
    parser.add_argument("--step-rows", type=int, default=32, help="rows trained on for samples/s")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budget", type=int, default=8192)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as workdir:
        processor, origin = build_processor(Path(workdir))
        print(f"processor: {origin}\n")
        image_table(processor)
        rows = mixed_rows(args.rows)
        counter = TokenCounter(Collator(processor))
        real_token_table([counter(row) for row in rows], args.budget)
        model = tiny_model(Path(workdir), processor)
        samples_per_second(model, processor, rows[: args.step_rows], args.budget, args.rounds)


if __name__ == "__main__":
    main()
