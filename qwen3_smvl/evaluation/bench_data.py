"""Local benchmark copies as the harnesses open them. lmms-eval and lm-eval call
`datasets.load_dataset(folder, name, **dataset_kwargs)`; for a folder with README configs, datasets
caches the prepared rows under the folder's name and layout, not its place or content, so a second
copy of the same name, or the same copy downloaded again, would be scored with the first one's rows.
Each copy therefore gets a datasets cache of its own (passed as the task's dataset_kwargs cache_dir),
keyed by where it is and what its files are, and is opened before any model loads."""

import hashlib
import shutil
from pathlib import Path

CACHES = "local_copies"  # under datasets' cache folder (HF_DATASETS_CACHE)


def _digest(text):
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def content_key(folder):
    """A digest of every file of the copy (its path in the copy, size and modification time), skipping
    hidden ones (download_resource.sh's .complete markers, hf's .cache): a re-download changes it."""
    files = sorted(path for path in Path(folder).rglob("*")
                   if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts))
    return _digest("\n".join(f"{path.relative_to(folder)}\t{path.stat().st_size}\t{path.stat().st_mtime_ns}"
                             for path in files))


def cache_dir(folder):
    """The datasets cache of one copy, as it is now: <HF_DATASETS_CACHE>/local_copies/<name>-<place>-<content>;
    the caches of the copy's earlier contents are removed."""
    import datasets

    folder = Path(folder).resolve()
    root = Path(datasets.config.HF_DATASETS_CACHE) / CACHES
    place = f"{folder.name}-{_digest(str(folder))}-"
    current = root / f"{place}{content_key(folder)}"
    for stale in root.glob("*") if root.is_dir() else []:
        if stale.name.startswith(place) and stale != current:
            shutil.rmtree(stale, ignore_errors=True)
    return current


def dataset_kwargs(task_kwargs, folder):
    """A task's dataset_kwargs for reading the local copy in `folder`: its own (less a hub token), and
    the copy's cache unless the task names a cache_dir itself (lmms-eval's video tasks unpack there)."""
    kwargs = {key: value for key, value in (task_kwargs or {}).items() if key != "token"}
    kwargs.setdefault("cache_dir", str(cache_dir(folder)))
    return kwargs


def open_problem(path, name, kwargs, splits):
    """None when load_dataset(path, name, **kwargs) opens, as the harnesses call it, and has `splits`;
    else the cause, in one line."""
    import datasets

    try:
        opened = datasets.load_dataset(str(path), name, download_mode=datasets.DownloadMode.REUSE_DATASET_IF_EXISTS,
                                       **kwargs)
    except Exception as error:  # any failure here is the harness's failure after the model loads
        cause = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return f"{type(error).__name__}: {cause[:300]}"
    missing = [split for split in dict.fromkeys(splits) if split and split not in opened]
    if missing:
        return f"no {', '.join(missing)} split (config {name or 'default'} has {', '.join(opened) or 'none'})"
    return None
