"""Media decoding in one place: the one rule for turning an image or a video reference into what the
model sees, shared by training (collator), token counting (lengths, the data check), inference,
evaluation and the demo.

Images: transformers.image_utils.load_image's rule, so a trained model sees a photo as pipelines and
`transformers serve` show it to the served model: EXIF orientation applied (phones store a portrait
photo as a landscape frame plus an orientation tag), then RGB as the image processors convert it
(transparency composited onto white). Sizes for token counts come from the file header with the
orientation applied, without decoding pixels.

Native resolution (a processor saved with `do_resize: false`): SmolVLM's image processor then keeps
each image at its own size, only rounded up to its tile multiple, and never shrinks one. The cap,
`size.longest_edge`, is applied here instead: every path of this project hands the processor
`fit_to_processor`'s image (see docs/throughput.md for what plain transformers does without it).

Videos: read with PyAV (its wheels bundle FFmpeg, so no system FFmpeg is needed), in the shape
transformers' SmolVLM video processor takes: RGB frames (T, H, W, 3) with a VideoMetadata. The frames
are the ones transformers' own sampling rule picks (SmolVLMVideoProcessor.sample_frames: at most
`num_frames`, `fps` per second of the clip, one second skipped at both ends of a long clip), applied to
the container's header (frame count, frame rate) as transformers' PyAV reader reads it, so a video's
token count is known without decoding a frame and equals what the collator encodes.
"""

import io
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageFile, ImageOps
from transformers.models.smolvlm.image_processing_smolvlm import _resize_output_size_rescale_to_max_len
from transformers.video_utils import VideoMetadata

EXIF_ORIENTATION = 0x0112
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # the ones that rotate by 90 or 270 degrees: width and height swap


class UnreadableImage(ValueError):
    """An image reference that is missing or that PIL cannot read; the message says which and why."""


def describe_ref(image):
    """How an error names an image: its path, else that it is embedded bytes."""
    if isinstance(image, dict):
        return image.get("path") or "embedded image bytes"
    return str(image) if isinstance(image, (str, Path)) else f"a {type(image).__name__}"


def open_image(image):
    """A lazily opened PIL image from a PIL image, a path, or datasets' undecoded {"bytes", "path"} dict."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, dict) and image.get("bytes"):
        source = io.BytesIO(image["bytes"])
    elif isinstance(image, (str, Path)) or isinstance(image, dict) and image.get("path"):
        source = image if isinstance(image, (str, Path)) else image["path"]
        if not Path(source).is_file():
            raise UnreadableImage(f"image not found: {source}")
    elif image is None or isinstance(image, dict):
        raise UnreadableImage("image is missing (None, or neither bytes nor path)")
    else:
        raise UnreadableImage(f"image is a {type(image).__name__}, not a PIL image, a path or a {{'bytes', 'path'}} dict")
    try:
        return Image.open(source)
    except Exception as error:  # whatever PIL raises on a file it cannot identify
        raise UnreadableImage(f"{describe_ref(image)} cannot be read ({type(error).__name__}: {error})") from None


def to_rgb(image):
    """RGB as transformers' image processors convert it: transparency is composited onto white."""
    if image.mode == "RGB":
        return image
    if "A" in image.getbands() or "transparency" in image.info:
        image = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", image.size, "white"), image).convert("RGB")
    return image.convert("RGB")


def load_refusing_truncation(opened):
    """PIL's lazy decoding, done now so that a truncated file fails here, not inside the image processor.
    Truncated files are refused even where a library has told PIL to fill them in (lmms-eval sets
    ImageFile.LOAD_TRUNCATED_IMAGES when imported, as in a run with bench_tasks); the flag is restored."""
    allowed = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        opened.load()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = allowed


def decode_image(image):
    """The RGB image the model sees: decoded, EXIF orientation applied, converted to RGB."""
    opened = open_image(image)
    try:
        load_refusing_truncation(opened)
        return to_rgb(ImageOps.exif_transpose(opened))  # a new image: the file can be closed
    except Exception as error:  # whatever PIL raises on a broken file
        raise UnreadableImage(f"{describe_ref(image)} cannot be decoded ({type(error).__name__}: {error})") from None
    finally:
        if opened is not image:
            opened.close()


def image_size(image):
    """(width, height) of decode_image(image), from the header alone (no pixel is decoded)."""
    opened = open_image(image)
    try:
        width, height = opened.size
        orientation = opened.getexif().get(EXIF_ORIENTATION)
    except Exception as error:  # a header PIL identified but cannot parse further
        raise UnreadableImage(f"{describe_ref(image)} cannot be read ({type(error).__name__}: {error})") from None
    finally:
        if opened is not image:
            opened.close()
    return (height, width) if orientation in TRANSPOSING_ORIENTATIONS else (width, height)


def is_native(image_processor):
    """Whether the processor keeps images at their own size (do_resize false: tiles, no upscaling)."""
    return not image_processor.do_resize


