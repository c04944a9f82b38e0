"""Tiny random stand-ins for the two source checkpoints, for tests and the offline demo.

They have the same model types and on-disk layout as Qwen3-0.6B and SmolVLM2-256M-Video-Instruct,
so `stitch.py` loads them through the same `from_pretrained` path as the real ones.
"""

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, Features, Value
from PIL import Image
from transformers import (
    AutoTokenizer,
    GenerationConfig,
    LlamaConfig,
    Qwen3Config,
    Qwen3ForCausalLM,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
    SmolVLMImageProcessor,
    SmolVLMVideoProcessor,
)
from transformers.models.smolvlm.configuration_smolvlm import SmolVLMVisionConfig

from qwen3_smvl.data.the_cauldron import FEATURES

# Qwen3's added tokens in id order; the first 14 are "special" (never split, skipped on decode).
QWEN3_ADDED_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
]
QWEN3_SPECIAL_COUNT = 14
# Qwen3's ordinary BPE tokens; its added tokens start here. Only the stand-in tokenizer uses it:
# the graft reads every id from the real tokenizer.
QWEN3_BASE_VOCAB = 151643

COLOURS = {
    "red": (220, 20, 20), "green": (20, 160, 20), "blue": (20, 40, 220),
    "yellow": (240, 220, 20), "black": (0, 0, 0), "white": (255, 255, 255),
}
QUESTIONS = ["What colour is the picture?", "Which colour fills this image?", "Name the colour of this image."]

# Image geometries: "tiny" trains in seconds on a CPU (one 32 px view, 4 features);
# "real" is SmolVLM2's own (512 px tiles of 64 features, images resized to 2048 px, splitting on).
GEOMETRIES = {
    "tiny": dict(image_size=32, patch_size=8, scale_factor=2, longest_edge=32, splitting=False),
    "real": dict(image_size=512, patch_size=16, scale_factor=4, longest_edge=2048, splitting=True),
}


def _byte_level_alphabet():
    """The 256 printable characters GPT-2-style byte-level BPE maps bytes to."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    extra = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]


def build_standin_tokenizer(out_dir, base_vocab_size=512, word_fillers=False):
    """A byte-level BPE tokenizer laid out like Qwen3's: `base_vocab_size` ordinary tokens, then
    Qwen3's added tokens. With base_vocab_size=QWEN3_BASE_VOCAB every special token sits at its real id.
    With `word_fillers` the fillers decode as words after a space (" w7"), so a random model's text has word
    boundaries as real text does (a text streamer emits up to the last space)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    alphabet = _byte_level_alphabet()
    filler = "\u0120w{}" if word_fillers else "<unused_{}>"  # \u0120 (Ġ): byte-level BPE's space
    fillers = [filler.format(i) for i in range(base_vocab_size - len(alphabet))]
    vocab = {token: i for i, token in enumerate(alphabet + fillers)}
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n")
    added = {
        str(base_vocab_size + i): {
            "content": token, "lstrip": False, "rstrip": False, "normalized": False,
            "single_word": False, "special": i < QWEN3_SPECIAL_COUNT,
        }
        for i, token in enumerate(QWEN3_ADDED_TOKENS)
    }
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "added_tokens_decoder": added,
        "additional_special_tokens": QWEN3_ADDED_TOKENS[1:QWEN3_SPECIAL_COUNT],
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "add_prefix_space": False,
        "errors": "replace",
        "split_special_tokens": False,
        "model_max_length": 131072,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return AutoTokenizer.from_pretrained(out_dir)


