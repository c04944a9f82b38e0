"""the_cauldron: its subset names, loading a subset from <data_dir>/<subset>/train-*.parquet
(`images` and `texts` columns) and turning its rows into the one row shape of qwen3_smvl/data/row_shape.py."""

import glob
import json
import os

import pyarrow.compute as pc
from datasets import Features, Image, List, Value, concatenate_datasets, load_dataset

from qwen3_smvl.data.row_shape import ROW_FEATURES, DataError

# The original recipe's subsets. Left out because they failed to load for the original authors:
# mimic_cgd, localized_narratives, okvqa, ocrvqa, clevr_math, nlvr2.
ALL_SUBSETS = [
    "chartqa", "finqa", "aokvqa", "figureqa", "diagram_image_to_text", "geomverse", "ai2d",
    "iam", "infographic_vqa", "intergps", "hateful_memes", "clevr", "iconqa", "multihiertt",
    "mapqa", "datikz", "hitab", "chart2text", "cocoqa", "docvqa", "dvqa",
]

TURN = {"user": Value("string"), "assistant": Value("string"), "source": Value("string")}
FEATURES = Features({"images": List(Image()), "texts": List(TURN)})


def resolve_subsets(train_data):
    """"all", "a,b", "a" or ["a", "b"] -> list of subset names, in order, without duplicates."""
    names = train_data.split(",") if isinstance(train_data, str) else train_data
    names = [name.strip() for name in names if name.strip()]
    expanded = [s for name in names for s in (ALL_SUBSETS if name == "all" else [name])]
    return list(dict.fromkeys(expanded))


def download_hint(subsets):
    args = "" if subsets == ALL_SUBSETS else " " + " ".join(subsets)
    return f"run `bash download_resource.sh{args}` to download them"


def _load_subset(data_dir, subset):
    files = sorted(glob.glob(os.path.join(data_dir, subset, "train-*.parquet")))
    if not files:
        raise FileNotFoundError(f"no train-*.parquet files in {os.path.join(data_dir, subset)}")
    ds = load_dataset("parquet", data_files=files, split="train")
    missing = {"images", "texts"} - set(ds.column_names)
    if missing:
        raise ValueError(f"missing columns {sorted(missing)}")
    ds = ds.select_columns(["images", "texts"])
    # cast rewrites the arrow cache (without decoding images), so only do it when the schema differs
    return ds if ds.features == FEATURES else ds.cast(FEATURES)


def load_subset(data_dir, subset):
    """A the_cauldron subset's `images` and `texts` columns; DataError when it cannot be loaded."""
    if not os.path.isdir(data_dir):
        raise DataError(f"data_dir {data_dir} does not exist (subset: {subset}); {download_hint([subset])}")
    try:
        return _load_subset(data_dir, subset)
    except Exception as error:  # any unloadable subset is skipped (with a warning) when others load
        raise DataError(f"{subset}: {type(error).__name__}: {error}") from None


def cauldron_messages(texts, image_count):
    """the_cauldron's turns as messages, the row's first `image_count` images leading the first user turn."""
    messages = []
    for index, turn in enumerate(texts or []):
        question = turn.get("user") or ""
        if index == 0 and image_count:
            question = [{"type": "image"}] * image_count + [{"type": "text", "text": question}]
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": turn.get("assistant")}]
    return messages


def question_row(images, question, answer, source):
    """A one-question row in this shape, its images leading the question as the_cauldron's do."""
    messages = cauldron_messages([{"user": question, "assistant": answer}], len(images))
    return {"images": images, "messages": json.dumps(messages, ensure_ascii=False), "source": source}


def from_cauldron(ds, source, max_images):
    """the_cauldron rows (`images`, `texts`) in ROW_FEATURES. Only the text columns are written anew;
    the image column is joined back as it is stored, so no image is copied or decoded."""
    def convert(batch, indices):
        counts = pc.list_value_length(batch["images"]).fill_null(0).to_pylist()
        texts = batch["texts"].to_pylist()
        return {
            "messages": [json.dumps(cauldron_messages(t, min(c, max_images)), ensure_ascii=False)
                         for t, c in zip(texts, counts)],
            "tools": [None] * len(texts), "videos": [[]] * len(texts), "source": [source] * len(texts),
            "origin": [f"{source}#{index}" for index in indices],
            "problem": [None] * len(texts), "ignored_keys": [None] * len(texts),
            "rejected": [None] * len(texts),
        }

    text_columns = ds.with_format("arrow").map(
        convert, batched=True, with_indices=True, remove_columns=ds.column_names,
        features=Features({k: v for k, v in ROW_FEATURES.items() if k != "images"}), desc=f"{source}: rows",
    )
    images = ds.select_columns(["images"]).cast_column("images", ROW_FEATURES["images"])
    return concatenate_datasets([images, text_columns.with_format(None)], axis=1).select_columns(list(ROW_FEATURES))
