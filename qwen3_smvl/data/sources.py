"""The entries of train_data / eval_data (a the_cauldron subset name, a path, or a file or directory with its
format, data_root, weight and max_samples) and reading each one with its format's reader
(qwen3_smvl/data/the_cauldron.py, qwen3_smvl/data/own_files.py) into the one row shape of qwen3_smvl/data/row_shape.py.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from datasets import Dataset, concatenate_datasets

from qwen3_smvl.data import own_files, the_cauldron
from qwen3_smvl.data.row_shape import DataError

logger = logging.getLogger(__name__)

FORMATS = ("cauldron", "llava", "messages")
FILE_SUFFIXES = (".json", ".jsonl", ".parquet")
SOURCE_KEYS = ("path", "format", "data_root", "weight", "max_samples")
# Files that download_resource.sh makes, by name: a missing one is named with the command that makes it.
DOWNLOADED_FILES = {"sharegpt_zh_en.jsonl": "bash download_resource.sh --replay"}


@dataclass
class Source:
    """One entry of train_data / eval_data: a the_cauldron subset under data_dir, or a file or directory."""

    name: str
    path: str
    format: str | None = None  # None: detected from the first row
    data_root: str | None = None  # relative image paths resolve here (default: the file's directory)
    weight: float | None = None
    max_samples: int | None = None
    subset: bool = False  # a the_cauldron subset named by its bare name


def is_path_like(entry):
    """A plain string naming a file or directory rather than a the_cauldron subset (bare names, no suffix)."""
    return isinstance(entry, str) and ("/" in entry or os.sep in entry or entry.endswith(FILE_SUFFIXES))


def parse_entry(entry, data_dir, key):
    """A train_data/eval_data entry (a subset name, a path, or a mapping, or its YAML text from the command line)."""
    if isinstance(entry, str) and entry.lstrip().startswith("{"):
        try:
            entry = yaml.safe_load(entry)
        except yaml.YAMLError as error:
            raise DataError(f"{key}: cannot read {entry!r} as a mapping: {error}") from None
    if is_path_like(entry):
        if not os.path.exists(entry):
            command = DOWNLOADED_FILES.get(os.path.basename(entry))
            raise DataError(f"{key}: {entry} does not exist (an entry with a '/' or a {'/'.join(FILE_SUFFIXES)} "
                            f"suffix is read as a file or directory, as {{path: {entry}}} is; the_cauldron subsets "
                            "are bare names such as cocoqa)" + (f"; run `{command}` to make it" if command else ""))
        entry = {"path": entry}
    if isinstance(entry, str):
        return Source(name=entry, path=os.path.join(data_dir, entry), format="cauldron", subset=True)
    if not isinstance(entry, dict):
        raise DataError(f"{key}: an entry must be a subset name or a mapping with 'path', not {entry!r}")
    unknown = sorted(set(entry) - set(SOURCE_KEYS))
    if unknown:
        raise DataError(f"{key}: unknown key(s) {unknown} in {entry}; known: {list(SOURCE_KEYS)}")
    if not entry.get("path"):
        raise DataError(f"{key}: {entry} has no 'path'")
    source = Source(name=str(entry["path"]), **entry)
    if source.format is not None and source.format not in FORMATS:
        raise DataError(f"{key}: {source.path}: unknown format {source.format!r}; known: {list(FORMATS)}")
    if source.weight is not None and not (isinstance(source.weight, (int, float)) and source.weight > 0):
        raise DataError(f"{key}: {source.path}: weight must be a number above 0, not {source.weight!r}")
    if source.max_samples is not None and not (isinstance(source.max_samples, int) and source.max_samples > 0):
        raise DataError(f"{key}: {source.path}: max_samples must be a positive integer, not {source.max_samples!r}")
    if not os.path.exists(source.path):
        command = DOWNLOADED_FILES.get(os.path.basename(source.path))
        raise DataError(f"{key}: {source.path} does not exist" + (f"; run `{command}` to make it" if command else ""))
    return source


def flow_list_items(entry, key):
    """A YAML list typed on the command line (`--train_data "[clevr, {path: a.jsonl}]"`) -> its items;
    any other entry -> [entry]."""
    if not (isinstance(entry, str) and entry.lstrip().startswith("[")):
        return [entry]
    try:
        items = yaml.safe_load(entry)
    except yaml.YAMLError as error:
        raise DataError(f"{key}: cannot read {entry!r} as a list: {error}") from None
    return items


def parse_sources(entries, data_dir, key="train_data"):
    """train_data / eval_data -> [Source]; "all" and comma-separated names expand to the_cauldron subsets."""
    entries = [entries] if isinstance(entries, (str, dict)) else list(entries or [])
    entries = [item for entry in entries for item in flow_list_items(entry, key)]
    expanded, seen = [], set()
    for entry in entries:
        is_name = isinstance(entry, str) and not entry.lstrip().startswith("{") and not is_path_like(entry)
        for item in the_cauldron.resolve_subsets(entry) if is_name else [entry]:
            source = parse_entry(item, data_dir, key)
            if source.name not in seen:
                seen.add(source.name)
                expanded.append(source)
    return expanded


def files_of(path):
    if os.path.isfile(path):
        return [path]
    files = sorted(str(p) for p in Path(path).rglob("*") if p.suffix in FILE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{path} holds no {'/'.join(FILE_SUFFIXES)} files")
    return files


def detect_format(row, where):
    if isinstance(row, dict):
        if "conversations" in row:
            return "llava"
        if "messages" in row:
            return "messages"
        if "texts" in row:
            return "cauldron"
    keys = sorted(row) if isinstance(row, dict) else type(row).__name__
    raise DataError(f"{where}: cannot tell the format from the first row's keys {keys}: expected 'conversations' "
                    f"(llava), 'messages' (messages) or 'texts' (cauldron); set format: to one of {list(FORMATS)}")


def read_source(source, data_dir, cache_dir, max_images):
    """A Source's rows in ROW_FEATURES, problems included, and its format."""
    if source.subset:
        subset = the_cauldron.load_subset(data_dir, source.name)
        return the_cauldron.from_cauldron(subset, source.name, max_images), "cauldron"
    parts, formats = [], []
    for path in files_of(source.path):
        fmt = source.format or detect_format(own_files.first_row(path), path)
        if source.format is None:
            logger.info(f"{path}: format {fmt} (detected from its first row)")
        if fmt == "cauldron":
            table = Dataset.from_parquet(path).select_columns(["images", "texts"])
            parts.append(the_cauldron.from_cauldron(table, source.name, max_images))
        else:
            parts.append(own_files.read_file(path, fmt, source.data_root, cache_dir, source.name))
        formats.append(fmt)
    return (concatenate_datasets(parts) if len(parts) > 1 else parts[0]), "+".join(dict.fromkeys(formats))