def build_tiny_qwen(out_dir, tokenizer_dir, hidden_size=64, num_layers=2, seed=0, dtype=torch.float32):
    """A random Qwen3ForCausalLM sized for tests, saved in `dtype` (the real one is bf16) with the
    tokenizer from `tokenizer_dir` and a generation config that stops at <|im_end|>, as Qwen3-0.6B's does."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Qwen3Config(
        vocab_size=-(-len(tokenizer) // 64) * 64,  # padded past the tokenizer, as Qwen3's is
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    model.to(dtype).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)


def build_tiny_smolvlm(out_dir, geometry="tiny", vision_hidden=32, seed=0, dtype=torch.float32):
    """A random SmolVLMForConditionalGeneration (llama text tower, as SmolVLM2's SmolLM2) with its
    image and video processors, laid out like SmolVLM2-256M-Video-Instruct's directory."""
    geo = GEOMETRIES[geometry]
    vision = SmolVLMVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=vision_hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=geo["image_size"],
        patch_size=geo["patch_size"],
    )
    text = LlamaConfig(
        vocab_size=300, hidden_size=48, intermediate_size=96, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=24,
    )
    config = SmolVLMConfig(
        vision_config=vision, text_config=text, scale_factor=geo["scale_factor"], image_token_id=299
    )
    torch.manual_seed(seed)
    SmolVLMForConditionalGeneration(config).to(dtype).save_pretrained(out_dir)
    image_size = {"longest_edge": geo["image_size"]}
    SmolVLMImageProcessor(
        size={"longest_edge": geo["longest_edge"]},
        max_image_size=image_size,
        do_image_splitting=geo["splitting"],
    ).save_pretrained(out_dir)
    # SmolVLM2's sampling (1 fps, at most 64 frames), stored as its preprocessor_config.json stores it
    video_sampling = {"fps": 1, "max_frames": 64, "video_size": image_size}
    SmolVLMVideoProcessor(
        size={"longest_edge": geo["image_size"]}, max_image_size=image_size, video_sampling=video_sampling
    ).save_pretrained(out_dir)
    features = (geo["image_size"] // geo["patch_size"]) ** 2 // geo["scale_factor"] ** 2
    (Path(out_dir) / "processor_config.json").write_text(json.dumps({"image_seq_len": features}))
    return Path(out_dir)


def _colour_png(rgb, size, rng):
    noise = rng.integers(-8, 9, size=(size, size, 3))
    pixels = np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
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


def prepare_offline_demo(cache_dir, rows=256):
    """Tiny checkpoints (a small-vocabulary stand-in tokenizer, so the LM head is cheap) and a
    synthetic colour-naming the_cauldron, built once under `cache_dir` and reused afterwards."""
    cache_dir = Path(cache_dir)
    paths = {"qwen": cache_dir / "Qwen3-tiny", "smolvlm": cache_dir / "SmolVLM2-tiny", "data": cache_dir / "the_cauldron"}
    done = cache_dir / ".complete"
    if not done.is_file():
        build_standin_tokenizer(cache_dir / "tokenizer")
        build_tiny_qwen(paths["qwen"], cache_dir / "tokenizer")
        build_tiny_smolvlm(paths["smolvlm"])
        write_synthetic_cauldron(paths["data"], subsets=("cocoqa",), rows_per_subset=rows)
        done.write_text("built by tiny.prepare_offline_demo\n")
        print(f"offline demo: tiny random checkpoints and {rows} synthetic rows, built once -> {cache_dir}")
    return paths


# Tiny copies of the default suite's lmms-eval benchmarks in their hub repos' full layout: the README's
# `configs` in the hub's order with their data_files, every config and split (shards named as on the hub),
# the train shards the READMEs no longer list, and the repos' other files (.gitattributes, MMStar's .tsv).
# Rows hold the columns each task's code reads and the ones beside them: colour questions about
# solid-colour images, so the harness's own task definitions and metrics run on them.
# repo -> [(config, kind of rows, {split: data_files path})]; a path's `*` becomes shard numbers.
HUB_LAYOUTS = {
    "lmms-lab-encoder/textvqa": [("default", "textvqa", {"train": "data/train-*", "validation": "data/validation-*",
                                                         "test": "data/test-*"})],
    "lmms-lab-encoder/DocVQA": [("DocVQA", "docvqa", {"validation": "DocVQA/validation-*", "test": "DocVQA/test-*"}),
                                ("InfographicVQA", "infovqa", {"validation": "InfographicVQA/validation-*",
                                                               "test": "InfographicVQA/test-*"})],
    "lmms-lab-encoder/ChartQA": [("default", "chartqa", {"test": "data/test-*"})],
    "lmms-lab-encoder/ai2d": [("default", "ai2d", {"test": "data/test-*"})],
    "echo840/OCRBench": [("default", "ocrbench", {"test": "data/test-*"})],
    "Lin-Chen/MMStar": [("mmstar", "mmstar", {"val": "mmstar.parquet"})],
    "lmms-lab-encoder/MMBench": [("cc", "mmbench_cc", {"test": "cc/test-*"}),
                                 ("cn", "mmbench_cn", {"dev": "cn/dev-*", "test": "cn/test-*"}),
                                 ("en", "mmbench_en", {"dev": "en/dev-*", "test": "en/test-*"})],
    "lmms-lab-encoder/CMMMU": [("default", "cmmmu", {"dev": "data/dev-*", "val": "data/val-*", "test": "data/test-*"})],
}
# Shards on the hub that no README config lists (DocVQA's train split is commented out of its README).
UNLISTED_SHARDS = {"lmms-lab-encoder/DocVQA": {"DocVQA/train-*": "docvqa", "InfographicVQA/train-*": "infovqa"}}
# Each default task: its repo, the kind of rows it reads and the split (its YAML's dataset_name and test_split).
BENCHMARK_COPIES = {
    "textvqa_val": ("lmms-lab-encoder/textvqa", "textvqa", "validation"),
    "docvqa_val": ("lmms-lab-encoder/DocVQA", "docvqa", "validation"),
    "chartqa": ("lmms-lab-encoder/ChartQA", "chartqa", "test"),
    "ai2d": ("lmms-lab-encoder/ai2d", "ai2d", "test"),
    "ocrbench": ("echo840/OCRBench", "ocrbench", "test"),
    "mmstar": ("Lin-Chen/MMStar", "mmstar", "val"),
    "mmbench_en_dev_static": ("lmms-lab-encoder/MMBench", "mmbench_en", "dev"),
    "mmbench_cn_dev": ("lmms-lab-encoder/MMBench", "mmbench_cn", "dev"),
    "cmmmu_val": ("lmms-lab-encoder/CMMMU", "cmmmu", "val"),
}
CHINESE_COLOURS = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "black": "黑色", "white": "白色"}
LETTERS = "ABCD"