def handed_size(width, height, image_processor):
    """(width, height) at which an image of that size is handed to the processor: under native resolution,
    one whose longest side is over size.longest_edge shrunk to it (sized by the rule transformers' own
    do_resize uses, aspect kept, even short side); otherwise unchanged (the processor resizes it itself)."""
    cap = image_processor.size["longest_edge"]
    if not is_native(image_processor) or max(width, height) <= cap:
        return width, height
    height, width = _resize_output_size_rescale_to_max_len(height, width, max_len=cap)
    return width, height


def fit_to_processor(image, image_processor):
    """The decoded `image` as handed to the processor (handed_size), resampled with the processor's filter."""
    size = handed_size(image.width, image.height, image_processor)
    if size == image.size:
        return image
    return image.resize(size, resample=Image.Resampling(int(image_processor.resample)))


class UnreadableVideo(ValueError):
    """A video reference that is missing, or a file PyAV cannot use; the message says which and why."""


def describe_video(video):
    """How an error names a video: its path, else that it is embedded bytes."""
    if isinstance(video, dict):
        return video.get("path") or "embedded video bytes"
    return str(video)


def open_video(video):
    """A PyAV container from a path or a {"bytes", "path"} dict, and its video stream."""
    if isinstance(video, dict) and video.get("bytes"):
        source = io.BytesIO(video["bytes"])
    elif isinstance(video, (str, Path)) or isinstance(video, dict) and video.get("path"):
        source = str(video if isinstance(video, (str, Path)) else video["path"])
        if not Path(source).is_file():
            raise UnreadableVideo(f"video not found: {source}")
    else:
        raise UnreadableVideo(f"video is missing (a {type(video).__name__}, not a path or a {{'bytes', 'path'}} dict)")
    try:
        container = av.open(source)
    except (av.error.FFmpegError, OSError) as error:
        raise UnreadableVideo(f"{describe_video(video)} cannot be read ({type(error).__name__}: {error})") from None
    if not container.streams.video:
        kinds = sorted({stream.type for stream in container.streams}) or ["no"]
        container.close()
        raise UnreadableVideo(f"{describe_video(video)} has no video stream ({'/'.join(kinds)} streams only)")
    return container, container.streams.video[0]


def header_metadata(video, container, stream):
    """transformers' PyAV reader's metadata (frame count, average frame rate, duration = frames / fps),
    with the frame count taken from the packets when the header does not store it (e.g. WebM)."""
    if stream.codec_context is None:  # e.g. a file cut off before its stream parameters
        raise UnreadableVideo(f"{describe_video(video)} cannot be read (its video stream has no decodable parameters; "
                              "truncated or corrupt?)")
    fps = stream.average_rate or stream.guessed_rate
    if not fps:
        raise UnreadableVideo(f"{describe_video(video)} states no frame rate")
    if not (stream.width and stream.height):
        raise UnreadableVideo(f"{describe_video(video)} has frames of {stream.width}x{stream.height} pixels")
    frames = stream.frames
    try:
        frames = frames or sum(1 for packet in container.demux(stream) if packet.size)
    except av.error.FFmpegError as error:
        raise UnreadableVideo(f"{describe_video(video)} cannot be read ({type(error).__name__}: {error})") from None
    if not frames:  # duration is frames / fps (as transformers reads it): zero frames is zero duration
        raise UnreadableVideo(f"{describe_video(video)} has zero frames (a video stream of 0 s, nothing to sample; "
                              "an empty or aborted recording?)")
    return VideoMetadata(total_num_frames=int(frames), fps=float(fps), width=stream.width, height=stream.height,
                         duration=frames / float(fps), video_backend="pyav")


def video_metadata(video, video_processor):
    """The header metadata of `video` with `frames_indices` set to the frames the processor samples."""
    container, stream = open_video(video)
    with container:
        metadata = header_metadata(video, container, stream)
    metadata.frames_indices = sampled_indices(metadata, video_processor)
    return metadata


def sampled_indices(metadata, video_processor):
    """The frames transformers' SmolVLM video processor samples at its `fps` and `num_frames` (a maximum)."""
    return video_processor.sample_frames(metadata, num_frames=video_processor.num_frames, fps=video_processor.fps)


def decode_video(video, video_processor):
    """(frames, metadata): the sampled frames as RGB uint8 (T, H, W, 3), decoded in order up to the last
    one as transformers' PyAV reader does, and their metadata for the processor's timestamps."""
    container, stream = open_video(video)
    with container:
        metadata = header_metadata(video, container, stream)
        indices = sampled_indices(metadata, video_processor)
        metadata.frames_indices = indices
        wanted, frames = set(indices.tolist()), []
        try:
            container.seek(0)
            for number, frame in enumerate(container.decode(stream)):
                if number in wanted:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if number >= indices[-1]:
                    break
        except av.error.FFmpegError as error:
            raise UnreadableVideo(f"{describe_video(video)} cannot be decoded ({type(error).__name__}: {error})") from None
    if len(frames) < len(indices):
        raise UnreadableVideo(f"{describe_video(video)} is truncated: its header states {metadata.total_num_frames} "
                              f"frames but frame {indices[len(frames)]} cannot be decoded")
    return np.stack(frames), metadata
