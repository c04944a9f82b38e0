"""the_cauldron loading: <data_dir>/<subset>/train-*.parquet with `images` and `texts` columns."""
import glob
import hashlib
import io
import logging
import os
import warnings

import numpy as np
from datasets import Dataset, Features, Image, List, Value, concatenate_datasets, load_dataset
from PIL import Image as PILImage

logger = logging.getLogger(__name__)

# The original recipe's subsets. Left out because they failed to load for the original authors:
# mimic_cgd, localized_narratives, okvqa, ocrvqa, clevr_math, nlvr2.
ALL_SUBSETS = [
    "chartqa", "finqa", "aokvqa", "figureqa", "diagram_image_to_text", "geomverse", "ai2d",
    "iam", "infographic_vqa", "intergps", "hateful_memes", "clevr", "iconqa", "multihiertt",
    "mapqa", "datikz", "hitab", "chart2text", "cocoqa", "docvqa", "dvqa",
]

TURN = {"user": Value("string"), "assistant": Value("string"), "source": Value("string")}
FEATURES = Features({"images": List(Image()), "texts": List(TURN)})

COLOURS = {
    "red": (220, 20, 20), "green": (20, 160, 20), "blue": (20, 40, 220),
    "yellow": (240, 220, 20), "black": (0, 0, 0), "white": (255, 255, 255),
}
QUESTIONS = ["What colour is the picture?", "Which colour fills this image?", "Name the colour of this image."]


def resolve_subsets(train_data):
    """"all", "a,b", "a" or ["a", "b"] -> list of subset names, in order, without duplicates."""
    names = train_data.split(",") if isinstance(train_data, str) else train_data
    names = [name.strip() for name in names if name.strip()]
    expanded = [s for name in names for s in (ALL_SUBSETS if name == "all" else [name])]
    return list(dict.fromkeys(expanded))


def _download_hint(subsets):
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


def load_cauldron(data_dir, train_data, test_size=64, data_seed=42, max_train_samples=None, decode_images=True):
    """Returns (train_dataset, eval_dataset); images stay encoded until a row is accessed.
    With decode_images=False rows carry {"bytes", "path"} dicts, and the collator decodes them
    (so it can name or skip a corrupt image instead of failing inside datasets)."""
    subsets = resolve_subsets(train_data)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data_dir {data_dir} does not exist (subsets: {subsets}); {_download_hint(subsets)}")

    loaded, failed = [], {}
    for subset in subsets:
        try:
            loaded.append(_load_subset(data_dir, subset))
            logger.info(f"the_cauldron/{subset}: {len(loaded[-1])} rows")
        except Exception as e:  # any unloadable subset is skipped, not fatal
            failed[subset] = f"{type(e).__name__}: {e}"
    reasons = "\n".join(f"  {subset}: {reason}" for subset, reason in failed.items())
    if not loaded:
        raise ValueError(f"no subset of {subsets} could be loaded from {data_dir}:\n{reasons}\n{_download_hint(subsets)}")
    if failed:
        warnings.warn(f"skipping the_cauldron subsets that failed to load from {data_dir}:\n{reasons}\n"
                      f"{_download_hint(list(failed))}", stacklevel=2)

    ds = concatenate_datasets(loaded).shuffle(seed=data_seed)
    if not decode_images:
        ds = ds.cast_column("images", List(Image(decode=False)))
    if test_size >= len(ds):
        raise ValueError(f"test_size={test_size} leaves no training rows ({len(ds)} rows loaded)")
    train, eval_ = ds.select(range(test_size, len(ds))), ds.select(range(test_size))
    if max_train_samples is not None and max_train_samples < len(train):
        train = train.select(range(max_train_samples))
    logger.info(f"the_cauldron: {len(train)} train / {len(eval_)} eval rows")
    return train, eval_


def _colour_png(rgb, size, rng):
    noise = rng.integers(-8, 9, size=(size, size, 3))
    pixels = np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _colour_rows(subset, n, image_size, turns, rng):
    names = list(COLOURS)
    images, texts = [], []
    for _ in range(n):
        name = names[rng.integers(len(names))]
        questions = rng.choice(QUESTIONS, size=turns, replace=False)
        images.append([{"bytes": _colour_png(COLOURS[name], image_size, rng), "path": None}])
        texts.append([{"user": str(q), "assistant": name, "source": subset} for q in questions])
    return {"images": images, "texts": texts}


def write_synthetic_cauldron(data_dir, subsets=("cocoqa",), rows_per_subset=64, image_size=32, seed=0,
                             turns=1, files_per_subset=1):
    """Writes a colour-naming task in the_cauldron's on-disk layout; returns the written parquet paths.
    Each row has one solid-colour image and `turns` (at most len(QUESTIONS)) questions answered with its colour."""
    rng = np.random.default_rng(seed)
    paths = []
    for subset in subsets:
        os.makedirs(os.path.join(data_dir, subset), exist_ok=True)
        shard_sizes = [len(a) for a in np.array_split(np.arange(rows_per_subset), files_per_subset)]
        for shard, n in enumerate(shard_sizes):
            rows = _colour_rows(subset, n, image_size, turns, rng)
            digest = hashlib.sha1(f"{subset}-{seed}-{shard}".encode()).hexdigest()[:16]
            path = os.path.join(data_dir, subset, f"train-{shard:05d}-of-{files_per_subset:05d}-{digest}.parquet")
            Dataset.from_dict(rows, features=FEATURES).to_parquet(path)
            paths.append(path)
    return paths
