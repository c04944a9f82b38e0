"""Readers for training data files: LLaVA JSON/JSONL, OpenAI-style `messages` JSONL and the_cauldron
parquet, each turned into one row shape that the collator, evaluation, the demo and the data check know:

    {"messages": JSON text of [{"role", "content": str | [{"type": "text", "text"} | {"type": "image"}], ...}],
     "tools": JSON text of the row's tool list, or null,
     "images": [{"bytes", "path"}, ...]   one per {"type": "image"} part, in order, undecoded,
     "source": the source's name, "origin": "file:line" (JSONL) or "file#index",
     "problem": null, or "reason: cause" for a row that cannot be trained on,
     "ignored_keys": null, or the row's keys the reader does not understand}

Rows with a problem are kept (so that a cached source still reports them) and dropped or refused by
data.load_data; the data check lists them.
"""

import base64
import binascii
import hashlib
import json
import logging
import multiprocessing
import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from datasets import Dataset, Features, Image, List, Value, concatenate_datasets
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

FORMATS = ("cauldron", "llava", "messages")
FILE_SUFFIXES = (".json", ".jsonl", ".parquet")
SOURCE_KEYS = ("path", "format", "data_root", "weight", "max_samples")
ROW_FEATURES = Features({
    "messages": Value("string"), "tools": Value("string"), "images": List(Image(decode=False)),
    "source": Value("string"), "origin": Value("string"), "problem": Value("string"), "ignored_keys": Value("string"),
})
LLAVA_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
MESSAGE_ROLES = ("system", "user", "assistant", "tool")
MESSAGE_KEYS = ("role", "content", "reasoning_content", "tool_calls", "name", "tool_call_id")
ROW_KEYS = {"llava": {"id", "conversations", "image", "images"}, "messages": {"id", "messages", "tools"}}
LLAVA_IMAGE = "<image>"
FETCH_ATTEMPTS = 3
READER_VERSION = 1  # part of the cache key: raise it when the readers change what they write
WRITE_BATCH = 10_000
PARALLEL_BYTES = 32 << 20  # a JSONL this large is parsed in parallel
# Files that download_resource.sh makes, by name: a missing one is named with the command that makes it.
DOWNLOADED_FILES = {"sharegpt_zh_en.jsonl": "bash download_resource.sh --replay"}


class DataError(ValueError):
    """Training data that cannot be used; the message names the path (and row) and the cause."""


