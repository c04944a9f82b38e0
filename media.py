"""The one rule for turning an image reference into what the model sees, shared by training (collator),
token counting (lengths, the data check), inference, evaluation and the demo.

It is transformers.image_utils.load_image's rule, so a trained model sees a photo as pipelines and
`transformers serve` show it to the served model: EXIF orientation applied (phones store a portrait
photo as a landscape frame plus an orientation tag), then RGB as the image processors convert it
(transparency composited onto white). Sizes for token counts come from the file header with the
orientation applied, without decoding pixels.
"""

import io
from pathlib import Path

from PIL import Image, ImageOps

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


def decode_image(image):
    """The RGB image the model sees: decoded, EXIF orientation applied, converted to RGB."""
    opened = open_image(image)
    try:
        opened.load()  # PIL decodes lazily: a truncated file fails here, not inside the image processor
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
