"""The data check, `python train.py cfg.yaml --check_data true`: reads every source of train_data and
eval_data as training would, and reports per source the rows read, the format, text-only / 1 / 2+ image
rows, every problem (file:line or file#index and the cause) and token-length percentiles, without
loading a model. Image sizes come from the files' headers (no pixel is decoded) and give the image
blocks' token counts; text is counted with the tokenizer. Rows are measured in parallel on all cores.
Exit status 1 when a problem would stop training under on_bad_sample: raise.
"""

import io
import os
import time
import uuid
from collections import Counter

import numpy as np
from PIL import Image
from transformers import AutoProcessor
from transformers.models.smolvlm.processing_smolvlm import get_image_prompt_string

import sources
import stitch
from collate import BadSample, Collator, count_images

MEASURES = {"tokens": "int64", "images": "int64", "problem": "string", "over_max_length": "bool"}
LISTED_PER_SOURCE = 50


def load_processor(model_args):
    """The processor training would use, built from configs and tokenizer only."""
    if model_args.init_from:
        return AutoProcessor.from_pretrained(model_args.init_from)
    tokenizer = stitch.load_tokenizer(model_args.qwen_path)
    smol_config, qwen_config = stitch.load_source_configs(model_args.smolvlm_path, model_args.qwen_path)
    config = stitch.build_config(smol_config, qwen_config, tokenizer)
    return stitch.build_processor(model_args.smolvlm_path, tokenizer, config)


def header_size(image, position):
    """(width, height) from the image file's header; PIL decodes no pixels until asked."""
    try:
        with Image.open(io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]) as opened:
            return opened.size
    except Exception as error:  # whatever PIL raises on a file it cannot read
        where = image.get("path") or f"embedded image {position}"
        raise BadSample(f"{where} cannot be read ({type(error).__name__}: {error})", reason="bad image") from None


class RowMeasure:
    """For datasets.map: each row's token count (text tokens + image blocks from header sizes) and
    problem, as the config's collator would meet it."""

    def __init__(self, processor, data_args):
        self.collator = Collator.from_args(processor, data_args)
        self.processor, self.tokenizer = processor, processor.tokenizer
        self.block_tokens = {}

    def image_tokens(self, size):
        """Tokens of the block the processor expands one image of `size` into."""
        _, rows, cols = self.processor.image_processor.get_number_of_image_patches(size[1], size[0])
        if (rows, cols) not in self.block_tokens:
            p = self.processor
            block = get_image_prompt_string(rows, cols, p.image_seq_len, p.fake_image_token, p.image_token,
                                            p.global_image_token)
            self.block_tokens[rows, cols] = len(self.tokenizer(block, add_special_tokens=False)["input_ids"])
        return self.block_tokens[rows, cols]

    def count(self, text):
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def measure(self, row):
        messages, tools = self.collator.conversation_of(row)
        image_count = count_images(messages)
        blocks = [self.image_tokens(header_size(image, i)) for i, image in enumerate(row["images"][:image_count])]
        text, _ = self.collator.render(messages, tools, image_count)
        tokens = self.count(text) - image_count + sum(blocks)  # each placeholder becomes its block
        if blocks and tokens > self.collator.max_length:
            image_end = self.count(text[: text.rfind(self.processor.image_token)]) + sum(blocks)
            if image_end > self.collator.max_length:
                raise BadSample(f"its image block(s) end at token {image_end} but max_length is "
                                f"{self.collator.max_length}", reason="image exceeds max_length")
        return tokens, image_count

    def __call__(self, batch):
        out = {key: [] for key in MEASURES}
        for messages, tools, images, problem in zip(batch["messages"], batch["tools"], batch["images"], batch["problem"]):
            tokens, image_count = 0, 0
            if problem is None:
                try:
                    tokens, image_count = self.measure({"messages": messages, "tools": tools, "images": images})
                except BadSample as bad:
                    problem = f"{bad.reason}: {bad}"
            out["tokens"].append(tokens)
            out["images"].append(image_count)
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
    numbers = {key: np.asarray(measured[key]) for key in ("tokens", "images", "over_max_length")}
    return numbers, measured["origin"], measured["problem"]


def report_source(name, fmt, ds, measure):
    """Prints one source's figures and problems; returns its problem count and rows read."""
    numbers, origins, problems = measure_source(ds, measure)
    images, over = numbers["images"], numbers["over_max_length"]
    usable = np.array([problem is None for problem in problems])
    tokens = numbers["tokens"][usable]
    lengths = (f"tokens p50 {np.percentile(tokens, 50):.0f}, p95 {np.percentile(tokens, 95):.0f}, max {tokens.max()}"
               if len(tokens) else "tokens: no usable row")
    print(f"{name} ({fmt}): {len(ds)} rows read; text-only {int(((images == 0) & usable).sum())}, "
          f"1 image {int(((images == 1) & usable).sum())}, 2+ images {int(((images >= 2) & usable).sum())}; "
          f"{lengths}; {int(over.sum())} over max_length {measure.collator.max_length}")
    ignored = sources.ignored_keys(ds)
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


def run(model_args, data_args):
    """Checks every row of train_data and eval_data; returns the exit status (1: training would stop)."""
    started = time.perf_counter()
    measure = RowMeasure(load_processor(model_args), data_args)
    print(f"data check: max_length {data_args.max_length}, max_images {data_args.max_images}, "
          f"on_bad_sample {data_args.on_bad_sample}")
    total, rows, checked = 0, 0, 0
    for key in ("train_data", "eval_data"):
        for source in sources.parse_sources(getattr(data_args, key), data_args.data_dir, key):
            checked += 1
            try:
                ds, fmt = sources.read_source(source, data_args.data_dir, data_args.image_cache_dir, data_args.max_images)
            except sources.DataError as error:
                print(f"{source.name}: cannot be read: {error}")
                total += 1
                continue
            problems, read = report_source(source.name, fmt, ds, measure)
            total, rows = total + problems, rows + read
    verdict = "would stop training under on_bad_sample: raise" if total else "found"
    print(f"data check: {rows:,} rows in {checked} source(s), {total} problem(s) {verdict}, "
          f"{time.perf_counter() - started:.0f} s")
    return 1 if total else 0
