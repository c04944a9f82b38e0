"""Readers for your own files: LLaVA JSON/JSONL and OpenAI-style `messages` JSONL (or parquet), each row
turned into the one row shape of qwen3_smvl/data/row_shape.py (a preference row, with `chosen` and `rejected`
answers to its conversation, in either format); image references resolved, http(s) URLs fetched into a
cache, and each file's rows parsed once into Arrow files under datasets' cache.
"""

import base64
import binascii
import hashlib
import json
import logging
import multiprocessing
import os
import re
import time
import urllib.request
from pathlib import Path

import datasets
import pyarrow as pa
from datasets import Dataset, concatenate_datasets
from tqdm.auto import tqdm

from qwen3_smvl.data.row_shape import ROW_FEATURES, DataError, RowProblem

logger = logging.getLogger(__name__)

LLAVA_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
MESSAGE_ROLES = ("system", "user", "assistant", "tool")
MESSAGE_KEYS = ("role", "content", "reasoning_content", "tool_calls", "name", "tool_call_id")
PREFERENCE_KEYS = ("chosen", "rejected")
ROW_KEYS = {"llava": {"id", "conversations", "image", "images", "video", "videos", *PREFERENCE_KEYS},
            "messages": {"id", "messages", "tools", *PREFERENCE_KEYS}}
LLAVA_PLACEHOLDERS = {"<image>": "image", "<video>": "video"}
VIDEO_PART_KEYS = ("video", "url", "path")  # where transformers' chat templates read a video part's reference
FETCH_ATTEMPTS = 3
READER_VERSION = 4  # part of the cache key: raise it when the readers change what they write
WRITE_BATCH = 10_000
PARALLEL_BYTES = 32 << 20  # a JSONL this large is parsed in parallel


class MediaRefs:
    """Turns a row's image and video references into {"bytes", "path"}, each appended to `images` or
    `videos` in order: relative paths resolve against `root`; http(s) URLs point into `cache_dir`, where
    fetch_urls puts them before training. The files are not opened here (the collator decodes them)."""

    def __init__(self, root, cache_dir):
        self.root, self.cache_dir = root, cache_dir
        self.images, self.videos = [], []

    def add(self, kind, reference):
        """The internal part {"type": kind} for `reference`, which is resolved and listed."""
        (self.images if kind == "image" else self.videos).append(self.resolve(kind, reference))
        return {"type": kind}

    def resolve(self, kind, reference):
        if not isinstance(reference, str) or not reference:
            raise RowProblem(f"bad {kind}", f"{kind} reference {reference!r} is not a path or URL")
        if reference.startswith("data:"):
            try:
                return {"bytes": base64.b64decode(reference.partition(",")[2], validate=True), "path": None}
            except (binascii.Error, ValueError) as error:
                raise RowProblem(f"bad {kind}", f"data URL is not valid base64 ({error})") from None
        if reference.startswith(("http://", "https://")):
            return {"bytes": None, "path": cached_path(reference, self.cache_dir)}
        path = reference[len("file://"):] if reference.startswith("file://") else reference
        path = os.path.join(self.root, path)
        if not os.path.isfile(path):
            raise RowProblem(f"missing {kind}", f"{kind} file {path} not found")
        return {"bytes": None, "path": path}


def cached_path(url, cache_dir):
    suffix = Path(url.split("?")[0]).suffix[:8]
    return os.path.join(os.path.abspath(cache_dir), hashlib.sha256(url.encode()).hexdigest()[:32] + suffix)


def split_llava_text(text):
    """`<image>` / `<video>` placeholders -> parts in order; the line breaks next to a placeholder go with it."""
    parts, pieces = [], re.split(f"({'|'.join(map(re.escape, LLAVA_PLACEHOLDERS))})", text)
    for index, piece in enumerate(pieces):
        if index % 2:
            parts.append({"type": LLAVA_PLACEHOLDERS[piece]})
            continue
        if index:
            piece = piece.lstrip("\n")
        if index < len(pieces) - 1:
            piece = piece.rstrip("\n")
        if piece:
            parts.append({"type": "text", "text": piece})
    return parts