def _options(i, n_colours, chinese=False):
    """Four colour names for question i, the right one (colour i) under answer letter i % 4."""
    names = [list(COLOURS)[(i + k) % n_colours] for k in range(4)]
    answer = i % 4
    names.insert(answer, names.pop(0))
    return [CHINESE_COLOURS[name] if chinese else name for name in names], answer


def _benchmark_rows(kind, n, rng):
    """`n` rows of `kind`'s columns and features, and the gold answer of each question; question i asks
    about image i's colour (the questions are unique)."""
    from datasets import Image as ImageFeature
    from datasets import Sequence

    names = [list(COLOURS)[i % len(COLOURS)] for i in range(n)]
    images = [{"bytes": _colour_png(COLOURS[name], 32, rng), "path": None} for name in names]
    text, ints, image, texts = Value("string"), Value("int64"), ImageFeature(), Sequence(Value("string"))
    options = [_options(i, len(COLOURS), chinese=kind in ("mmbench_cn", "mmbench_cc", "cmmmu")) for i in range(n)]
    letters = [LETTERS[answer] for _, answer in options]
    if kind == "textvqa":
        questions = [f"what colour is picture number {i}?" for i in range(n)]
        columns = {
            "image_id": ([f"img{i:04d}" for i in range(n)], text), "question_id": (list(range(n)), ints),
            "question": (questions, text), "question_tokens": ([q[:-1].split() for q in questions], texts),
            "image": (images, image), "image_width": ([32] * n, ints), "image_height": ([32] * n, ints),
            "flickr_original_url": ([""] * n, text), "flickr_300k_url": ([""] * n, text),
            "answers": ([[name] * 10 for name in names], texts), "image_classes": ([["colour"]] * n, texts),
            "set_name": (["val"] * n, text), "ocr_tokens": ([[]] * n, texts)}
        gold = names
    elif kind == "docvqa":
        questions = [f"Which colour is page {i} printed in?" for i in range(n)]
        columns = {
            "questionId": ([str(1000 + i) for i in range(n)], text), "question": (questions, text),
            "question_types": ([["layout"]] * n, texts), "image": (images, image), "docId": (list(range(n)), ints),
            "ucsf_document_id": ([f"doc{i}" for i in range(n)], text), "ucsf_document_page_no": (["1"] * n, text),
            "answers": ([[name, f"{name} ink"] for name in names], texts), "data_split": (["val"] * n, text)}
        gold = names
    elif kind == "infovqa":
        questions = [f"Which colour fills infographic {i}?" for i in range(n)]
        columns = {
            "questionId": ([str(2000 + i) for i in range(n)], text), "question": (questions, text),
            "answers": ([[name] for name in names], texts), "answer_type": ([["single span"]] * n, texts),
            "image": (images, image), "image_url": ([""] * n, text), "operation/reasoning": ([[]] * n, texts),
            "ocr": (["[]"] * n, text), "data_split": (["val"] * n, text)}
        gold = names
    elif kind == "chartqa":
        questions = [f"Which colour is chart {i}?" for i in range(n)]
        columns = {"type": (["human_test"] * n, text), "question": (questions, text), "answer": (names, text),
                   "image": (images, image)}
        gold = names
    elif kind == "ai2d":
        questions = [f"Which colour is diagram {i}?" for i in range(n)]
        columns = {"question": (questions, text), "options": ([o for o, _ in options], texts),
                   "answer": ([str(a) for _, a in options], text), "image": (images, image)}
        gold = letters
    elif kind == "ocrbench":
        questions = [f"what word is written in picture {i}?" for i in range(n)]
        columns = {"dataset": (["IIIT5K"] * n, text), "question": (questions, text),
                   "question_type": (["Regular Text Recognition"] * n, text), "answer": ([[name] for name in names], texts),
                   "image": (images, image)}
        gold = names
    elif kind == "mmstar":
        questions = [f"Which colour is image {i}? Options: " + ", ".join(f"{l}: {o}" for l, o in zip(LETTERS, opts))
                     for i, (opts, _) in enumerate(options)]
        meta = {"source": Value("string"), "split": Value("string"), "image_path": Value("string")}
        columns = {"index": (list(range(n)), ints), "question": (questions, text), "image": (images, image),
                   "answer": (letters, text), "category": (["coarse perception"] * n, text),
                   "l2_category": (["image scene and topic"] * n, text),
                   "meta_info": ([{"source": "tiny", "split": "val", "image_path": f"{i}.png"} for i in range(n)], meta)}
        gold = letters
    elif kind.startswith("mmbench"):
        chinese = kind != "mmbench_en"
        questions = [f"第{i}张图片是什么颜色？" if chinese else f"What colour is image number {i}?" for i in range(n)]
        columns = {"index": (list(range(n)), ints), "question": (questions, text)}
        if kind != "mmbench_cc":
            columns["hint"] = ([None] * n, text)
        columns.update({"answer": (letters, text),
                        **{l: ([opts[k] for opts, _ in options], text) for k, l in enumerate(LETTERS)},
                        "category": (["colour"] * n, text), "image": (images, image), "source": (["tiny"] * n, text)})
        if kind != "mmbench_cc":
            columns.update({"L2-category": (["perception"] * n, text), "comment": ([None] * n, text),
                            "split": (["dev"] * n, text)})
        gold = letters
    elif kind == "cmmmu":
        questions = [f'<img="{i}.png">第{i}张图片是什么颜色？' for i in range(n)]
        columns = {"id": ([str(i) for i in range(n)], text), "type": (["选择"] * n, text),
                   "source_type": (["tiny"] * n, text), "source": (["tiny"] * n, text), "question": (questions, text),
                   **{f"option{k + 1}": ([opts[k] for opts, _ in options], text) for k in range(4)},
                   "image_1": (images, image), **{f"image_{k}": ([None] * n, image) for k in range(2, 6)},
                   "image_1_filename": ([f"{i}.png" for i in range(n)], text),
                   **{f"image_{k}_filename": ([None] * n, text) for k in range(2, 6)},
                   "answer": (letters, text), "analysis": ([""] * n, text), "distribution": ([""] * n, text),
                   "difficulty_level": (["easy"] * n, text), "subcategory": (["美术"] * n, text),
                   "category": (["艺术与设计"] * n, text), "subfield": (["颜色"] * n, text),
                   "img_type": (["照片"] * n, text)}
        gold = letters
    else:
        raise ValueError(f"no rows known for {kind}")
    features = Features({name: feature for name, (_, feature) in columns.items()})
    return {name: values for name, (values, _) in columns.items()}, features, dict(zip(questions, gold))


