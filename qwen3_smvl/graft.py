"""The graft: a Qwen3 causal LM in SmolVLM2 as its text model, giving an ordinary transformers checkpoint.

Configs, tokenizer, processor, the fresh connector, the checks that the graft agrees with itself
(`verify_graft`), parameter counts and the dry run. The command is stitch.py:

    python stitch.py --smolvlm model/SmolVLM2-256M-Video-Instruct --qwen model/Qwen3-0.6B --out DIR
    python stitch.py --dry-run      # configs and tokenizer only: parameter counts and token ids

The result is one `SmolVLMConfig` whose `text_config` IS Qwen3's config, so the saved directory
reloads with `AutoModelForImageTextToText` / `AutoProcessor` alone. Every id and size is read from
the two checkpoints and cross-checked by `verify_graft`.
"""

from pathlib import Path

import torch
from jinja2.exceptions import TemplateError
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoTokenizer,
    AutoVideoProcessor,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
    SmolVLMProcessor,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
from transformers.models.smolvlm.modeling_smolvlm import SmolVLMConnector
from transformers.utils.chat_template_utils import render_jinja_template

from qwen3_smvl.training import trainable

CHAT_TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "chat_template.jinja"
DEFAULT_SMOLVLM = "model/SmolVLM2-256M-Video-Instruct"
DEFAULT_QWEN = "model/Qwen3-0.6B"

# SmolVLM's processor reads its image markers from these tokenizer attributes; we point them at
# Qwen3's reserved vision tokens. Saved in tokenizer_config.json, so they survive a reload.
VISION_TOKENS = {
    "image_token": "<|image_pad|>",
    "fake_image_token": "<|vision_start|>",
    "global_image_token": "<|vision_pad|>",
    "end_of_utterance_token": "<|im_end|>",
    "video_token": "<|video_pad|>",
}
# The model's parts by parameter name prefix; the LM head belongs to the text model.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


class GraftError(ValueError):
    """The two checkpoints cannot be grafted, or the graft disagrees with itself."""


def check_source_dirs(smolvlm_path, qwen_path, need_weights=True):
    for role, path in (("SmolVLM2", smolvlm_path), ("Qwen3", qwen_path)):
        path = Path(path)
        if not (path / "config.json").is_file():
            raise GraftError(
                f"{role} checkpoint not found: {path} has no config.json "
                "(run `bash download_resource.sh` or pass --smolvlm/--qwen)"
            )
        if need_weights and not any((path / name).is_file() for name in WEIGHT_FILES):
            raise GraftError(
                f"{role} checkpoint {path} has no weights (expected one of {', '.join(WEIGHT_FILES)}); "
                "use --dry-run to inspect the graft from configs alone"
            )


def load_source_configs(smolvlm_path, qwen_path):
    smol_config = AutoConfig.from_pretrained(smolvlm_path)
    qwen_config = AutoConfig.from_pretrained(qwen_path)
    if smol_config.model_type != "smolvlm":
        raise GraftError(f"{smolvlm_path} is a '{smol_config.model_type}' model, not a SmolVLM ('smolvlm')")
    if qwen_config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise GraftError(
            f"{qwen_path} is a '{qwen_config.model_type}' model, which is not a causal language model; "
            "the text model must load with AutoModelForCausalLM"
        )
    return smol_config, qwen_config


def load_tokenizer(qwen_path):
    """Qwen3's tokenizer, with SmolVLM's image markers mapped onto Qwen3's reserved vision tokens."""
    vocab = AutoTokenizer.from_pretrained(qwen_path).get_vocab()
    missing = [token for token in VISION_TOKENS.values() if token not in vocab]
    if missing:
        raise GraftError(
            f"the tokenizer in {qwen_path} lacks Qwen's vision tokens {missing}; "
            "the graft places image features on them (use a Qwen2/2.5/3 tokenizer)"
        )
    # Loading again with the markers (rather than setting attributes) is what makes them persist;
    # it would silently add missing tokens, hence the check on the plain vocabulary first.
    # Left padding is saved with it, so that batched generation (pipelines, generate on a padded batch)
    # answers as one prompt alone does; the project's collator pads on its own, on the right.
    tokenizer = AutoTokenizer.from_pretrained(
        qwen_path, model_specific_special_tokens=VISION_TOKENS, padding_side="left"
    )
    tokenizer.chat_template = CHAT_TEMPLATE_PATH.read_text()
    return tokenizer


def image_seq_len(config):
    """Image features per tile after pixel shuffle: (image_size / patch_size)^2 / scale_factor^2."""
    patches_per_side = config.vision_config.image_size // config.vision_config.patch_size
    return patches_per_side**2 // config.scale_factor**2


