"""The processor a run trains with: the graft's (or init_from's), with the data keys that change what
the model sees (image_longest_edge, image_splitting, video_fps, video_max_frames) set on it. train.py saves it with every
checkpoint, so AutoProcessor, infer.py and evaluation use what the model trained with; the data check
measures with the same processor, built from configs and tokenizer alone (no weights are loaded).
"""

from transformers import AutoProcessor

import row_shape
import stitch
from train_config import ConfigError


def set_image_resolution(processor, data_args):
    """image_longest_edge / image_splitting set on the processor itself."""
    image_processor = processor.image_processor
    if data_args.image_splitting is not None:
        image_processor.do_image_splitting = data_args.image_splitting
    if data_args.image_longest_edge is None:
        return
    tile = image_processor.max_image_size["longest_edge"]
    if image_processor.do_image_splitting and data_args.image_longest_edge % tile:
        raise ConfigError(f"image_longest_edge: {data_args.image_longest_edge} is not a multiple of the {tile} px tile; "
                          "with image_splitting the image would be upscaled to the next multiple")
    image_processor.size = {"longest_edge": data_args.image_longest_edge}


def set_video_sampling(processor, data_args):
    """video_fps / video_max_frames set on the video processor (unset: its own), also in its
    `video_sampling`, which is what a saved processor is reloaded from."""
    fps, max_frames = data_args.video_fps, data_args.video_max_frames
    video_processor = processor.video_processor
    sampling = dict(getattr(video_processor, "video_sampling", None) or {})
    if fps is not None:
        video_processor.fps = sampling["fps"] = fps
    if max_frames is not None:
        video_processor.num_frames = sampling["max_frames"] = max_frames
    sampling.setdefault("fps", video_processor.fps)
    sampling.setdefault("max_frames", video_processor.num_frames)
    sampling.setdefault("video_size", video_processor.size)
    video_processor.video_sampling = sampling


def processor_without_model(model_args, data_args):
    """The processor training would use, built without loading any weights."""
    if model_args.init_from:
        processor = AutoProcessor.from_pretrained(model_args.init_from)
    else:
        tokenizer = stitch.load_tokenizer(model_args.qwen_path)
        smol_config, qwen_config = stitch.load_source_configs(model_args.smolvlm_path, model_args.qwen_path)
        config = stitch.build_config(smol_config, qwen_config, tokenizer)
        processor = stitch.build_processor(model_args.smolvlm_path, tokenizer, config)
    set_image_resolution(processor, data_args)
    set_video_sampling(processor, data_args)
    return processor


def check_video_template(processor, model_args, datasets):
    """init_from's saved chat template must render the video parts of the rows, if there are any."""
    if model_args.init_from and any(row_shape.has_videos(ds) for ds in datasets):
        stitch.check_renders_videos(processor, model_args.init_from)
