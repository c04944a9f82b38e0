"""The data check, `python train.py cfg.yaml --check_data true`: reads every source of train_data and
eval_data as training would, and reports per source the rows read, the format, text-only / 1 / 2+ image
rows, every problem (file:line or file#index and the cause) and token-length percentiles, without
loading a model. It measures with training's processor (image_longest_edge, image_splitting,
init_from's saved processor) and training's token count (lengths.TokenCounter: image sizes from the
files' headers with EXIF orientation applied, no pixel decoded; text counted with the tokenizer).
Rows are measured in parallel on all cores. With stage: dpo (`preference`) a row needs a rejected answer
beside its chosen one, and is as long as the longer of its two conversations.
Exit status 1 when a problem would stop training under on_bad_sample: raise.
"""

import json
import os
import time
import uuid
from collections import Counter

import numpy as np

from qwen3_smvl import graft
from qwen3_smvl.data import lengths, row_shape, sources
from qwen3_smvl.data.collate import BadSample, Collator
from qwen3_smvl.training import train_processor

MEASURES = {"tokens": "int64", "images": "int64", "frames": "int64", "video_tokens": "int64", "problem": "string",
            "over_max_length": "bool"}
LISTED_PER_SOURCE = 50


class RowMeasure:
    """For datasets.map: each row's token count and problem, as the config's collator would meet it
    (lengths.TokenCounter: image blocks from header sizes after EXIF orientation, text tokenized)."""

    def __init__(self, processor, data_args, preference=False):
        self.collator = Collator.from_args(processor, data_args)
        self.counter = lengths.TokenCounter(self.collator)
        self.preference = preference

    def measure(self, row):
        if self.preference:
            problem = row_shape.preference_problem(row["rejected"], row["videos"])
            if problem:
                raise BadSample(problem.partition(": ")[2], reason=problem.partition(":")[0])
        measured = self.counter.measure(row)
        if self.preference:  # the rejected answer's conversation, when it is the longer one
            *prompt, _ = json.loads(row["messages"])
            rejected = [*prompt, {"role": "assistant", "content": row["rejected"]}]
            measured = max(measured, self.counter.measure({**row, "messages": json.dumps(rejected)}),
                           key=lambda m: m.tokens)
        if measured.image_end > self.collator.max_length:
            raise BadSample(f"its image block(s) end at token {measured.image_end} but max_length is "
                            f"{self.collator.max_length}", reason="image exceeds max_length")
        return measured.tokens, measured.images, measured.frames, measured.video_tokens

    def __call__(self, batch):
        out = {key: [] for key in MEASURES}
        videos_column = batch.get("videos") or [[]] * len(batch["messages"])
        for messages, tools, images, videos, problem, rejected in zip(
                batch["messages"], batch["tools"], batch["images"], videos_column, batch["problem"], batch["rejected"]):
            tokens, image_count, frames, video_tokens = 0, 0, 0, 0
            if problem is None:
                row = {"messages": messages, "tools": tools, "images": images, "videos": videos, "rejected": rejected}
                try:
                    tokens, image_count, frames, video_tokens = self.measure(row)
                except BadSample as bad:
                    problem = f"{bad.reason}: {bad}"
            out["tokens"].append(tokens)
            out["images"].append(image_count)
            out["frames"].append(frames)
            out["video_tokens"].append(video_tokens)
            out["problem"].append(problem)
            out["over_max_length"].append(tokens > self.collator.max_length)
        return out