def build_config(smol_config, qwen_config, tokenizer):
    """One SmolVLMConfig whose text_config is Qwen3's config object itself (not a copy), given the
    tokenizer's pad id: transformers 5 reads it from text_config (Qwen3's config has none); the
    deprecated top-level copy is set too, as it would otherwise default to SmolLM2's id."""
    qwen_config.pad_token_id = tokenizer.pad_token_id
    config = SmolVLMConfig(
        vision_config=smol_config.vision_config,
        text_config=qwen_config,
        scale_factor=smol_config.scale_factor,
        image_token_id=tokenizer.convert_tokens_to_ids(VISION_TOKENS["image_token"]),
        tie_word_embeddings=qwen_config.tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
    )
    config.architectures = [SmolVLMForConditionalGeneration.__name__]
    return config


def build_processor(smolvlm_path, tokenizer, config):
    return SmolVLMProcessor(
        image_processor=AutoImageProcessor.from_pretrained(smolvlm_path),
        tokenizer=tokenizer,
        video_processor=AutoVideoProcessor.from_pretrained(smolvlm_path),
        image_seq_len=image_seq_len(config),
        chat_template=tokenizer.chat_template,
    )


def fresh_connector(config, dtype, seed):
    """Pixel shuffle + a bias-free Linear (vision hidden * scale^2 -> text hidden), PyTorch's default init."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SmolVLMConnector(config).to(dtype)


def graft(smolvlm_path, qwen_path, tokenizer, dtype="auto", seed=0):
    """Build the stitched model on the meta device and move the source modules into it, so each
    weight exists once: the vision tower from SmolVLM2, body and LM head from Qwen3."""
    # Built with the pad id that build_config sets, as the saved checkpoint reloads (the embedding's padding_idx).
    qwen = AutoModelForCausalLM.from_pretrained(qwen_path, dtype=dtype, pad_token_id=tokenizer.pad_token_id,
                                                use_kernels=False)
    smol = AutoModelForImageTextToText.from_pretrained(smolvlm_path, dtype=dtype, use_kernels=False)
    config = build_config(smol.config, qwen.config, tokenizer)
    with torch.device("meta"):
        model = SmolVLMForConditionalGeneration(config)
    model.model.vision_model = smol.model.vision_model
    model.model.text_model = qwen.model
    model.lm_head = qwen.lm_head
    model.model.connector = fresh_connector(config, qwen.dtype, seed)
    model.generation_config = qwen.generation_config
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if config.tie_word_embeddings:
        model.tie_weights()
    return model


def stitch(smolvlm_path=DEFAULT_SMOLVLM, qwen_path=DEFAULT_QWEN, dtype="auto", seed=0):
    """Graft Qwen3 into SmolVLM2; returns (model, processor), verified."""
    check_source_dirs(smolvlm_path, qwen_path)
    load_source_configs(smolvlm_path, qwen_path)
    tokenizer = load_tokenizer(qwen_path)
    model = graft(smolvlm_path, qwen_path, tokenizer, dtype=dtype, seed=seed)
    processor = build_processor(smolvlm_path, tokenizer, model.config)
    verify_graft(model, processor)
    return model, processor


def check_renders_videos(processor, model_dir):
    """A checkpoint saved before video support keeps a chat template that refuses video parts (the
    weights and tokens are the same as now): refused with the fix, before any row is encoded."""
    probe = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "?"}]}]
    try:
        text = render_jinja_template([probe], chat_template=processor.chat_template)[0][0]
    except (TemplateError, TypeError, ValueError):  # raise_exception on an unknown part; no template at all
        text = ""
    if text.count(processor.video_token) != 1:
        saved = Path(model_dir) / CHAT_TEMPLATE_PATH.name
        raise GraftError(f"{model_dir}: its chat template cannot render video parts (saved before video support); "
                         f"copy this repo's {CHAT_TEMPLATE_PATH.name} over {saved} (the weights need no change), "
                         "or leave out the video rows")


def graft_disagreements(model, processor):
    """Every id and size the graft must agree on, as a list of human-readable disagreements."""
    config, tokenizer = model.config, processor.tokenizer
    text_config = config.text_config
    problems = []

    def expect(what, actual, wanted):
        if actual != wanted:
            problems.append(f"{what} is {actual!r}, expected {wanted!r}")

    image_id = tokenizer.convert_tokens_to_ids(tokenizer.image_token)
    expect("config.image_token_id", config.image_token_id, image_id)
    expect("model.image_token_id", model.image_token_id, image_id)
    expect("model.model.image_token_id", model.model.image_token_id, image_id)
    expect("processor.image_token_id", processor.image_token_id, image_id)
    for attribute, token in VISION_TOKENS.items():
        expect(f"tokenizer.{attribute}", getattr(tokenizer, attribute, None), token)
        expect(f"processor.{attribute}", getattr(processor, attribute, None), token)
        if len(tokenizer.encode(token, add_special_tokens=False)) != 1:
            problems.append(f"{token} ({attribute}) is not a single token")

    vocab_size = text_config.vocab_size
    expect("model.vocab_size", model.vocab_size, vocab_size)
    expect("model.model.vocab_size", model.model.vocab_size, vocab_size)
    expect("input embedding rows", model.get_input_embeddings().num_embeddings, vocab_size)
    expect("lm_head rows", model.lm_head.out_features, vocab_size)
    if len(tokenizer) > vocab_size:
        problems.append(f"tokenizer has {len(tokenizer)} tokens but the text model only {vocab_size} rows")
    if config.tie_word_embeddings and model.lm_head.weight is not model.get_input_embeddings().weight:
        problems.append("tie_word_embeddings is set but lm_head and input embeddings are separate tensors")

    expect("text_model.config", model.model.text_model.config, text_config)
    expect("vision_model.config", model.model.vision_model.config, config.vision_config)
    if model.model.text_model.config is not text_config:
        problems.append("text_model.config is a separate copy of config.text_config")
    projection = model.model.connector.modality_projection.proj
    expect("connector input size", projection.in_features, config.vision_config.hidden_size * config.scale_factor**2)
    expect("connector output size", projection.out_features, text_config.hidden_size)
    expect("connector scale_factor", model.model.connector.scale_factor, config.scale_factor)
    expect("model.model.image_seq_len", model.model.image_seq_len, image_seq_len(config))
    expect("processor.image_seq_len", processor.image_seq_len, image_seq_len(config))
    tile_edge = processor.image_processor.max_image_size["longest_edge"]
    expect("image processor tile size (max_image_size.longest_edge)", tile_edge, config.vision_config.image_size)

    expect("text_config.pad_token_id", text_config.pad_token_id, tokenizer.pad_token_id)
    expect("generation_config.pad_token_id", model.generation_config.pad_token_id, tokenizer.pad_token_id)

    end_id = tokenizer.convert_tokens_to_ids(tokenizer.end_of_utterance_token)
    eos_ids = model.generation_config.eos_token_id
    eos_ids = eos_ids if isinstance(eos_ids, list) else [eos_ids]
    if end_id not in eos_ids:
        problems.append(f"generation_config.eos_token_id {eos_ids} does not stop at {tokenizer.end_of_utterance_token} ({end_id})")
    meta = [name for name, tensor in model.state_dict().items() if tensor.is_meta]
    if meta:
        problems.append(f"{len(meta)} tensors were never loaded, e.g. {meta[:3]}")
    return problems


def verify_graft(model, processor):
    problems = graft_disagreements(model, processor)
    if problems:
        raise GraftError("the graft disagrees with itself:\n  - " + "\n  - ".join(problems))


def mebi(count):
    """Parameters in units of 2**20, as the original recipe printed them."""
    return f"{count / 2**20:.2f}M"


def parameter_counts(model):
    """Parameters per part; a tied LM head shares the embedding's weight and adds nothing."""
    unique = lambda module: {id(p): p.numel() for p in module.parameters()}
    embedding_ids = set(unique(model.get_input_embeddings()))
    head = {k: v for k, v in unique(model.lm_head).items() if k not in embedding_ids}
    return {
        "vision": sum(unique(model.model.vision_model).values()),
        "connector": sum(unique(model.model.connector).values()),
        "text": sum(unique(model.model.text_model).values()),
        "lm_head": sum(head.values()),
    }


