"""qwen3_smvl/data/lengths.py: each row's token count from image headers and text equals the collator's encoding."""

import io
import json

import pytest
from datasets import Dataset
from PIL import Image

from qwen3_smvl.data import loading
from qwen3_smvl.data.collate import Collator, decode_image
from qwen3_smvl.data.lengths import LENGTH_COLUMN, TokenCounter, image_size, with_lengths
from qwen3_smvl.graft import stitch
from qwen3_smvl.training.train_config import DataArguments

from test_collate import make_row

SIZES = [(1, 1), (300, 200), (640, 480), (1024, 768), (1700, 2200), (2200, 300), (512, 512), (513, 512),
         (777, 1555), (2048, 1536), (4000, 90)]


def png(width, height):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 40, 200)).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


@pytest.fixture
def real_geometry(real_geometry_smolvlm_dir, tiny_qwen_dir):
    """(model, processor) at SmolVLM2's image geometry: 512 px tiles of 64 features, splitting on."""
    return stitch(real_geometry_smolvlm_dir, tiny_qwen_dir)


@pytest.mark.parametrize("longest_edge, native", [(2048, False), (1024, False), (512, False), (2048, True), (1024, True)])
def test_counts_equal_the_collators_encoding_at_the_real_geometry(real_geometry, longest_edge, native):
    _, processor = real_geometry
    processor.image_processor.size = {"longest_edge": longest_edge}
    processor.image_processor.do_resize = not native  # native_resolution's setting: over-cap images shrunk, none upscaled
    collator = Collator(processor, max_length=4096, max_images=2)
    count = TokenCounter(collator)
    for index, (width, height) in enumerate(SIZES):
        shown = 1 + index % 2
        row = {**make_row("What is shown?", "a thing " * (index * 7 + 1), images=shown), "images": [png(width, height)] * shown}
        assert count(row) == len(collator.encode(row).input_ids), (width, height)


def test_counts_cover_text_only_rows_turns_and_truncation(processor):
    rows = [make_row(), make_row(images=0), make_row(turns=[("More?", "much more " * 20)]),
            make_row(answer="long " * 300)]
    for settings in ({}, {"first_turn_only": True}, {"max_length": 48}, {"assistant_only_loss": True}):
        collator = Collator(processor, **settings)
        for row in rows:
            assert TokenCounter(collator)(row) == len(collator.encode(row).input_ids), settings


def test_image_size_comes_from_the_header_without_decoding():
    buffer = io.BytesIO()
    Image.new("RGB", (1700, 2200), "gray").save(buffer, format="JPEG")
    start_of_scan = buffer.getvalue().index(b"\xff\xda")
    truncated = {"bytes": buffer.getvalue()[:start_of_scan + 20], "path": None}  # header intact, pixels cut off
    assert image_size(truncated) == (1700, 2200)
    with pytest.raises(ValueError, match="cannot be decoded"):
        decode_image(truncated)


@pytest.fixture
def processor(stitched):
    return stitched[1]


def test_length_column_is_added_and_cached(processor, cauldron_dir):
    train = loading.load_data(DataArguments(data_dir=str(cauldron_dir), train_data=["cocoqa"], test_size=8), seed=0).train
    collator = Collator(processor)
    counted = with_lengths(train, collator)
    assert counted[LENGTH_COLUMN] == [len(collator.encode(row).input_ids) for row in train]
    again = with_lengths(train, collator)
    assert again._fingerprint == counted._fingerprint and again.cache_files == counted.cache_files
    assert with_lengths(train, Collator(processor, max_length=20))._fingerprint != counted._fingerprint


def test_a_bad_row_stops_the_count_or_counts_zero_when_skipping(processor, tmp_path):
    rows = [make_row(), make_row(answer=" ")]
    train = Dataset.from_list([{**row, "messages": json.dumps(row["messages"])} for row in rows])  # as stored
    with pytest.raises(loading.DataError, match="training row 1: turn 0 has an empty assistant answer"):
        with_lengths(train, Collator(processor))
    assert with_lengths(train, Collator(processor, on_bad_sample="skip"))[LENGTH_COLUMN][1] == 0
