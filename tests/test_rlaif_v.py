"""RLAIF-V's parquet layout (the hub's columns) converted to preference rows that stage dpo reads."""

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from qwen3_smvl.data import own_files, rlaif_v


def png():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def shard(path, rows):
    """A parquet shard with RLAIF-V-Dataset's columns, in its order."""
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("ds_name", pa.string()), ("image", image), ("question", pa.string()), ("chosen", pa.string()),
                        ("rejected", pa.string()), ("origin_dataset", pa.string()), ("origin_split", pa.string()),
                        ("idx", pa.string()), ("image_path", pa.string())])
    full = [{"ds_name": "RLAIF-V", "origin_dataset": "VQAv2", "origin_split": json.dumps({"model": "x"}),
             "image_path": "a/b.png", **row} for row in rows]
    pq.write_table(pa.Table.from_pylist(full, schema=schema), path)


def test_rlaif_v_parquet_becomes_preference_rows(tmp_path):
    source = tmp_path / "RLAIF-V-Dataset"
    source.mkdir()
    good = {"image": {"bytes": png(), "path": "0.png"}, "question": "What is red?", "chosen": "The square.",
            "rejected": "A red car and a dog.", "idx": "0"}
    shard(source / "RLAIF-V-Dataset_000.parquet",
          [good, {**good, "idx": "1", "rejected": "The square."}, {**good, "idx": "2", "image": None}])
    out = tmp_path / "preference" / "rlaif_v.jsonl"
    written, skipped = rlaif_v.convert(source, out)
    assert (written, skipped) == (1, {"chosen equals rejected": 1, "no image": 1})

    ds = own_files.read_file(str(out), "messages", None, str(tmp_path / "cache"), "rlaif_v")
    assert ds[0]["problem"] is None and ds[0]["rejected"] == "A red car and a dog."
    messages = json.loads(ds[0]["messages"])
    assert messages[-1] == {"role": "assistant", "content": "The square."}
    assert Image.open(ds[0]["images"][0]["path"]).size == (8, 8)