def trainable_and_total(model):
    return (sum(p.numel() for p in model.parameters() if p.requires_grad),
            sum(p.numel() for p in model.parameters()))


def trainable_summary(model):
    """The line training prints, in the original's form (M = 2**20 parameters)."""
    trainable, total = trainable_and_total(model)
    return f"trainable params: {mebi(trainable)} || all params: {mebi(total)} || trainable %: {100 * trainable / total:.2f}"


def dry_run(smolvlm_path, qwen_path):
    """What the graft yields, from configs and tokenizer alone (the model is built on `meta`)."""
    check_source_dirs(smolvlm_path, qwen_path, need_weights=False)
    smol_config, qwen_config = load_source_configs(smolvlm_path, qwen_path)
    tokenizer = load_tokenizer(qwen_path)
    config = build_config(smol_config, qwen_config, tokenizer)
    with torch.device("meta"):
        model = SmolVLMForConditionalGeneration(config)
    trainable.set_trainable(model)  # the recipe's default trainable set, for the count
    lines = [f"graft: {smolvlm_path} (vision) + {qwen_path} (text)"]
    for part, count in parameter_counts(model).items():
        note = " (tied to the input embeddings)" if part == "lm_head" and config.tie_word_embeddings else ""
        lines.append(f"  {part:<10} {mebi(count):>9} params{note}")
    projection = model.model.connector.modality_projection.proj
    lines.append(f"  connector: pixel shuffle x{config.scale_factor}, {projection.in_features} -> {projection.out_features}, no bias")
    lines.append(f"  image features per tile: {image_seq_len(config)}; text vocab: {qwen_config.vocab_size} rows, tokenizer {len(tokenizer)}")
    for attribute, token in VISION_TOKENS.items():
        lines.append(f"  {attribute:<24} {token:<16} id {tokenizer.convert_tokens_to_ids(token)}")
    lines.append(f"  pad_token                {tokenizer.pad_token:<16} id {tokenizer.pad_token_id}")
    lines.append("(M = 2**20 parameters)")
    lines.append(trainable_summary(model))
    return "\n".join(lines)
