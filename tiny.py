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

from the_cauldron import FEATURES

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


def build_standin_tokenizer(out_dir, base_vocab_size=512):
    """A byte-level BPE tokenizer laid out like Qwen3's: `base_vocab_size` ordinary tokens, then
    Qwen3's added tokens. With base_vocab_size=QWEN3_BASE_VOCAB every special token sits at its real id."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    alphabet = _byte_level_alphabet()
    fillers = [f"<unused_{i}>" for i in range(base_vocab_size - len(alphabet))]
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


# Tiny copies of three lmms-eval benchmarks in their hub repos' layout (README `configs`, parquet
# shards per split, the columns the task code reads and the ones beside them), colour questions
# about solid-colour images, so the harness's own task definitions and metrics run on them.
BENCHMARK_COPIES = {
    "textvqa_val": ("lmms-lab-encoder/textvqa", "default", "data", ("train", "validation", "test")),
    "docvqa_val": ("lmms-lab-encoder/DocVQA", "DocVQA", "DocVQA", ("validation", "test")),
    "mmbench_cn_dev": ("lmms-lab-encoder/MMBench", "cn", "cn", ("dev", "test")),
}
CHINESE_COLOURS = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "black": "黑色", "white": "白色"}


def _benchmark_rows(task, n, rng):
    """`n` rows of `task`'s columns; question i asks about image i's colour (the questions are unique)."""
    from datasets import Features, Image as ImageFeature, Sequence, Value

    names = [list(COLOURS)[i % len(COLOURS)] for i in range(n)]
    images = [{"bytes": _colour_png(COLOURS[name], 32, rng), "path": None} for name in names]
    if task == "textvqa_val":
        columns = {
            "image_id": [f"img{i:04d}" for i in range(n)], "question_id": list(range(n)),
            "question": [f"what colour is picture number {i}?" for i in range(n)],
            "question_tokens": [["what", "colour", "is", "picture", "number", str(i)] for i in range(n)],
            "image": images, "image_width": [32] * n, "image_height": [32] * n,
            "flickr_original_url": [""] * n, "flickr_300k_url": [""] * n,
            "answers": [[name] * 10 for name in names], "image_classes": [["colour"]] * n,
            "set_name": ["val"] * n, "ocr_tokens": [[]] * n,
        }
        features = Features({
            "image_id": Value("string"), "question_id": Value("int64"), "question": Value("string"),
            "question_tokens": Sequence(Value("string")), "image": ImageFeature(), "image_width": Value("int64"),
            "image_height": Value("int64"), "flickr_original_url": Value("string"), "flickr_300k_url": Value("string"),
            "answers": Sequence(Value("string")), "image_classes": Sequence(Value("string")),
            "set_name": Value("string"), "ocr_tokens": Sequence(Value("string")),
        })
    elif task == "docvqa_val":
        columns = {
            "questionId": [str(1000 + i) for i in range(n)],
            "question": [f"Which colour is page {i} printed in?" for i in range(n)],
            "question_types": [["layout"]] * n, "image": images, "docId": list(range(n)),
            "ucsf_document_id": [f"doc{i}" for i in range(n)], "ucsf_document_page_no": ["1"] * n,
            "answers": [[name, f"{name} ink"] for name in names], "data_split": ["val"] * n,
        }
        features = Features({
            "questionId": Value("string"), "question": Value("string"), "question_types": Sequence(Value("string")),
            "image": ImageFeature(), "docId": Value("int64"), "ucsf_document_id": Value("string"),
            "ucsf_document_page_no": Value("string"), "answers": Sequence(Value("string")), "data_split": Value("string"),
        })
    else:  # mmbench_cn_dev: four options, the answer a letter
        letters = "ABCD"
        options = [[CHINESE_COLOURS[list(COLOURS)[(i + k) % len(COLOURS)]] for k in range(4)] for i in range(n)]
        answers = [letters[i % 4] for i in range(n)]
        for row, answer in zip(options, answers):  # put the right colour under the answer's letter
            right = row.pop(0)
            row.insert(letters.index(answer), right)
        columns = {
            "index": list(range(n)), "question": [f"第{i}张图片是什么颜色？" for i in range(n)],
            "hint": [None] * n, "answer": answers,
            **{letter: [row[k] for row in options] for k, letter in enumerate(letters)},
            "category": ["colour"] * n, "image": images, "source": ["tiny"] * n,
            "L2-category": ["perception"] * n, "comment": [None] * n, "split": ["dev"] * n,
        }
        features = Features({
            "index": Value("int64"), "question": Value("string"), "hint": Value("string"), "answer": Value("string"),
            **{letter: Value("string") for letter in letters}, "category": Value("string"), "image": ImageFeature(),
            "source": Value("string"), "L2-category": Value("string"), "comment": Value("string"), "split": Value("string"),
        })
    return columns, features


def write_benchmark_copies(data_dir, tasks=tuple(BENCHMARK_COPIES), rows=4, seed=0):
    """Writes tiny copies of `tasks`' datasets under data_dir/<hub repo id>/, as download_resource.sh
    lays out the real ones; returns {task: (repo dir, gold answer per question)}."""
    rng = np.random.default_rng(seed)
    written = {}
    for task in tasks:
        repo, config, folder, splits = BENCHMARK_COPIES[task]
        root = Path(data_dir) / repo
        (root / folder).mkdir(parents=True, exist_ok=True)
        card = ["---", "configs:", f"- config_name: {config}", "  data_files:"]
        for split in splits:
            columns, features = _benchmark_rows(task, rows, rng)
            Dataset.from_dict(columns, features=features).to_parquet(root / folder / f"{split}-00000-of-00001.parquet")
            card += [f"  - split: {split}", f"    path: {folder}/{split}-*"]
        (root / "README.md").write_text("\n".join(card + ["---", f"Tiny copy of {repo} for tests.", ""]))
        gold = columns["answer"] if task == "mmbench_cn_dev" else [answers[0] for answers in columns["answers"]]
        written[task] = (root, dict(zip(columns["question"], gold)))
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
    import infer  # not at the top: infer.py's imports are not needed by the rest of this module

    model, processor = infer.load_model(stitched_dir, device="cpu")
    norm = model.model.text_model.norm.weight
    with torch.no_grad():
        norm.copy_(torch.randn(norm.shape, generator=torch.Generator().manual_seed(seed)) * 4)
    tokenizer = processor.tokenizer
    think_open, think_close = tokenizer.convert_tokens_to_ids(["<think>", "</think>"])
    # Thinking on, the prompt ends with the assistant header (infer.render_prompt).
    header = tokenizer.encode("assistant\n")
    model.generation_config.sequence_bias = [[header + [think_open], 100.0]]
    prompt = infer.render_prompt(processor, infer.build_messages(question), think=True)
    inputs = processor(text=[prompt], images=[[image]], return_tensors="pt")
    thought = model.generate(**inputs, do_sample=False, max_new_tokens=1 + thinking_tokens)[0, -2:].tolist()
    model.generation_config.sequence_bias.append([thought + [think_close], 100.0])
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return Path(out_dir)
