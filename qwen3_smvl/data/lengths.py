"""Each training row's token count, known before any pixel is decoded.

Packing and length-grouped batches need every row's length up front. Decoding and tiling the images
of a whole dataset would take as long as an epoch of collation, but the count needs only each image's
size (read from the file header, EXIF orientation applied) and the text: the image processor says how
a size is tiled, and the processor's own prompt builder says which tokens those tiles become. The
counts are stored as a dataset column, cached by datasets next to the data. The data check counts
with the same TokenCounter.
"""

import json
import math
from functools import lru_cache
from typing import NamedTuple

from datasets.fingerprint import Hasher
from transformers.models.smolvlm.processing_smolvlm import get_image_prompt_string

from qwen3_smvl.data import media
from qwen3_smvl.data.collate import BadSample, count_images, count_videos, video_metadata, video_prompt
from qwen3_smvl.data.row_shape import DataError

LENGTH_COLUMN = "length"  # TrainingArguments.length_column_name's default, read by group_by_length


def text_with_videos(collator, messages, tools, row, image_count):
    """(text, [VideoMetadata], [expansion]): the rendered conversation with each video placeholder
    replaced by the text the processor expands it into, from the container's header and the sampling
    rule (no frame is decoded; the expansion starts with plain text, so it is tokenized in place)."""
    processor = collator.processor
    videos = [video_metadata(video, processor.video_processor)
              for video in (row.get("videos") or [])[: count_videos(messages)]]
    text, _ = collator.render(messages, tools, image_count, len(videos))
    expansions = [video_prompt(processor, metadata) for metadata in videos]
    for expansion in expansions:
        text = text.replace(processor.video_token, expansion, 1)
    return text, videos, expansions


def image_size(image):
    """(width, height) of the image as the collator will see it (qwen3_smvl/data/media.py's rule), from the header alone."""
    try:
        return media.image_size(image)
    except media.UnreadableImage as error:
        raise BadSample(str(error), reason="bad image") from None


def native_kwargs(width, height, image_processor):
    """get_number_of_image_patches always counts as if do_resize rescaled the longest side to
    size.longest_edge. Without do_resize (native resolution) the processor instead rounds the longest
    side up to the next tile multiple and the other side, as scaled with it, up to its own: the count
    of that is the count at that multiple as longest edge."""
    if not media.is_native(image_processor):
        return None
    tile = image_processor.max_image_size["longest_edge"]
    return {"size": {"longest_edge": math.ceil(max(width, height) / tile) * tile}}


class Measured(NamedTuple):
    tokens: int  # the row's full encoding, before the collator cuts it at max_length
    images: int
    image_end: int  # the token just after the last image block when the row exceeds max_length, else 0
    frames: int = 0  # the video's sampled frames (0 without a video)
    video_tokens: int = 0  # the tokens its placeholder expands into: intro line, timestamps, frame blocks


class TokenCounter:
    """The token count the collator's encoding of a row will have, from image sizes and text alone."""

    def __init__(self, collator):
        self.collator = collator
        processor = collator.processor
        self.image_processor = processor.image_processor
        self.tokenizer = processor.tokenizer
        self.block_length = lru_cache(maxsize=None)(self._block_length)

    def _block_length(self, rows, cols):
        """Tokens of the image block that tiles rows x cols replace one placeholder with."""
        processor = self.collator.processor
        block = get_image_prompt_string(
            rows, cols, processor.image_seq_len, fake_token_around_image=processor.fake_image_token,
            image_token=processor.image_token, global_image_token=processor.global_image_token,
        )
        return len(self.tokenizer.encode(block, add_special_tokens=False))

    def image_block_length(self, width, height):
        width, height = media.handed_size(width, height, self.image_processor)
        _, rows, cols = self.image_processor.get_number_of_image_patches(height, width, native_kwargs(
            width, height, self.image_processor))
        return self.block_length(rows, cols)

    def measure(self, row):
        """The row's uncapped token count, image count and, past max_length, where its last image block
        ends; a video whose block alone ends past max_length raises the collator's BadSample."""
        collator = self.collator
        messages, tools = collator.conversation_of(row)
        sizes = [image_size(image) for image in (row.get("images") or [])[: count_images(messages)]]
        text, videos, expansions = text_with_videos(collator, messages, tools, row, len(sizes))
        frames = sum(len(metadata.frames_indices) for metadata in videos)
        video_tokens = sum(self.count(expansion) for expansion in expansions)
        # The placeholder and the image block both start and end with special tokens, so the text
        # around them tokenizes the same either way.
        image_expansion = sum(self.image_block_length(width, height) - 1 for width, height in sizes)
        tokens = self.count(text) + image_expansion
        if tokens <= collator.max_length:  # no block can end past max_length: nothing more to count
            return Measured(tokens, len(sizes), 0, frames, video_tokens)
        if expansions:  # a row holds images or one video, never both (collate.check_media_mix)
            video_end = self.count(text[: text.rindex(expansions[-1]) + len(expansions[-1])])
            if video_end > collator.max_length:
                raise BadSample(f"its video block ends at token {video_end} ({frames} frames) but max_length is "
                                f"{collator.max_length}; lower video_max_frames or video_fps, or raise max_length",
                                reason="video exceeds max_length")
        image_end = self.count(text[: text.rfind(collator.processor.image_token)]) + 1 + image_expansion if sizes else 0
        return Measured(tokens, len(sizes), image_end, frames, video_tokens)

    def count(self, text):
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def __call__(self, row):
        """Tokens of the row's encoding (capped at max_length, as the collator cuts text after the image)."""
        return min(self.measure(row).tokens, self.collator.max_length)

    def fingerprint(self):
        """What the counts depend on, for datasets' cache: the settings, not the Python objects."""
        collator = self.collator
        settings = {
            "image_processor": self.image_processor.to_dict(), "tokenizer": self.tokenizer.name_or_path,
            "vocab": len(self.tokenizer), "chat_template": collator.processor.chat_template,
            "image_seq_len": collator.processor.image_seq_len, "max_length": collator.max_length,
            "max_images": collator.max_images, "first_turn_only": collator.first_turn_only,
            "video_processor": collator.processor.video_processor.to_dict(),
        }
        return Hasher.hash(json.dumps(settings, sort_keys=True, default=str))


def counted_lengths(rows, counter):
    """Token counts of a batch of rows; 0 for a row the collator will raise on or skip."""
    lengths = []
    for values in zip(*rows.values()):
        try:
            lengths.append(counter(dict(zip(rows, values))))
        except BadSample:
            lengths.append(0)
    return {LENGTH_COLUMN: lengths}


def with_lengths(dataset, collator):
    """`dataset` with a `length` column of every row's token count, cached with the dataset. Under
    on_bad_sample="raise" a row that cannot be counted stops here, before training starts."""
    counter = TokenCounter(collator)
    if LENGTH_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(LENGTH_COLUMN)
    dataset = dataset.map(
        counted_lengths, fn_kwargs={"counter": counter}, batched=True, batch_size=256,
        new_fingerprint=Hasher.hash((dataset._fingerprint, counter.fingerprint())),
        desc="counting tokens per row",
    )
    if collator.on_bad_sample == "raise":
        first_bad = next((index for index, length in enumerate(dataset[LENGTH_COLUMN]) if length == 0), None)
        if first_bad is not None:
            try:
                counter(dataset[first_bad])
            except BadSample as bad:
                raise DataError(f"training row {first_bad}: {bad} (or set on_bad_sample: skip)") from None
    return dataset
