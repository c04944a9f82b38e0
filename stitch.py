"""Graft a Qwen3 causal LM into SmolVLM2 as the text model, giving an ordinary transformers checkpoint.

    python stitch.py --smolvlm model/SmolVLM2-256M-Video-Instruct --qwen model/Qwen3-0.6B --out DIR
    python stitch.py --dry-run      # configs and tokenizer only: parameter counts and token ids

The result is one `SmolVLMConfig` whose `text_config` IS Qwen3's config, so the saved directory
reloads with `AutoModelForImageTextToText` / `AutoProcessor` alone. Every id and size is read from
the two checkpoints and cross-checked by `verify_graft`.
"""

import argparse
import time
from pathlib import Path

from qwen3_smvl import graft
from qwen3_smvl.training import trainable


def short_count(count):
    """A parameter count for a summary line: 0.52B, 12.6M, 3.1K (powers of 10)."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size * 0.9995:  # what rounds to 1000 of a unit is 1 of the next
            return f"{count / size:.3g}{unit}"
    return str(count)


def stitched_line(model, smolvlm_path, qwen_path, seconds, out):
    """The CLI's summary: what was grafted, the sizes (trainable as set on the model), time and where."""
    trained, total = graft.trainable_and_total(model)
    projection = model.model.connector.modality_projection.proj
    return (f"stitched: {Path(qwen_path).name} text + {Path(smolvlm_path).name} vision, connector "
            f"{projection.in_features}->{projection.out_features} fresh, {short_count(total)} params "
            f"({short_count(trained)} trainable), verified, {seconds:.0f} s -> {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smolvlm", default=graft.DEFAULT_SMOLVLM, help="SmolVLM2 checkpoint directory")
    parser.add_argument("--qwen", default=graft.DEFAULT_QWEN, help="Qwen3 checkpoint directory")
    parser.add_argument("--out", help="where to write the stitched model and processor")
    parser.add_argument("--dry-run", action="store_true", help="print what the graft yields; loads no weights")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fresh connector")
    args = parser.parse_args(argv)
    try:
        if args.dry_run:
            print(graft.dry_run(args.smolvlm, args.qwen))
            return
        if not args.out:
            parser.error("--out is required (or use --dry-run)")
        started = time.perf_counter()
        model, processor = graft.stitch(args.smolvlm, args.qwen, seed=args.seed)
    except graft.GraftError as error:
        raise SystemExit(f"stitch.py: {error}")
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    trainable.set_trainable(model)  # the recipe's default trainable set, for the summary's count
    print(stitched_line(model, args.smolvlm, args.qwen, time.perf_counter() - started, args.out))
    print(f"next:\n  python train.py cocoqa_train.yaml --init_from {args.out}    # train the fresh connector\n"
          f"  python infer.py --model {args.out} --image PATH --question \"...\"")


if __name__ == "__main__":
    main()