class RowProblem(ValueError):
    """A row that cannot be trained on; `reason` counts it, the message says why."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


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


def parse_entry(entry, data_dir, key):
    """A train_data/eval_data entry (a subset name, or a mapping, or its YAML text from the command line)."""
    if isinstance(entry, str) and entry.lstrip().startswith("{"):
        try:
            entry = yaml.safe_load(entry)
        except yaml.YAMLError as error:
            raise DataError(f"{key}: cannot read {entry!r} as a mapping: {error}") from None
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


def parse_sources(entries, data_dir, key="train_data"):
    """train_data / eval_data -> [Source]; "all" and comma-separated names expand to the_cauldron subsets."""
    from data import resolve_subsets  # here: data.py imports this module

    entries = [entries] if isinstance(entries, (str, dict)) else list(entries or [])
    expanded, seen = [], set()
    for entry in entries:
        is_name = isinstance(entry, str) and not entry.lstrip().startswith("{")
        for item in resolve_subsets(entry) if is_name else [entry]:
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


class ImageRefs:
    """Turns a row's image references into {"bytes", "path"}: relative paths resolve against `root`;
    http(s) URLs point into `cache_dir`, where fetch_urls puts them before training."""

    def __init__(self, root, cache_dir):
        self.root, self.cache_dir = root, cache_dir

    def __call__(self, reference):
        if not isinstance(reference, str) or not reference:
            raise RowProblem("bad image", f"image reference {reference!r} is not a path or URL")
        if reference.startswith("data:"):
            try:
                return {"bytes": base64.b64decode(reference.partition(",")[2], validate=True), "path": None}
            except (binascii.Error, ValueError) as error:
                raise RowProblem("bad image", f"data URL is not valid base64 ({error})") from None
        if reference.startswith(("http://", "https://")):
            return {"bytes": None, "path": cached_path(reference, self.cache_dir)}
        path = reference[len("file://"):] if reference.startswith("file://") else reference
        path = os.path.join(self.root, path)
        if not os.path.isfile(path):
            raise RowProblem("missing image", f"image file {path} not found")
        return {"bytes": None, "path": path}


def cached_path(url, cache_dir):
    suffix = Path(url.split("?")[0]).suffix[:8]
    return os.path.join(os.path.abspath(cache_dir), hashlib.sha256(url.encode()).hexdigest()[:32] + suffix)


def split_llava_text(text):
    """`<image>` placeholders -> parts in order; the line breaks next to a placeholder go with it."""
    parts, pieces = [], text.split(LLAVA_IMAGE)
    for index, piece in enumerate(pieces):
        if index:
            parts.append({"type": "image"})
            piece = piece.lstrip("\n")
        if index < len(pieces) - 1:
            piece = piece.rstrip("\n")
        if piece:
            parts.append({"type": "text", "text": piece})
    return parts


def from_llava(row, image_ref):
    """A LLaVA row: conversations [{from: human|gpt|system, value}], optional image / images."""
    if "video" in row:
        raise RowProblem("video", "video rows are not supported yet")
    images = row.get("images") or ([row["image"]] if row.get("image") else [])
    images = images if isinstance(images, list) else [images]
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns or not all(isinstance(t, dict) for t in turns):
        raise RowProblem("no texts", "'conversations' is not a non-empty list of {from, value}")
    placeholders = sum(str(turn.get("value", "")).count(LLAVA_IMAGE) for turn in turns)
    if placeholders and placeholders != len(images):
        raise RowProblem("placeholder mismatch", f"{placeholders} {LLAVA_IMAGE} placeholder(s) for {len(images)} image(s)")
    messages = []
    for turn in turns:
        role = LLAVA_ROLES.get(turn.get("from"))
        if role is None:
            raise RowProblem("bad row", f"unknown speaker 'from': {turn.get('from')!r}; known: {sorted(LLAVA_ROLES)}")
        value = str(turn.get("value") or "")
        messages.append({"role": role, "content": split_llava_text(value) if LLAVA_IMAGE in value else value})
    if images and not placeholders:  # LLaVA's convention: the images lead the first human turn
        first = next((m for m in messages if m["role"] == "user"), None)
        if first is None:
            raise RowProblem("placeholder mismatch", f"{len(images)} image(s) but no human turn to put them in")
        first["content"] = [{"type": "image"}] * len(images) + [{"type": "text", "text": first["content"]}]
    return messages, None, [image_ref(image) for image in images]


def message_part(part, image_ref, images):
    """One content part in the internal form; image parts append their reference to `images`."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return {"type": "text", "text": str(part.get("text") or "")}
    if kind in ("image_url", "image"):
        reference = part.get(kind)
        reference = reference.get("url") if isinstance(reference, dict) else reference
        images.append(image_ref(reference))
        return {"type": "image"}
    raise RowProblem("bad row", f"unsupported content part {str(part)[:80]}; known types: text, image_url, image")


def from_messages(row, image_ref):
    """An OpenAI-style row: messages [{role, content: str | [parts]}], optional tools."""
    if not isinstance(row.get("messages"), list) or not row["messages"]:
        raise RowProblem("no texts", "'messages' is not a non-empty list")
    messages, images = [], []
    for message in row["messages"]:
        if not isinstance(message, dict) or message.get("role") not in MESSAGE_ROLES:
            role = message.get("role") if isinstance(message, dict) else message
            raise RowProblem("bad row", f"unknown role {role!r}; known: {list(MESSAGE_ROLES)}")
        kept = {key: message[key] for key in MESSAGE_KEYS if message.get(key) is not None}
        content = message.get("content")
        if isinstance(content, list):
            kept["content"] = [message_part(part, image_ref, images) for part in content]
        else:
            kept["content"] = "" if content is None else str(content)
        messages.append(kept)
    tools = row.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise RowProblem("bad row", f"'tools' must be a list, not {type(tools).__name__}")
    return messages, tools, images


READERS = {"llava": from_llava, "messages": from_messages}


def internal_row(raw, fmt, image_ref, source, origin):
    """One row of ROW_FEATURES; a row that cannot be used carries its problem instead."""
    row = {"source": source, "origin": origin, "problem": None, "ignored_keys": None,
           "messages": "[]", "tools": None, "images": []}
    if not isinstance(raw, dict):
        row["problem"] = f"bad row: a row must be a JSON object, not {type(raw).__name__}"
        return row
    unknown = sorted(set(raw) - ROW_KEYS[fmt] - {"video"})
    row["ignored_keys"] = ",".join(unknown) or None
    try:
        messages, tools, images = READERS[fmt](raw, image_ref)
    except RowProblem as problem:
        row["problem"] = f"{problem.reason}: {problem}"
        return row
    row.update(messages=json.dumps(messages, ensure_ascii=False), images=images,
               tools=None if tools is None else json.dumps(tools, ensure_ascii=False))
    return row