def listed(row, *keys):
    """A row's references under the first of `keys` it holds: a list, or one reference."""
    value = next((row[key] for key in keys if row.get(key)), None)
    return [] if value is None else value if isinstance(value, list) else [value]


def from_llava(row, refs):
    """A LLaVA row: conversations [{from: human|gpt|system, value}], optional image / images and
    video / videos, placed by `<image>` / `<video>` in the human turns (or leading the first one)."""
    media = {"image": listed(row, "images", "image"), "video": listed(row, "videos", "video")}
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns or not all(isinstance(t, dict) for t in turns):
        raise RowProblem("no texts", "'conversations' is not a non-empty list of {from, value}")
    placed = {}
    for placeholder, kind in LLAVA_PLACEHOLDERS.items():
        placed[kind] = sum(str(turn.get("value", "")).count(placeholder) for turn in turns)
        if placed[kind] and placed[kind] != len(media[kind]):
            raise RowProblem("placeholder mismatch",
                             f"{placed[kind]} {placeholder} placeholder(s) for {len(media[kind])} {kind}(s)")
    messages = []
    for turn in turns:
        role = LLAVA_ROLES.get(turn.get("from"))
        if role is None:
            raise RowProblem("bad row", f"unknown speaker 'from': {turn.get('from')!r}; known: {sorted(LLAVA_ROLES)}")
        value = str(turn.get("value") or "")
        placeholders = any(placeholder in value for placeholder in LLAVA_PLACEHOLDERS)
        messages.append({"role": role, "content": split_llava_text(value) if placeholders else value})
    leading = [{"type": kind} for kind in ("video", "image") if not placed[kind] for _ in media[kind]]
    if leading:  # LLaVA's convention: unplaced images (and videos) lead the first human turn
        first = next((m for m in messages if m["role"] == "user"), None)
        if first is None:
            raise RowProblem("placeholder mismatch", f"{len(leading)} image(s)/video(s) but no human turn to put them in")
        text = first["content"] if isinstance(first["content"], list) else [{"type": "text", "text": first["content"]}]
        first["content"] = leading + text
    taken = {kind: 0 for kind in media}
    for message in messages:  # references listed in the order their parts stand
        for part in message["content"] if isinstance(message["content"], list) else []:
            if part["type"] in taken:
                refs.add(part["type"], media[part["type"]][taken[part["type"]]])
                taken[part["type"]] += 1
    return messages, None


