"""the_cauldron loading: <data_dir>/<subset>/train-*.parquet with `images` and `texts` columns."""
import glob
import json
import logging
import os
import warnings
from pathlib import Path

from datasets import Features, Image, List, Value, concatenate_datasets, load_dataset

logger = logging.getLogger(__name__)


class DataError(ValueError):
    """Training data that cannot be used; the message names the path and the cause."""


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
        raise DataError(f"data_dir {data_dir} does not exist (subsets: {subsets}); {_download_hint(subsets)}")

    loaded, failed = [], {}
    for subset in subsets:
        try:
            loaded.append(_load_subset(data_dir, subset))
            logger.info(f"the_cauldron/{subset}: {len(loaded[-1])} rows")
        except Exception as e:  # any unloadable subset is skipped, not fatal
            failed[subset] = f"{type(e).__name__}: {e}"
    reasons = "\n".join(f"  {subset}: {reason}" for subset, reason in failed.items())
    if not loaded:
        raise DataError(f"no subset of {subsets} could be loaded from {data_dir}:\n{reasons}\n{_download_hint(subsets)}")
    if failed:
        warnings.warn(f"skipping the_cauldron subsets that failed to load from {data_dir}:\n{reasons}\n"
                      f"{_download_hint(list(failed))}", stacklevel=2)

    ds = concatenate_datasets(loaded).shuffle(seed=data_seed)
    if not decode_images:
        ds = ds.cast_column("images", List(Image(decode=False)))
    if test_size >= len(ds):
        raise DataError(f"test_size={test_size} leaves no training rows ({len(ds)} rows loaded)")
    train, eval_ = ds.select(range(test_size, len(ds))), ds.select(range(test_size))
    if max_train_samples is not None and max_train_samples < len(train):
        train = train.select(range(max_train_samples))
    logger.info(f"the_cauldron: {len(train)} train / {len(eval_)} eval rows")
    return train, eval_


def load_text_rows(path):
    """A JSONL file of {"user": ..., "assistant": ...} pairs as text-only rows (no images)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as error:
        raise DataError(f"text_eval_file {path} cannot be read ({error.strerror})")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            pair = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path} line {number}: not JSON ({error.msg})")
        if not (isinstance(pair, dict) and isinstance(pair.get("user"), str) and isinstance(pair.get("assistant"), str)):
            raise DataError(f'{path} line {number}: expected {{"user": "...", "assistant": "..."}}')
        rows.append({"images": [], "texts": [{"user": pair["user"], "assistant": pair["assistant"], "source": "text"}]})
    if not rows:
        raise DataError(f"text_eval_file {path} holds no rows")
    return rows


def load_data(data_args, seed):
    """(train, held-out) rows of a config's DataArguments, images undecoded for the collator;
    training and evaluation read the same split through this."""
    return load_cauldron(data_args.data_dir, data_args.train_data, data_args.test_size, seed,
                         data_args.max_train_samples, decode_images=False)