def raw_rows(path, span=None):
    """(origin, row or a RowProblem) for each row of a JSON, JSONL or parquet file; for JSONL, `span`
    (start byte, end byte, number of the line at start) reads one part of the file."""
    if path.endswith(".jsonl"):
        start, end, number = span or (0, None, 1)
        with open(path, "rb") as lines:
            lines.seek(start)
            position = start
            for number, line in enumerate(lines, number):
                if end is not None and position >= end:
                    break
                position += len(line)
                if line.strip():
                    try:
                        yield f"{path}:{number}", json.loads(line)
                    except json.JSONDecodeError as error:
                        yield f"{path}:{number}", RowProblem("invalid JSON", f"{error.msg} at character {error.pos}")
                    except UnicodeDecodeError as error:
                        yield f"{path}:{number}", RowProblem("invalid JSON", f"not UTF-8 ({error.reason})")
    elif path.endswith(".json"):
        try:
            rows = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from None
        if not isinstance(rows, list):
            raise DataError(f"{path}: a .json file must hold a list of rows, not {type(rows).__name__}")
        yield from ((f"{path}#{index}", row) for index, row in enumerate(rows))
    else:
        table = Dataset.from_parquet(path)
        yield from ((f"{path}#{index}", row) for index, row in enumerate(table))


def first_row(path):
    return next((row for _, row in raw_rows(path) if not isinstance(row, RowProblem)), None)


def remote_urls(path):
    """The http(s) image URLs a file's rows refer to (a cheap text scan, then a parse of those rows)."""
    urls = set()
    for _, row in raw_rows(path):
        if isinstance(row, dict) and "http" in json.dumps(row):
            urls.update(find_urls(row))
    return urls


def find_urls(value):
    if isinstance(value, str):
        return {value} if value.startswith(("http://", "https://")) else set()
    if isinstance(value, dict):
        return set().union(*map(find_urls, value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*map(find_urls, value)) if value else set()
    return set()


def fetch_urls(urls, cache_dir, timeout=30):
    """Downloads each URL not yet in `cache_dir`, with retries; -> {url: why it failed}."""
    os.makedirs(cache_dir, exist_ok=True)
    missing = sorted(url for url in urls if not os.path.isfile(cached_path(url, cache_dir)))
    failures = {}
    for url in tqdm(missing, desc="fetching image URLs", disable=not missing):
        for attempt in range(FETCH_ATTEMPTS):
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    payload = response.read()
                target = cached_path(url, cache_dir)
                Path(target + ".part").write_bytes(payload)
                os.replace(target + ".part", target)  # a half-written file never looks fetched
                failures.pop(url, None)
                break
            except (OSError, ValueError) as error:  # URLError, HTTPError, timeouts; ValueError: a malformed URL
                failures[url] = f"{type(error).__name__}: {error}"
                if attempt + 1 < FETCH_ATTEMPTS:
                    time.sleep(0.2 * 2**attempt)
    if failures:
        listed = "\n".join(f"  {url}: {why}" for url, why in failures.items())
        logger.warning(f"{len(failures)} of {len(missing)} image URLs could not be fetched:\n{listed}")
    return failures


def write_rows(path, fmt, data_root, cache_dir, source, failed_urls, target, span=None, progress=None):
    """Writes the internal rows of a file (or of one `span` of a JSONL) to the Arrow file `target`;
    with `progress` (a description) a bar counts the rows."""
    image_ref = ImageRefs(data_root or os.path.dirname(os.path.abspath(path)), cache_dir)
    schema = ROW_FEATURES.arrow_schema
    with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        batch = []
        for origin, raw in tqdm(raw_rows(path, span), desc=progress, unit=" rows", disable=progress is None):
            if isinstance(raw, RowProblem):
                row = {**internal_row({}, fmt, image_ref, source, origin), "problem": f"{raw.reason}: {raw}"}
            else:
                row = internal_row(raw, fmt, image_ref, source, origin)
                failed = [url for url in find_urls(raw) if url in failed_urls] if failed_urls else []
                if failed and row["problem"] is None:
                    row.update(problem=f"bad image: {failed[0]} could not be fetched ({failed_urls[failed[0]]})",
                               messages="[]", images=[])
            batch.append(row)
            if len(batch) == WRITE_BATCH:
                writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
                batch = []
        writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))


