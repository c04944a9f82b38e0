"""Training data: the sources of train_data / eval_data read (qwen3_smvl/data/sources.py), problems refused or skipped,
rows held out across sources and the rest mixed by weight."""
import json
import logging
import warnings
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset, concatenate_datasets, interleave_datasets

from qwen3_smvl.data import row_shape, sources, the_cauldron
from qwen3_smvl.data.row_shape import DataError

logger = logging.getLogger(__name__)


class LoadedData(NamedTuple):
    train: Dataset
    held_out: Dataset  # eval_data's rows when set, else test_size rows held out across the sources
    problems: dict  # {source: {reason: count}} of the rows dropped under on_bad_sample: skip


def usable_rows(name, fmt, ds, on_bad_sample):
    """(rows without a problem, {reason: count}); under on_bad_sample: raise a problem refuses the run."""
    keep, found = row_shape.problems_of(ds)
    ignored = row_shape.ignored_keys(ds)
    if ignored:
        warnings.warn(f"{name}: ignoring key(s) {ignored} that the {fmt} reader does not understand", stacklevel=2)
    if found and on_bad_sample == "raise":
        listed = "\n".join(f"  {origin}: {problem}" for origin, problem in found[:10])
        more = f"\n  ... and {len(found) - 10} more" if len(found) > 10 else ""
        raise DataError(f"{name}: {len(found)} unusable row(s) (on_bad_sample: raise; `--check_data true` lists "
                        f"them all, on_bad_sample: skip drops them):\n{listed}{more}")
    if found:
        warnings.warn(f"{name}: skipping {len(found)} unusable row(s), e.g. {found[0][0]}: {found[0][1]}", stacklevel=2)
    return (ds.select(keep) if found else ds), dict(Counter(problem.split(":")[0] for _, problem in found))


def read_sources(entries, data_args, seed, key):
    """[(Source, usable rows, capped at max_samples drawn with `seed`)] and the problems skipped.
    A the_cauldron subset that fails to load is skipped with a warning while others load."""
    loaded, failed, problems = [], {}, {}
    for source in sources.parse_sources(entries, data_args.data_dir, key):
        try:
            ds, fmt = sources.read_source(source, data_args.data_dir, data_args.image_cache_dir, data_args.max_images)
        except DataError as error:
            if not source.subset:
                raise
            failed[source.name] = str(error)
            continue
        ds, problems[source.name] = usable_rows(source.name, fmt, ds, data_args.on_bad_sample)
        if source.max_samples is not None and source.max_samples < len(ds):
            ds = ds.shuffle(seed=seed).select(range(source.max_samples))
        logger.info(f"{source.name} ({fmt}): {len(ds)} rows")
        loaded.append((source, ds))
    reasons = "\n".join(f"  {reason}" for reason in failed.values())
    if not loaded:  # only the_cauldron subsets can fail here: a file source raises at once
        raise DataError(f"{key}: no subset of {list(failed)} could be loaded from {data_args.data_dir}:\n{reasons}\n"
                        f"{the_cauldron.download_hint(list(failed))}")
    if failed:
        warnings.warn(f"skipping the_cauldron subsets that failed to load from {data_args.data_dir}:\n{reasons}\n"
                      f"{the_cauldron.download_hint(list(failed))}", stacklevel=2)
    return loaded, {name: counts for name, counts in problems.items() if counts}


def split_off(ds, test_size):
    if test_size >= len(ds):
        raise DataError(f"test_size={test_size} leaves no training rows ({len(ds)} rows loaded)")
    return ds.select(range(test_size, len(ds))), ds.select(range(test_size))


def hold_out(parts, test_size):
    """Splits test_size rows off the shuffled sources in proportion to their sizes."""
    sizes = np.array([len(part) for part in parts])
    shares = sizes * test_size / max(sizes.sum(), 1)
    quotas = np.floor(shares).astype(int)
    quotas[np.argsort(quotas - shares, kind="stable")[: test_size - quotas.sum()]] += 1
    split = [split_off(part, quota) for part, quota in zip(parts, quotas)]
    return [train for train, _ in split], concatenate_datasets([held for _, held in split])


def mix(parts, weights, seed):
    """Sources drawn with probability weight / total (1.0 where unset) until every row was seen once
    (smaller sources repeat meanwhile)."""
    weights = np.array([1.0 if weight is None else weight for weight in weights])
    return interleave_datasets(parts, probabilities=list(weights / weights.sum()), seed=seed,
                               stopping_strategy="all_exhausted")


def load_text_rows(path):
    """A JSONL file of {"user": ..., "assistant": ...} pairs as text-only rows in the one row shape."""
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
        messages = [{"role": "user", "content": pair["user"]}, {"role": "assistant", "content": pair["assistant"]}]
        rows.append({"messages": json.dumps(messages, ensure_ascii=False), "tools": None, "images": [], "videos": [], "source": "text",
                     "origin": f"{path}:{number}", "problem": None, "ignored_keys": None, "rejected": None})
    if not rows:
        raise DataError(f"text_eval_file {path} holds no rows")
    return rows


def load_data(data_args, seed):
    """Training rows, held-out rows and the problems skipped, in the one row shape of qwen3_smvl/data/row_shape.py with
    images undecoded; training and evaluation read the same split through this.

    Without weights the sources are pooled and shuffled, and the first test_size rows held out (as
    before mixtures existed, so the held-out rows of a the_cauldron config stay the same); with
    weights each source gives test_size rows in proportion to its size and the rest are mixed.
    eval_data, when set, is the held-out set and nothing is split off."""
    loaded, problems = read_sources(data_args.train_data, data_args, seed, "train_data")
    parts, weights = [ds for _, ds in loaded], [source.weight for source, _ in loaded]
    weighted = any(weight is not None for weight in weights)
    if weighted:  # the mixture takes each source's rows in order
        parts = [part.shuffle(seed=seed) for part in parts]
    if data_args.eval_data:
        eval_loaded, eval_problems = read_sources(data_args.eval_data, data_args, seed, "eval_data")
        held_out = concatenate_datasets([ds for _, ds in eval_loaded])
        problems.update(eval_problems)
    elif weighted:
        parts, held_out = hold_out(parts, data_args.test_size)
    if weighted:
        train = mix(parts, weights, seed)
    else:
        train = concatenate_datasets(parts).shuffle(seed=seed)
        if not data_args.eval_data:
            train, held_out = split_off(train, data_args.test_size)
    if data_args.max_train_samples is not None and data_args.max_train_samples < len(train):
        train = train.select(range(data_args.max_train_samples))
    return LoadedData(train, held_out, problems)


def rows_per_source(ds):
    """{source name: rows}, most first, read from the `source` column through any shuffle or selection."""
    column = ds.select_columns(["source"]).with_format("arrow")[:]["source"]
    return {entry["values"]: entry["counts"] for entry in sorted(pc.value_counts(column).to_pylist(),
                                                                 key=lambda entry: -entry["counts"])}


def summary_line(loaded, seconds):
    """The data step's one line: training rows per source (repeats of a mixture included), held-out
    rows and the rows skipped by reason."""
    per_source = ", ".join(f"{name} {count:,}" for name, count in rows_per_source(loaded.train).items())
    skipped = Counter()
    for counts in loaded.problems.values():
        skipped.update(counts)
    reasons = f" ({', '.join(f'{reason} {count:,}' for reason, count in skipped.items())})" if skipped else ""
    return (f"data: {len(loaded.train):,} train rows ({per_source}), {len(loaded.held_out):,} held out, "
            f"{sum(skipped.values()):,} skipped{reasons}, {seconds:.0f} s")
