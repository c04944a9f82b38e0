"""The processor a run trains with: the graft's (or init_from's), with the data keys that change what
the model sees (image_longest_edge, image_splitting, native_resolution, video_fps, video_max_frames) set on it. train.py saves it with every
checkpoint, so AutoProcessor, infer.py and evaluation use what the model trained with (check_saves tries
that save before the first step); the data check measures with the same processor, built from configs and
tokenizer alone (no weights are loaded).
"""

import os
import tempfile
from pathlib import Path

from transformers import AutoConfig, AutoProcessor

from qwen3_smvl import graft
from qwen3_smvl.data import row_shape
from qwen3_smvl.training.train_config import ConfigError


def set_image_resolution(processor, data_args):
    """image_longest_edge / image_splitting / native_resolution set on the processor itself; native
    resolution is its `do_resize: false` (media.fit_to_processor applies the longest edge as a cap)."""
    image_processor = processor.image_processor
    if data_args.image_splitting is not None:
        image_processor.do_image_splitting = data_args.image_splitting
    if data_args.native_resolution is not None:
        image_processor.do_resize = not data_args.native_resolution
    if data_args.native_resolution and not image_processor.do_image_splitting:
        raise ConfigError("native_resolution: true needs image_splitting (without it every image is one tile-sized "
                          "view whatever its size)")
    if data_args.image_longest_edge is None:
        return
    tile = image_processor.max_image_size["longest_edge"]
    if image_processor.do_image_splitting and data_args.image_longest_edge % tile:
        raise ConfigError(f"image_longest_edge: {data_args.image_longest_edge} is not a multiple of the {tile} px tile; "
                          "with image_splitting the image would be upscaled to the next multiple")
    image_processor.size = {"longest_edge": data_args.image_longest_edge}


# SmolVLM2-256M-Video-Instruct's sampling (its preprocessor_config.json's `video_sampling`): the fallback for a
# source whose video processor carries none, as one written by a save of a video processor built without them.
SMOLVLM2_SAMPLING = {"fps": 1, "max_frames": 64}


def first_set(*values):
    return next(value for value in values if value is not None)


def set_video_sampling(processor, data_args):
    """video_fps / video_max_frames set on the video processor (unset: its own, else the hub layout's
    `video_sampling` kept on the image processor, else SmolVLM2's), also in its `video_sampling`, which
    is what a saved processor is reloaded from; stored as plain JSON values (its `size` is a SizeDict)."""
    video_processor = processor.video_processor
    image_side = getattr(processor.image_processor, "video_sampling", None) or {}
    fps = first_set(data_args.video_fps, video_processor.fps, image_side.get("fps"), SMOLVLM2_SAMPLING["fps"])
    max_frames = first_set(data_args.video_max_frames, video_processor.num_frames, image_side.get("max_frames"),
                           SMOLVLM2_SAMPLING["max_frames"])
    video_processor.fps, video_processor.num_frames = fps, max_frames
    video_processor.video_sampling = {"fps": fps, "max_frames": max_frames, "video_size": dict(video_processor.size)}


def processor_without_model(model_args, data_args):
    """The processor training would use, built without loading any weights."""
    if model_args.init_from:
        processor = AutoProcessor.from_pretrained(model_args.init_from)
    else:
        tokenizer = graft.load_tokenizer(model_args.qwen_path)
        smol_config, qwen_config = graft.load_source_configs(model_args.smolvlm_path, model_args.qwen_path)
        config = graft.build_config(smol_config, qwen_config, tokenizer)
        processor = graft.build_processor(model_args.smolvlm_path, tokenizer, config)
    set_image_resolution(processor, data_args)
    set_video_sampling(processor, data_args)
    return processor


def check_video_template(processor, model_args, datasets):
    """init_from's saved chat template must render the video parts of the rows, if there are any."""
    if model_args.init_from and any(row_shape.has_videos(ds) for ds in datasets):
        graft.check_renders_videos(processor, model_args.init_from)


def check_saves(processor, config, output_dir):
    """What every checkpoint writes besides the weights (processor, config), saved and reloaded now in a
    temporary folder, and output_dir's writability: a processor or config that cannot be saved or read
    back, or an output_dir that cannot be written, is refused before the first step (every rank checks,
    so all refuse together). Nothing is created in output_dir: a refused run leaves it as it was."""
    check_writable(Path(output_dir))
    with tempfile.TemporaryDirectory(prefix="save-check-") as trial:
        try:
            processor.save_pretrained(trial)
            config.save_pretrained(trial)
            AutoProcessor.from_pretrained(trial)
            AutoConfig.from_pretrained(trial)
        except Exception as error:  # what the first checkpoint would die of, whatever the library raises
            cause = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ConfigError(f"the processor or config cannot be saved and reloaded, as every checkpoint does "
                              f"({type(error).__name__}: {cause}); nothing was trained") from None


def check_writable(output_dir):
    """output_dir, or the folder the Trainer will create it in, takes new files."""
    existing = next(folder for folder in (output_dir, *output_dir.absolute().parents) if folder.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"output_dir {output_dir} cannot be written: {existing} is not a writable folder")
