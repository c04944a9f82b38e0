"""One image decoding rule: a phone photo (a landscape frame plus an EXIF orientation tag) is seen
upright by training, token counting, the data check, infer.py and transformers' own pipeline alike."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, pipeline
from transformers.image_utils import load_image

from qwen3_smvl import inference
from qwen3_smvl.data import check_data, lengths, media
from qwen3_smvl.data.collate import BadSample, Collator
from qwen3_smvl.data.the_cauldron import question_row
from qwen3_smvl.graft import stitch
from qwen3_smvl.training.train_config import DataArguments

ORIENTATIONS = (3, 6, 8)  # 180 degrees, and the two quarter turns phones write for portrait shots


def phone_photo(orientation, size=(300, 120)):
    """JPEG bytes of a landscape frame whose quarters differ, tagged with `orientation`."""
    width, height = size
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[: height // 2, : width // 2] = (230, 30, 30)
    pixels[: height // 2, width // 2:] = (30, 200, 40)
    pixels[height // 2:, : width // 2] = (20, 40, 220)
    pixels[height // 2:, width // 2:] = (240, 240, 30)
    exif = Image.Exif()
    exif[media.EXIF_ORIENTATION] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95, exif=exif)
    return buffer.getvalue()


def upright_size(orientation, size=(300, 120)):
    return size[::-1] if orientation in (6, 8) else size


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_decoding_equals_transformers_load_image(tmp_path, orientation):
    path = tmp_path / "phone.jpg"
    path.write_bytes(phone_photo(orientation))
    theirs = np.asarray(load_image(str(path)))
    assert theirs.shape[1::-1] == upright_size(orientation)
    for ours in (media.decode_image(str(path)), media.decode_image({"bytes": path.read_bytes(), "path": None}),
                 Collator.decode_image({"bytes": None, "path": str(path)}), inference.load_image(path)):
        assert np.array_equal(np.asarray(ours), theirs)
    # The header alone gives the upright size: what token counts are made from.
    assert media.image_size({"bytes": path.read_bytes(), "path": None}) == upright_size(orientation)
    assert lengths.image_size(str(path)) == upright_size(orientation)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_collator_tiles_equal_the_pipelines_and_infer_py(tmp_path, stitched_dir, orientation):
    """The tiles training encodes are the ones transformers' image-text-to-text pipeline and infer.py
    feed the served model for the same file."""
    path = tmp_path / "phone.jpg"
    path.write_bytes(phone_photo(orientation))
    processor = AutoProcessor.from_pretrained(stitched_dir)
    row = question_row([{"bytes": path.read_bytes(), "path": None}], "What is in the top left corner?", "red", "phone")
    training_tiles = torch.stack(Collator(processor).encode(row).tiles)

    model = AutoModelForImageTextToText.from_pretrained(stitched_dir)
    pipe = pipeline("image-text-to-text", model=model, processor=processor)
    prompt = inference.render_prompt(processor, inference.build_messages("What is in the top left corner?"))
    served = pipe.preprocess({"images": str(path), "text": prompt})["pixel_values"][0]
    inferred = processor(text=[prompt], images=[[inference.load_image(path)]], return_tensors="pt")["pixel_values"][0]
    assert torch.equal(training_tiles, served.to(training_tiles.dtype))
    assert torch.equal(training_tiles, inferred)


@pytest.fixture(scope="module")
def real_geometry_processor(real_geometry_smolvlm_dir, tiny_qwen_dir):
    return stitch(real_geometry_smolvlm_dir, tiny_qwen_dir)[1]


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_data_check_counts_the_upright_tile_grid(real_geometry_processor, orientation):
    """At the real tile size a quarter turn changes the tile grid (4x2 becomes 2x4 plus the global
    view): the data check's count must be the collator's, not the unrotated frame's."""
    row = question_row([{"bytes": phone_photo(orientation), "path": None}], "Which colour is top left?", "red", "phone")
    data_args = DataArguments(max_length=8192)
    collator = Collator.from_args(real_geometry_processor, data_args)
    counted, images = check_data.RowMeasure(real_geometry_processor, data_args).measure(row)[:2]
    assert images == 1 and counted == len(collator.encode(row).input_ids)
    assert lengths.TokenCounter(collator)(row) == counted


def test_unreadable_images_are_named():
    with pytest.raises(BadSample, match="embedded image bytes cannot be read"):
        Collator.decode_image({"bytes": b"not an image", "path": None})
    with pytest.raises(BadSample, match="image not found: /nonexistent/photo.jpg"):
        lengths.image_size({"bytes": None, "path": "/nonexistent/photo.jpg"})


def test_truncated_images_are_refused_even_after_lmms_eval_is_imported():
    """lmms-eval tells PIL to fill truncated files in when imported (bench_tasks imports it into the
    training process); training must still refuse them, and leave lmms-eval's setting as it was."""
    pytest.importorskip("lmms_eval", reason="requirements-eval.txt brings lmms-eval")
    import lmms_eval.api.task  # noqa: F401  (sets ImageFile.LOAD_TRUNCATED_IMAGES on import)
    from PIL import ImageFile

    whole = phone_photo(1)
    truncated = {"bytes": whole[: whole.index(b"\xff\xda") + 20], "path": None}  # header intact, pixels cut off
    assert ImageFile.LOAD_TRUNCATED_IMAGES
    with pytest.raises(BadSample, match="embedded image bytes cannot be decoded"):
        Collator.decode_image(truncated)
    assert ImageFile.LOAD_TRUNCATED_IMAGES