def _write_shards(root, pattern, kind, rows, rng):
    """The split's parquet files at `pattern` (`*` -> two shards for train, one otherwise); -> gold."""
    count = 2 if "train" in pattern else 1
    paths = [pattern.replace("*", f"{i:05d}-of-{count:05d}.parquet") for i in range(count)] if "*" in pattern \
        else [pattern]
    gold = {}
    for path in paths:
        columns, features, answers = _benchmark_rows(kind, rows, rng)
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Dataset.from_dict(columns, features=features).to_parquet(root / path)
        gold.update(answers)
    return gold


def write_hub_layout(root, repo, rows=4, seed=0):
    """`repo`'s full hub layout under root (its README, every config, split and unlisted shard, its other
    files); -> {(config, split): {question: gold answer}}."""
    import yaml

    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    gold, configs = {}, []
    for config, kind, splits in HUB_LAYOUTS[repo]:
        for split, pattern in splits.items():
            gold[config, split] = _write_shards(root, pattern, kind, rows, rng)
        configs.append({"config_name": config, "data_files": [{"split": s, "path": p} for s, p in splits.items()]})
    for pattern, kind in UNLISTED_SHARDS.get(repo, {}).items():
        _write_shards(root, pattern, kind, rows, rng)
    if repo == "Lin-Chen/MMStar":  # the hub's tsv of the same questions, which no task reads
        (root / "MMStar.tsv").write_text("index\tquestion\tanswer\n0\tWhich colour?\tA\n")
    (root / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")
    card = yaml.safe_dump({"configs": configs}, sort_keys=False, allow_unicode=True)
    (root / "README.md").write_text(f"---\n{card}---\nTiny copy of {repo} in its hub layout, for tests.\n")
    return gold


def write_benchmark_copies(data_dir, tasks=tuple(BENCHMARK_COPIES), rows=4, seed=0):
    """Writes tiny copies of `tasks`' datasets under data_dir/<hub repo id>/ in their full hub layouts (as
    the hub serves them; download_resource.sh --bench fetches only the task's split of them);
    returns {task: (repo dir, gold answer per question of the task's split)}."""
    layouts, written = {}, {}
    for task in tasks:
        repo, kind, split = BENCHMARK_COPIES[task]
        root = Path(data_dir) / repo
        if repo not in layouts:
            layouts[repo] = write_hub_layout(root, repo, rows, seed)
        config = next(name for name, k, _ in HUB_LAYOUTS[repo] if k == kind)
        written[task] = (root, layouts[repo][config, split])
    return written


MMLU_QUESTIONS = [("What is 2 + 3?", ["4", "5", "6", "7"], 1), ("Which is a prime number?", ["4", "6", "7", "9"], 2),
                  ("What is 3 x 3?", ["9", "6", "12", "3"], 0), ("What is 10 - 4?", ["5", "7", "8", "6"], 3)]


def write_tiny_mmlu(root, subjects=("abstract_algebra",), rows=8):
    """A few questions per subject in cais/mmlu's on-disk layout (the README's `configs`, one parquet
    file per split under <subject>/, the columns question, subject, choices, answer as a ClassLabel),
    with download_resource.sh's .complete marker; -> the dataset's folder."""
    from datasets import ClassLabel, Sequence

    folder = Path(root) / "cais" / "mmlu"
    features = Features({"question": Value("string"), "subject": Value("string"), "choices": Sequence(Value("string")),
                         "answer": ClassLabel(names=["A", "B", "C", "D"])})
    configs = []
    for subject in subjects:
        (folder / subject).mkdir(parents=True, exist_ok=True)
        for split, count in (("test", rows), ("validation", 2), ("dev", 5)):
            picked = [MMLU_QUESTIONS[i % len(MMLU_QUESTIONS)] for i in range(count)]
            table = {"question": [q for q, _, _ in picked], "subject": [subject] * count,
                     "choices": [c for _, c, _ in picked], "answer": [a for _, _, a in picked]}
            Dataset.from_dict(table, features=features).to_parquet(folder / subject / f"{split}-00000-of-00001.parquet")
        splits = "".join(f"  - split: {split}\n    path: {subject}/{split}-*\n" for split in ("test", "validation", "dev"))
        configs.append(f"- config_name: {subject}\n  data_files:\n{splits}")
    (folder / "README.md").write_text("---\nconfigs:\n" + "".join(configs) + "---\n# MMLU\n")
    (folder / ".complete").write_text("")
    return folder


def write_tiny_sharegpt_zh_en(folder, rows=100):
    """ShareGPT-Chinese-English-90k's layout in miniature: sharegpt_jsonl/common_{en,zh}_*.jsonl, one
    Firefly conversation ({"conversation_id", "category", "conversation": [{"human", "assistant"}]}) a line,
    the same conversations in English and in Chinese; -> the folder."""
    folder = Path(folder) / "sharegpt_jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    turns = {"en": ("What is {n} plus one?", "{n} plus one is {m}."), "zh": ("{n}加一是多少？", "{n}加一等于{m}。")}
    for language, (question, answer) in turns.items():
        with (folder / f"common_{language}_{rows}.jsonl").open("w", encoding="utf-8") as out:
            for n in range(rows):
                turn = {"human": question.format(n=n), "assistant": answer.format(n=n, m=n + 1)}
                row = {"conversation_id": n, "category": "arithmetic", "conversation": [turn]}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return folder.parent


def write_colour_video(path, colours, fps=8, size=(16, 16), seconds_each=1, audio=False, codec="mpeg4"):
    """A clip written with PyAV in the container its suffix names (.mp4, .webm, .mkv...), in `codec`
    (MPEG-4 part 2; "libvpx": VP8, which browsers play): each RGB colour of `colours` fills the frame for
    `seconds_each` seconds at `fps`; with `audio`, a silent audio track too."""
    import av  # here: only the video tests and the demo write clips

    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if audio:
            container.add_stream("aac", rate=8000)
        for rgb in colours:
            pixels = np.broadcast_to(np.array(rgb, dtype=np.uint8), (height, width, 3)).copy()
            for _ in range(int(fps * seconds_each)):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return Path(path)


def write_audio_only(path):
    """An MPEG-4 file with one silent AAC frame and no video stream."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return Path(path)


def build_tiny_chat_model(stitched_dir, out_dir, image, question, thinking_tokens=6, seed=0):
    """A copy of a tiny stitched model that chats visibly, for the web demo's tests and screenshot.

    A random tiny model repeats the prompt's last token; with its final norm re-drawn, greedy replies
    are varied text instead. Its generation config (sequence_bias, applied by generate() itself) makes it
    open a <think> block whenever thinking is on, and for `question` about `image` close that block after
    `thinking_tokens` tokens and go on to an answer."""
    from qwen3_smvl import inference

    model, processor = inference.load_model(stitched_dir, device="cpu")
    norm = model.model.text_model.norm.weight
    with torch.no_grad():
        norm.copy_(torch.randn(norm.shape, generator=torch.Generator().manual_seed(seed)) * 4)
    tokenizer = processor.tokenizer
    think_open, think_close = tokenizer.convert_tokens_to_ids(["<think>", "</think>"])
    # Thinking on, the prompt ends with the assistant header (infer.render_prompt).
    header = tokenizer.encode("assistant\n")
    model.generation_config.sequence_bias = [[header + [think_open], 100.0]]
    prompt = inference.render_prompt(processor, inference.build_messages(question), think=True)
    inputs = processor(text=[prompt], images=[[image]], return_tensors="pt")
    thought = model.generate(**inputs, do_sample=False, max_new_tokens=1 + thinking_tokens)[0, -2:].tolist()
    model.generation_config.sequence_bias.append([thought + [think_close], 100.0])
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return Path(out_dir)


def build_terse_graft(model_dir, out_dir, graft=True):
    """A copy of a tiny stitched model (or, graft=False, a tiny Qwen3) whose generation config
    (sequence_bias, applied by generate() itself) ends every reply at once with <|im_end|>: benchmark
    runs on CPU then take seconds, not each task's max_new_tokens of random text (MMBench asks for up
    to 1024, IFEval 1280)."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    model = (AutoModelForImageTextToText if graft else AutoModelForCausalLM).from_pretrained(model_dir)
    processor = (AutoProcessor if graft else AutoTokenizer).from_pretrained(model_dir)
    tokenizer = processor.tokenizer if graft else processor
    model.generation_config.sequence_bias = [[[tokenizer.convert_tokens_to_ids("<|im_end|>")], 100.0]]
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return Path(out_dir)


