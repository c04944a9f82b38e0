"""RLAIF-V's preference pairs, converted once at download time into the preference messages JSONL that
stage dpo reads (docs/own-data.md#preference-rows-stage-dpo), each image written once beside it.

    python -m qwen3_smvl.data.rlaif_v SOURCE_DIR OUT.jsonl

SOURCE_DIR is a download of openbmb/RLAIF-V-Dataset (Hugging Face hub; CC BY-NC 4.0): parquet shards
RLAIF-V-Dataset_NNN.parquet with the columns ds_name, image ({bytes, path}), question, chosen, rejected,
origin_dataset, origin_split, idx, image_path. Each row becomes
{"id", "messages": [{"role": "user", "content": [image, question]}], "chosen", "rejected"}, its image
saved under OUT's folder in images/. A row without an image, a question or two different answers is
skipped and counted.
"""

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HUB_REPO = "openbmb/RLAIF-V-Dataset"
COLUMNS = ["image", "question", "chosen", "rejected", "idx"]


class ConversionError(Exception):
    """A source that cannot be converted at all; the message says why."""


def problem_of(row):
    image = row["image"] or {}
    if not image.get("bytes"):
        return "no image"
    if not (isinstance(row["question"], str) and row["question"].strip()):
        return "no question"
    if not all(isinstance(row[key], str) and row[key].strip() for key in ("chosen", "rejected")):
        return "no chosen or rejected"
    if row["chosen"].strip() == row["rejected"].strip():
        return "chosen equals rejected"
    return None


def image_name(row, number):
    suffix = Path((row["image"] or {}).get("path") or "").suffix or ".jpg"
    return f"images/{number:07d}{suffix}"


def rows_of(files):
    """Every row of the shards in order, streamed; a shard that is not RLAIF-V's parquet is named."""
    for path in files:
        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=256, columns=COLUMNS):
                yield from batch.to_pylist()
        except (pa.ArrowException, OSError) as error:  # e.g. a shard cut short by a mirror
            raise ConversionError(f"{path} cannot be read as {HUB_REPO}'s parquet ({error}); delete it and run "
                                  "`bash download_resource.sh --preference` again") from None


def convert(source_dir, out_path):
    """Writes OUT.jsonl (and OUT's folder/images/) from every parquet under source_dir (sorted);
    -> (rows written, {reason: count})."""
    files = sorted(Path(source_dir).rglob("*.parquet"))
    if not files:
        raise ConversionError(f"{source_dir} holds no .parquet files; is it a download of {HUB_REPO}?")
    out_path = Path(out_path)
    (out_path.parent / "images").mkdir(parents=True, exist_ok=True)
    written, skipped = 0, Counter()
    part = Path(f"{out_path}.part")
    try:
        with part.open("w", encoding="utf-8") as out:
            for row in rows_of(files):
                problem = problem_of(row)
                if problem:
                    skipped[problem] += 1
                    continue
                name = image_name(row, written)
                (out_path.parent / name).write_bytes(row["image"]["bytes"])
                question = [{"type": "image", "image": name}, {"type": "text", "text": row["question"]}]
                out.write(json.dumps({"id": str(row["idx"]), "messages": [{"role": "user", "content": question}],
                                      "chosen": row["chosen"], "rejected": row["rejected"]}, ensure_ascii=False) + "\n")
                written += 1
    except ConversionError:
        part.unlink()
        raise
    if not written:
        part.unlink()
        raise ConversionError(f"no usable pair in {len(files)} file(s) under {source_dir}: {dict(skipped)}")
    os.replace(part, out_path)  # a half-written file never looks converted
    return written, dict(skipped)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source_dir", help=f"a download of {HUB_REPO}")
    parser.add_argument("out", help="the preference messages JSONL to write")
    args = parser.parse_args(argv)
    try:
        written, skipped = convert(args.source_dir, args.out)
    except ConversionError as error:
        sys.exit(f"rlaif_v: {error}")
    reasons = f" ({', '.join(f'{reason} {count:,}' for reason, count in skipped.items())})" if skipped else ""
    print(f"RLAIF-V: {written:,} preference pairs -> {args.out}, {sum(skipped.values()):,} skipped{reasons}")


if __name__ == "__main__":
    main()