def measure_source(ds, measure):
    from datasets import Features, Value

    processes = min(os.cpu_count() or 1, -(-len(ds) // 64))  # a process per 64 rows at most
    measured = ds.map(
        measure, batched=True, batch_size=64, num_proc=processes if processes > 1 else None,
        remove_columns=[c for c in ds.column_names if c != "origin"], keep_in_memory=True,
        new_fingerprint=uuid.uuid4().hex, desc="checking rows",
        features=Features({"origin": Value("string"), **{key: Value(kind) for key, kind in MEASURES.items()}}),
    )
    numbers = {key: np.asarray(measured[key]) for key in ("tokens", "images", "frames", "video_tokens", "over_max_length")}
    return numbers, measured["origin"], measured["problem"]


def video_line(numbers, with_video, origins, max_length):
    """Frames and tokens per video of a source, and where its longest video block is, against max_length."""
    frames, video_tokens = numbers["frames"][with_video], numbers["video_tokens"][with_video]
    longest = int(np.flatnonzero(with_video)[video_tokens.argmax()])
    return (f"  {int(with_video.sum())} video rows: frames per video p50 {np.percentile(frames, 50):.0f}, "
            f"max {frames.max()}; tokens per video p50 {np.percentile(video_tokens, 50):.0f}, max {video_tokens.max()} "
            f"({origins[longest]}: {video_tokens.max() / max_length:.0%} of max_length {max_length}; "
            "video_fps and video_max_frames set the frames per video)")


def report_source(name, fmt, ds, measure):
    """Prints one source's figures and problems; returns its problem count and rows read."""
    numbers, origins, problems = measure_source(ds, measure)
    images, over = numbers["images"], numbers["over_max_length"]
    usable = np.array([problem is None for problem in problems])
    tokens = numbers["tokens"][usable]
    lengths = (f"tokens p50 {np.percentile(tokens, 50):.0f}, p95 {np.percentile(tokens, 95):.0f}, max {tokens.max()}"
               if len(tokens) else "tokens: no usable row")
    print(f"{name} ({fmt}): {len(ds)} rows read; text-only {int(((images == 0) & (numbers['frames'] == 0) & usable).sum())}, "
          f"1 image {int(((images == 1) & usable).sum())}, 2+ images {int(((images >= 2) & usable).sum())}; "
          f"{lengths}; {int(over.sum())} over max_length {measure.collator.max_length}")
    ignored = row_shape.ignored_keys(ds)
    with_video = (numbers["frames"] > 0) & usable
    if with_video.any():
        print(video_line(numbers, with_video, origins, measure.collator.max_length))
    if ignored:
        print(f"  keys the {fmt} reader ignores: {ignored}")
    found = [(origin, problem) for origin, problem in zip(origins, problems) if problem is not None]
    if found:
        counts = Counter(problem.split(":")[0] for _, problem in found)
        print(f"  {len(found)} problem(s): " + ", ".join(f"{reason} {count}" for reason, count in counts.items()))
        for origin, problem in found[:LISTED_PER_SOURCE]:
            print(f"  {origin}: {problem}")
        if len(found) > LISTED_PER_SOURCE:
            print(f"  ... and {len(found) - LISTED_PER_SOURCE} more")
    return len(found), len(ds)


def run(model_args, data_args, preference=False):
    """Checks every row of train_data and eval_data (as preference rows for stage dpo); returns the exit
    status (1: training would stop)."""
    started = time.perf_counter()
    measure = RowMeasure(train_processor.processor_without_model(model_args, data_args), data_args, preference)
    video_processor = measure.collator.processor.video_processor
    print(f"data check: max_length {data_args.max_length}, max_images {data_args.max_images}, "
          f"on_bad_sample {data_args.on_bad_sample}, videos at {video_processor.fps} fps up to "
          f"{video_processor.num_frames} frames")
    total, rows, checked = 0, 0, 0
    for key in ("train_data", "eval_data"):
        for source in sources.parse_sources(getattr(data_args, key), data_args.data_dir, key):
            checked += 1
            try:
                ds, fmt = sources.read_source(source, data_args.data_dir, data_args.image_cache_dir, data_args.max_images)
                train_processor.check_video_template(measure.collator.processor, model_args, [ds])
            except sources.DataError as error:
                print(f"{source.name}: cannot be read: {error}")
                total += 1
                continue
            except graft.GraftError as error:
                print(f"{source.name}: its video rows cannot be encoded: {error}")
                total += 1
                continue
            problems, read = report_source(source.name, fmt, ds, measure)
            total, rows = total + problems, rows + read
    verdict = "would stop training under on_bad_sample: raise" if total else "found"
    print(f"data check: {rows:,} rows in {checked} source(s), {total} problem(s) {verdict}, "
          f"{time.perf_counter() - started:.0f} s")
    return 1 if total else 0