def jsonl_spans(path, parts):
    """`parts` (start, end, first line number) byte ranges of a JSONL file, cut at line starts."""
    size = os.path.getsize(path)
    cuts = [0]
    with open(path, "rb") as handle:
        for part in range(1, parts):
            handle.seek(max(size * part // parts, cuts[-1]))
            handle.readline()
            cuts.append(min(handle.tell(), size))
        cuts.append(size)
        spans, line = [], 1
        for start, end in zip(cuts, cuts[1:]):
            spans.append((start, end, line))
            handle.seek(start)
            line += handle.read(end - start).count(b"\n")
    return [span for span in spans if span[0] < span[1]] or [(0, size, 1)]


def read_file(path, fmt, data_root, cache_dir, source):
    """One file's rows in ROW_FEATURES, parsed once (a large JSONL in parallel on all cores) into
    memory-mapped Arrow files under datasets' cache, keyed by the file's path, size and mtime and
    by everything else that changes the rows."""
    failed = fetch_urls(remote_urls(path), cache_dir) if has_urls(path) else {}
    stat = os.stat(path)
    key = json.dumps([READER_VERSION, os.path.abspath(path), stat.st_size, stat.st_mtime_ns, fmt, data_root,
                      os.path.abspath(cache_dir), source, sorted(failed.items())])
    folder = Path(datasets.config.HF_DATASETS_CACHE) / "own_data" / hashlib.sha256(key.encode()).hexdigest()[:32]
    if not (folder / "complete").is_file():
        parts = min(os.cpu_count() or 1, 1 + stat.st_size // PARALLEL_BYTES) if path.endswith(".jsonl") else 1
        spans = jsonl_spans(path, parts) if path.endswith(".jsonl") else [None]
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("part-*.arrow"):  # left by an interrupted first load
            stale.unlink()
        # Parts are of about equal size, so the first one's bar shows how far the whole file is.
        progress = f"reading {path}" + (f" (part 1 of {len(spans)}, the rest in parallel)" if len(spans) > 1 else "")
        jobs = [(path, fmt, data_root, cache_dir, source, failed, folder / f"part-{i:03d}.arrow", span,
                 None if i else progress) for i, span in enumerate(spans)]
        if len(jobs) > 1:
            with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
                pool.starmap(write_rows, jobs)
        else:
            write_rows(*jobs[0])
        (folder / "complete").write_text(key)
    files = sorted(folder.glob("part-*.arrow"))
    return concatenate_datasets([Dataset.from_file(str(file)) for file in files])


def has_urls(path):
    """A quick scan of the raw text: only files that mention http(s) URLs get parsed for them."""
    if path.endswith(".parquet"):
        return True
    with open(path, "rb") as handle:
        return any(b"http://" in chunk or b"https://" in chunk for chunk in iter(lambda: handle.read(1 << 24), b""))


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
            "tools": [None] * len(texts), "source": [source] * len(texts),
            "origin": [f"{source}#{index}" for index in indices],
            "problem": [None] * len(texts), "ignored_keys": [None] * len(texts),
        }

    text_columns = ds.with_format("arrow").map(
        convert, batched=True, with_indices=True, remove_columns=ds.column_names,
        features=Features({k: v for k, v in ROW_FEATURES.items() if k != "images"}), desc=f"{source}: rows",
    )
    images = ds.select_columns(["images"]).cast_column("images", ROW_FEATURES["images"])
    return concatenate_datasets([images, text_columns.with_format(None)], axis=1).select_columns(list(ROW_FEATURES))


def read_source(source, data_dir, cache_dir, max_images):
    """A Source's rows in ROW_FEATURES, problems included, and its format."""
    from data import load_subset  # here: data.py imports this module

    if source.subset:
        return from_cauldron(load_subset(data_dir, source.name), source.name, max_images), "cauldron"
    parts, formats = [], []
    for path in files_of(source.path):
        fmt = source.format or detect_format(first_row(path), path)
        if source.format is None:
            logger.info(f"{path}: format {fmt} (detected from its first row)")
        if fmt == "cauldron":
            parts.append(from_cauldron(Dataset.from_parquet(path).select_columns(["images", "texts"]),
                                       source.name, max_images))
        else:
            parts.append(read_file(path, fmt, source.data_root, cache_dir, source.name))
        formats.append(fmt)
    return (concatenate_datasets(parts) if len(parts) > 1 else parts[0]), "+".join(dict.fromkeys(formats))


def problems_of(ds):
    """(indices of usable rows, [(origin, problem)]) from the problem column, without reading images."""
    problem = ds.data.column("problem")
    bad = pc.is_valid(problem).to_numpy(zero_copy_only=False)
    origins = ds.data.column("origin").filter(bad).to_pylist()
    return (~bad).nonzero()[0], list(zip(origins, problem.filter(bad).to_pylist()))


def ignored_keys(ds):
    """The keys some rows carry that the reader ignores, named once."""
    values = pc.unique(ds.data.column("ignored_keys").drop_null()).to_pylist()
    return sorted({key for value in values for key in value.split(",")})