def message_part(part, refs):
    """One content part in the internal form; image and video parts list their reference in `refs`."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return {"type": "text", "text": str(part.get("text") or "")}
    if kind in ("image_url", "image"):
        reference = part.get(kind)
        reference = reference.get("url") if isinstance(reference, dict) else reference
        return refs.add("image", reference)
    if kind == "video_url":
        reference = part.get(kind)
        return refs.add("video", reference.get("url") if isinstance(reference, dict) else reference)
    if kind == "video":
        return refs.add("video", next((part[key] for key in VIDEO_PART_KEYS if part.get(key)), None))
    raise RowProblem("bad row", f"unsupported content part {str(part)[:80]}; "
                                "known types: text, image_url, image, video_url, video")


def from_messages(row, refs):
    """An OpenAI-style row: messages [{role, content: str | [parts]}], optional tools."""
    if not isinstance(row.get("messages"), list) or not row["messages"]:
        raise RowProblem("no texts", "'messages' is not a non-empty list")
    messages = []
    for message in row["messages"]:
        if not isinstance(message, dict) or message.get("role") not in MESSAGE_ROLES:
            role = message.get("role") if isinstance(message, dict) else message
            raise RowProblem("bad row", f"unknown role {role!r}; known: {list(MESSAGE_ROLES)}")
        kept = {key: message[key] for key in MESSAGE_KEYS if message.get(key) is not None}
        content = message.get("content")
        if isinstance(content, list):
            kept["content"] = [message_part(part, refs) for part in content]
        else:
            kept["content"] = "" if content is None else str(content)
        messages.append(kept)
    tools = row.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise RowProblem("bad row", f"'tools' must be a list, not {type(tools).__name__}")
    return messages, tools


READERS = {"llava": from_llava, "messages": from_messages}


def answer_text(answer, key):
    """A preference answer as text: a string, one turn ({from, value} or {role, content}) or a list of
    one such turn (TRL's conversational form)."""
    if isinstance(answer, list) and len(answer) == 1:
        answer = answer[0]
    if isinstance(answer, dict):
        answer = answer.get("value", answer.get("content"))
    if not isinstance(answer, str):
        raise RowProblem("bad row", f"'{key}' must be the answer's text, one turn or a list of one turn, not {str(answer)[:60]}")
    return answer


def with_preference(raw, messages):
    """A preference row's prompt with its chosen answer as the last turn, and its rejected answer."""
    for key in PREFERENCE_KEYS:
        if raw.get(key) in (None, "", []):
            raise RowProblem(f"no {key}", f"a preference row needs both 'chosen' and 'rejected'; '{key}' is missing or empty")
    chosen, rejected = answer_text(raw["chosen"], "chosen"), answer_text(raw["rejected"], "rejected")
    if chosen.strip() == rejected.strip():
        raise RowProblem("chosen equals rejected", f"'chosen' and 'rejected' are the same answer ({chosen[:60]!r}): "
                                                   "the pair teaches no preference")
    if messages[-1]["role"] != "user":
        raise RowProblem("bad row", "a preference row's conversation must end with the question (a user turn); "
                                    "its answers are 'chosen' and 'rejected'")
    return [*messages, {"role": "assistant", "content": chosen}], rejected


def internal_row(raw, fmt, refs, source, origin):
    """One row of ROW_FEATURES, its media resolved by `refs` (a fresh MediaRefs); a row that cannot be
    used carries its problem instead."""
    row = {"source": source, "origin": origin, "problem": None, "ignored_keys": None,
           "messages": "[]", "tools": None, "images": [], "videos": [], "rejected": None}
    if not isinstance(raw, dict):
        row["problem"] = f"bad row: a row must be a JSON object, not {type(raw).__name__}"
        return row
    unknown = sorted(set(raw) - ROW_KEYS[fmt])
    row["ignored_keys"] = ",".join(unknown) or None
    try:
        messages, tools = READERS[fmt](raw, refs)
        if any(key in raw for key in PREFERENCE_KEYS):
            messages, row["rejected"] = with_preference(raw, messages)
    except RowProblem as problem:
        row["problem"] = f"{problem.reason}: {problem}"
        return row
    row.update(messages=json.dumps(messages, ensure_ascii=False), images=refs.images, videos=refs.videos,
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
    """The http(s) image and video URLs a file's rows refer to (a cheap text scan, then a parse of those rows)."""
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
    for url in tqdm(missing, desc="fetching image and video URLs", disable=not missing):
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
        logger.warning(f"{len(failures)} of {len(missing)} image/video URLs could not be fetched:\n{listed}")
    return failures


def write_rows(path, fmt, data_root, cache_dir, source, failed_urls, target, span=None, progress=None):
    """Writes the internal rows of a file (or of one `span` of a JSONL) to the Arrow file `target`;
    with `progress` (a description) a bar counts the rows."""
    root = data_root or os.path.dirname(os.path.abspath(path))
    schema = ROW_FEATURES.arrow_schema
    with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        batch = []
        for origin, raw in tqdm(raw_rows(path, span), desc=progress, unit=" rows", disable=progress is None):
            if isinstance(raw, RowProblem):
                row = {**internal_row({}, fmt, None, source, origin), "problem": f"{raw.reason}: {raw}"}
            else:
                row = internal_row(raw, fmt, MediaRefs(root, cache_dir), source, origin)
                failed = [url for url in find_urls(raw) if url in failed_urls] if failed_urls else []
                if failed and row["problem"] is None:
                    videos = {video["path"] for video in row["videos"]}
                    kind = "video" if cached_path(failed[0], cache_dir) in videos else "image"
                    row.update(problem=f"bad {kind}: {failed[0]} could not be fetched ({failed_urls[failed[0]]})",
                               messages="[]", images=[], videos=[])
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