def _write_card(folder, configs, note):
    import yaml

    card = f"---\n{yaml.safe_dump({'configs': configs}, sort_keys=False, allow_unicode=True)}---\n" if configs else ""
    (Path(folder) / "README.md").write_text(f"{card}{note}\n")
    (Path(folder) / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")


def _multiple_choice(subject, n, chinese):
    picked = [MMLU_QUESTIONS[i % len(MMLU_QUESTIONS)] for i in range(n)]
    if chinese:  # ceval: id, question, A-D, answer letter, explanation
        return {"id": list(range(n)), "question": [q for q, _, _ in picked],
                **{l: [c[k] for _, c, _ in picked] for k, l in enumerate(LETTERS)},
                "answer": [LETTERS[a] for _, _, a in picked], "explanation": [""] * n}
    return {"question": [q for q, _, _ in picked], "subject": [subject] * n, "choices": [c for _, c, _ in picked],
            "answer": [a for _, _, a in picked]}


def write_text_bench_hub(root, mmlu_subjects, ceval_subjects, rows=2):
    """The four default text benchmarks' hub repos in their full layouts under root/<repo id>/: cais/mmlu
    (a config per subject, `all` and `auxiliary_train`, in the hub's alphabetical order), ceval/ceval-exam
    (a config per subject: test, val, dev), openai/gsm8k (main and socratic: train, test) and google/IFEval
    (one jsonl file, no configs); -> root."""
    from datasets import ClassLabel, Sequence

    root = Path(root)
    mmlu = root / "cais/mmlu"
    mmlu_features = Features({"question": Value("string"), "subject": Value("string"),
                              "choices": Sequence(Value("string")), "answer": ClassLabel(names=list(LETTERS))})
    mmlu_splits = {"test": rows, "validation": rows, "dev": 5}
    configs = {}
    for subject in [*mmlu_subjects, "all"]:
        splits = {**mmlu_splits, **({"auxiliary_train": rows} if subject == "all" else {})}
        for split, count in splits.items():
            (mmlu / subject).mkdir(parents=True, exist_ok=True)
            Dataset.from_dict(_multiple_choice(subject, count, False), features=mmlu_features).to_parquet(
                mmlu / subject / f"{split}-00000-of-00001.parquet")
        configs[subject] = [{"split": split, "path": f"{subject}/{split}-*"} for split in splits]
    (mmlu / "auxiliary_train").mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(_multiple_choice("", rows, False), features=mmlu_features).to_parquet(
        mmlu / "auxiliary_train/train-00000-of-00001.parquet")
    configs["auxiliary_train"] = [{"split": "train", "path": "auxiliary_train/train-*"}]
    _write_card(mmlu, [{"config_name": name, "data_files": configs[name]} for name in sorted(configs)], "# MMLU")

    ceval = root / "ceval/ceval-exam"
    for subject in ceval_subjects:
        (ceval / subject).mkdir(parents=True, exist_ok=True)
        for split, count in (("test", rows), ("val", rows), ("dev", 5)):
            Dataset.from_dict(_multiple_choice(subject, count, True)).to_parquet(
                ceval / subject / f"{split}-00000-of-00001.parquet")
    _write_card(ceval, [{"config_name": s, "data_files": [{"split": p, "path": f"{s}/{p}-*"} for p in ("test", "val", "dev")]}
                        for s in sorted(ceval_subjects)], "# C-Eval")

    gsm8k = root / "openai/gsm8k"
    for config in ("main", "socratic"):
        (gsm8k / config).mkdir(parents=True, exist_ok=True)
        for split, count in (("train", 5), ("test", rows)):
            table = {"question": [f"What is {i} plus {i}?" for i in range(count)],
                     "answer": [f"{i} + {i} = <<{i}+{i}={2 * i}>>{2 * i}\n#### {2 * i}" for i in range(count)]}
            Dataset.from_dict(table).to_parquet(gsm8k / config / f"{split}-00000-of-00001.parquet")
    _write_card(gsm8k, [{"config_name": c, "data_files": [{"split": s, "path": f"{c}/{s}-*"} for s in ("train", "test")]}
                        for c in ("main", "socratic")], "# GSM8K")

    ifeval = root / "google/IFEval"
    ifeval.mkdir(parents=True, exist_ok=True)
    prompts = [{"key": 1000 + i, "prompt": f"Write about colour {name} in lowercase letters only.",
                "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]}
               for i, name in enumerate(list(COLOURS)[:rows])]
    (ifeval / "ifeval_input_data.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    _write_card(ifeval, None, "# IFEval")
    return root


def write_punkt_tab(nltk_dir):
    """nltk's punkt_tab sentence splitter (which IFEval's checks load), trained by nltk itself on a few
    sentences and saved in the installed layout under nltk_dir/tokenizers/punkt_tab/english/."""
    import nltk
    from nltk.tokenize.punkt import PunktTrainer, save_punkt_params

    trainer = PunktTrainer()
    trainer.train("This is red. That is blue. Mr. Smith paints it green. The sky is grey.", finalize=True)
    folder = Path(nltk_dir) / "tokenizers/punkt_tab/english"
    folder.mkdir(parents=True, exist_ok=True)
    searched = list(nltk.data.path)
    nltk.data.path.insert(0, str(nltk_dir))  # nltk writes only under a data root it searches
    try:
        save_punkt_params(trainer.get_params(), dir=str(folder))
    finally:
        nltk.data.path[:] = searched
    return Path(nltk_dir)
