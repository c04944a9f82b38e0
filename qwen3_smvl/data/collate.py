"""Batches of rows in qwen3_smvl/data/row_shape.py's shape (messages with image and video parts, undecoded media) for
the Trainer.

Each row's messages (system/user/assistant/tool, reasoning_content, tool calls, the row's tools) are
rendered with the chat template, each image or video where its part stands, and encoded by the
processor in one call per row (images, or a video's sampled frames, placeholder expansion and
tokenization; per row, so that a video's intro line counts its own frames). Labels are -100 on
padding and on every image and video block (intro line, frame timestamps, frame blocks); with
`assistant_only_loss` also on everything but the assistant turns and their closing <|im_end|>. Long
samples lose text after the last image block, never part of a block; rows that cannot be trained on
are named (`on_bad_sample="raise"`) or skipped and counted (`"skip"`).
"""

import json
import warnings
from typing import NamedTuple

import torch
from transformers.utils.chat_template_utils import render_jinja_template

from qwen3_smvl.data import media

IGNORE_INDEX = -100
PADDING_CHOICES = ("longest", "max_length")
ON_BAD_SAMPLE_CHOICES = ("raise", "skip")
SKIP_REASONS = (
    "bad image", "no texts", "empty answer", "image exceeds max_length", "template", "placeholder mismatch",
    "nothing to learn", "too many images", "bad video", "video exceeds max_length", "too many videos",
    "images and video",
)


class BadSample(ValueError):
    """A row that cannot be trained on; `reason` is one of SKIP_REASONS. The message is the only
    positional argument, so DataLoader workers can re-raise it in the main process as it is."""

    def __init__(self, message, reason=None):
        super().__init__(message)
        self.reason = reason


class Encoded(NamedTuple):
    input_ids: torch.Tensor  # (length,)
    labels: torch.Tensor  # (length,)
    tiles: list  # the image processor's (3, height, width) tiles of all the row's images, in order


def decode_image(image):
    """The RGB image the model sees (qwen3_smvl/data/media.py's rule: EXIF orientation, then RGB); a missing or
    unreadable image is a BadSample."""
    try:
        return media.decode_image(image)
    except media.UnreadableImage as error:
        raise BadSample(str(error), reason="bad image") from None


def conversation(row):
    """(messages, tools) of a row in qwen3_smvl/data/row_shape.py's shape; both may be JSON text (as stored) or lists."""
    messages, tools = row.get("messages"), row.get("tools")
    messages = json.loads(messages) if isinstance(messages, str) else messages
    tools = json.loads(tools) if isinstance(tools, str) else tools
    if not isinstance(messages, list):
        raise BadSample(f"row has no messages ({type(messages).__name__})", reason="no texts")
    return messages, tools


def content_text(content):
    """A message's text without its images."""
    if isinstance(content, list):
        return "".join(part.get("text") or "" for part in content if part.get("type") == "text")
    return content if isinstance(content, str) else ""


def count_images(messages, kind="image"):
    """The `kind` ("image" or "video") parts of the messages."""
    return sum(
        part.get("type") == kind
        for message in messages if isinstance(message.get("content"), list)
        for part in message["content"]
    )


def count_videos(messages):
    return count_images(messages, kind="video")


def check_media_mix(image_count, video_count, holder="row"):
    """Refuses what one processor call cannot encode: SmolVLM's processor pads the frames of a call's videos
    to the longest and counts that in every intro line, and one call cannot place images and a video
    together (both are pixel_values). A `holder` (a row; the web demo's conversation) is one call."""
    if video_count > 1:
        raise BadSample(f"{video_count} videos in one {holder}; a {holder} holds at most one video",
                        reason="too many videos")
    if video_count and image_count:
        raise BadSample(f"{image_count} image(s) and a video in one {holder}; SmolVLM's processor encodes either "
                        f"images or a video per {holder}", reason="images and video")


def video_metadata(video, video_processor):
    """The header metadata of a video and the frames the processor will sample, without decoding any."""
    try:
        return media.video_metadata(video, video_processor)
    except media.UnreadableVideo as error:
        raise BadSample(str(error), reason="bad video") from None


def video_prompt(processor, metadata):
    """The text one video placeholder expands into (intro line, a timestamp and an image block per frame),
    from the processor's own builder; it reads only the frame count from the pixel values."""
    frames = torch.empty((1, len(metadata.frames_indices), 0))
    return processor.replace_video_token({"pixel_values": frames, "video_metadata": [metadata]}, video_idx=0)


def decode_video(video, video_processor):
    """(frames, metadata) of the frames the video processor samples; the collator's BadSample when the
    video is missing or PyAV cannot use it."""
    try:
        return media.decode_video(video, video_processor)
    except media.UnreadableVideo as error:
        raise BadSample(str(error), reason="bad video") from None


def describe(row, position):
    """How an error names a row: position in the batch, its origin (file:line) and its first question."""
    try:
        messages = conversation(row)[0] if isinstance(row, dict) else []
    except ValueError:  # unreadable messages (BadSample or invalid JSON): named without a question
        messages = []
    first = next((m for m in messages if isinstance(m, dict) and m.get("role") == "user"), {})
    question = content_text(first.get("content"))
    question = question if len(question) <= 60 else question[:60] + "..."
    source, origin = (row.get("source"), row.get("origin")) if isinstance(row, dict) else (None, None)
    where = f", {origin}" if origin else ""
    return f"sample {position} of the batch (source {source!r}{where}, question {question!r})"


def token_mask(offsets, spans):
    """Tokens whose characters overlap any of the (start, end) character spans."""
    starts, ends = offsets[:, 0], offsets[:, 1]
    mask = torch.zeros(len(offsets), dtype=torch.bool)
    for start, end in spans:
        mask |= (starts < end) & (ends > start)
    return mask


def expanded_span(span, replacements):
    """Where a span of the rendered text sits once the processor has expanded the image placeholders."""
    shift = sum(
        (r["new_span"][1] - r["new_span"][0]) - (r["span"][1] - r["span"][0])
        for r in replacements
        if r["span"][1] <= span[0]
    )
    return span[0] + shift, span[1] + shift


def supervised_logits(labels):
    """`logits_to_keep` and `shift_labels` so that the model projects only the positions that have a
    next-token target onto its 152K-row LM head: on a ~1K-token sample most positions are image
    placeholders, and the head would otherwise run (and keep fp32 logits) for every one of them.
    The model's own loss function reads the targets from `shift_labels`: the loss is unchanged."""
    next_labels = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    keep = next_labels != IGNORE_INDEX
    return {"logits_to_keep": keep, "shift_labels": next_labels[keep]}


def pad_tiles(rows, masks=None):
    """(batch, tiles, 3, H, W) as SmolVLM's image processor pads a batch: `rows` holds each row's (3, H, W)
    tiles; missing tiles are all-zero (the model drops them), smaller tiles are padded bottom/right; the mask
    is True on real pixels (`masks`: each tile's own (H, W) mask, where a tile is already padded)."""
    tiles = [tile for row in rows for tile in row]
    if not tiles:
        return {}
    count = max(len(row) for row in rows)
    height = max(tile.shape[1] for tile in tiles)
    width = max(tile.shape[2] for tile in tiles)
    pixel_values = torch.zeros((len(rows), count, tiles[0].shape[0], height, width), dtype=tiles[0].dtype)
    pixel_attention_mask = torch.zeros((len(rows), count, height, width), dtype=torch.bool)
    for index, row in enumerate(rows):
        for position, tile in enumerate(row):
            pixel_values[index, position, :, : tile.shape[1], : tile.shape[2]] = tile
            pixel_attention_mask[index, position, : tile.shape[1], : tile.shape[2]] = (
                masks[index][position] if masks else True)
    return {"pixel_values": pixel_values, "pixel_attention_mask": pixel_attention_mask}


class Collator:
    """Rows -> input_ids, attention_mask, labels (+ pixel_values, pixel_attention_mask).

    `skipped` / `skipped_by_reason` count the rows dropped under on_bad_sample="skip"; the counts live
    in shared memory, so they include rows skipped in DataLoader worker processes.
    """

    decode_image = staticmethod(decode_image)

    def __init__(self, processor, max_length=2048, padding="max_length", max_images=1, assistant_only_loss=False,
                 first_turn_only=False, on_bad_sample="raise", pad_to_multiple_of=8, supervised_logits_only=False):
        if padding not in PADDING_CHOICES:
            raise ValueError(f"padding must be one of {PADDING_CHOICES}, not {padding!r}")
        if on_bad_sample not in ON_BAD_SAMPLE_CHOICES:
            raise ValueError(f"on_bad_sample must be one of {ON_BAD_SAMPLE_CHOICES}, not {on_bad_sample!r}")
        if max_length < 1 or max_images < 1 or (pad_to_multiple_of or 1) < 1:
            raise ValueError("max_length, max_images and pad_to_multiple_of must be positive")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.max_length = max_length
        self.padding = padding
        self.max_images = max_images
        self.assistant_only_loss = assistant_only_loss
        self.first_turn_only = first_turn_only
        self.on_bad_sample = on_bad_sample
        self.pad_to_multiple_of = pad_to_multiple_of or 1
        self.supervised_logits_only = supervised_logits_only
        self.image_backend = processor.image_processor.backend
        self.image_token_id = processor.image_token_id
        # Labelled -100 wherever they occur, also outside an image block (e.g. typed into a question).
        markers = (processor.image_token, processor.fake_image_token, processor.global_image_token)
        self.marker_ids = torch.tensor(self.tokenizer.convert_tokens_to_ids(list(markers)))
        self.skip_counts = torch.zeros(len(SKIP_REASONS), dtype=torch.int64).share_memory_()

    @classmethod
    def from_args(cls, processor, data_args, **overrides):
        """The collator a config's DataArguments describe; training and evaluation both build it here."""
        settings = dict(
            max_length=data_args.max_length, padding=data_args.padding, max_images=data_args.max_images,
            assistant_only_loss=data_args.assistant_only_loss, first_turn_only=data_args.first_turn_only,
            on_bad_sample=data_args.on_bad_sample, supervised_logits_only=data_args.supervised_logits_only,
        )
        return cls(processor, **{**settings, **overrides})

    @property
    def skipped(self):
        return int(self.skip_counts.sum())

    @property
    def skipped_by_reason(self):
        return {reason: int(count) for reason, count in zip(SKIP_REASONS, self.skip_counts) if count}

    def __call__(self, rows):
        samples = self.encode_batch(rows)
        batch = {**self.pad_text(samples), **self.pad_images(samples)}
        if self.supervised_logits_only:
            batch.update(supervised_logits(batch["labels"]))
        return batch

    def encode_batch(self, rows):
        """The rows' encodings, bad rows raised or skipped and counted per on_bad_sample."""
        samples = []
        for position, row in enumerate(rows):
            try:
                samples.append(self.encode(row))
            except BadSample as bad:
                named = BadSample(f"{describe(row, position)}: {bad}", reason=bad.reason)
                if self.on_bad_sample == "raise":
                    raise named from None
                self.skip_counts[SKIP_REASONS.index(bad.reason)] += 1
                warnings.warn(f"skipped {named}", stacklevel=2)
        if not samples:
            raise ValueError(
                f"every one of the {len(rows)} samples of this batch was skipped as unusable "
                f"(skipped so far: {self.skipped_by_reason}); the Trainer cannot take an empty batch"
            )
        return samples

    def encode(self, row):
        messages, tools = self.conversation_of(row)
        images = [media.fit_to_processor(decode_image(image), self.processor.image_processor)
                  for image in (row.get("images") or [])[: count_images(messages)]]
        videos = [decode_video(video, self.processor.video_processor)
                  for video in (row.get("videos") or [])[: count_videos(messages)]]
        text, spans = self.render(messages, tools, len(images), len(videos))
        # do_pad=False: tiles come back unpadded (no copy into a zero tensor); pad_images pads the batch once.
        # A video's frames are sampled already (do_sample_frames=False); its metadata gives the timestamps.
        video_inputs = dict(videos=[frames for frames, _ in videos], video_metadata=[meta for _, meta in videos],
                            videos_kwargs={"do_sample_frames": False, "return_tensors": "pt"}) if videos else {}
        inputs = self.processor(
            text=[text], images=[images] if images else None, do_pad=False, add_special_tokens=False,
            return_offsets_mapping=True, return_text_replacement_offsets=True, **video_inputs,
        )
        input_ids, offsets = torch.tensor(inputs["input_ids"][0]), torch.tensor(inputs["offset_mapping"][0])
        replacements = inputs["text_replacement_offsets"][0]
        # numpy tiles from PIL images; a video's frames, one tile each, come as one tensor
        tiles = [torch.as_tensor(tile) for tile in inputs["pixel_values"][0]] if images or videos else []
        labels = self.labels_of(input_ids, offsets, replacements, spans)
        if len(input_ids) > self.max_length:
            image_end = int((offsets[:, 0] < replacements[-1]["new_span"][1]).sum()) if replacements else 0
            if image_end > self.max_length and videos:
                frames = len(videos[0][1].frames_indices)
                raise BadSample(
                    f"its video block ends at token {image_end} of {len(input_ids)} ({frames} frames x "
                    f"{self.processor.image_seq_len} features + timestamps) but max_length is {self.max_length}; "
                    "lower video_max_frames or video_fps, or raise max_length",
                    reason="video exceeds max_length",
                )
            if image_end > self.max_length:
                sizes = ", ".join(f"{image.width}x{image.height}" for image in images)
                raise BadSample(
                    f"its image block(s) end at token {image_end} of {len(input_ids)} (images {sizes}: {len(tiles)} "
                    f"tiles x {self.processor.image_seq_len} features) but max_length is {self.max_length}; "
                    "raise max_length or lower the image processor's resolution",
                    reason="image exceeds max_length",
                )
            input_ids, labels = input_ids[: self.max_length], labels[: self.max_length]
        if not (labels[1:] != IGNORE_INDEX).any():  # the first label is never a target once shifted
            raise BadSample(f"no supervised token left within max_length={self.max_length}",
                            reason="nothing to learn")
        self.check_placeholders(input_ids, tiles)
        return Encoded(input_ids, labels, tiles)

    def labels_of(self, input_ids, offsets, replacements, spans):
        """input_ids with -100 on the image blocks (found by the characters each replaced placeholder
        expanded into) and, for assistant_only_loss, on everything outside the assistant turns' spans."""
        ignored = token_mask(offsets, [r["new_span"] for r in replacements]) | torch.isin(input_ids, self.marker_ids)
        if self.assistant_only_loss:
            ignored |= ~token_mask(offsets, [expanded_span(span, replacements) for span in spans])
        return input_ids.masked_fill(ignored, IGNORE_INDEX)

    def conversation_of(self, row):
        """(messages, tools) of a row in qwen3_smvl/data/row_shape.py's shape, checked: answers present, images within max_images."""
        messages, tools = conversation(row)
        answers = [index for index, message in enumerate(messages) if message["role"] == "assistant"]
        if not answers:
            raise BadSample("row has no texts (no assistant turn)", reason="no texts")
        if self.first_turn_only:
            messages = messages[: answers[0] + 1]
        for number, message in enumerate(m for m in messages if m["role"] == "assistant"):
            if not (content_text(message.get("content")).strip() or message.get("tool_calls")):
                raise BadSample(f"turn {number} has an empty assistant answer ({message.get('content')!r})",
                                reason="empty answer")
        image_count = count_images(messages)
        if image_count > len(row.get("images") or []):
            raise BadSample(f"{image_count} image part(s) for {len(row.get('images') or [])} image(s)",
                            reason="placeholder mismatch")
        if image_count > self.max_images:
            raise BadSample(f"{image_count} images but max_images is {self.max_images}; raise max_images "
                            "(images are never dropped from a row that places them)", reason="too many images")
        video_count = count_videos(messages)
        if video_count > len(row.get("videos") or []):
            raise BadSample(f"{video_count} video part(s) for {len(row.get('videos') or [])} video(s)",
                            reason="placeholder mismatch")
        check_media_mix(image_count, video_count)
        return messages, tools

    def render(self, messages, tools, image_count, video_count=0):
        """(text, spans): the conversation as the chat template renders it with thinking off, each image
        (and video) where its part stands, and the character span of each assistant turn to supervise: the
        template's generation blocks (a turn's reasoning if it shows any, its answer and tool calls,
        its <|im_end|>; not the empty think block that switches thinking off)."""
        rendered, generation = render_jinja_template(
            [messages], tools=tools, chat_template=self.processor.chat_template,
            return_assistant_tokens_mask=True, enable_thinking=False,
        )
        text, spans = rendered[0], generation[0]
        placeholders = text.count(self.processor.image_token)
        if placeholders != image_count:
            raise BadSample(
                f"the text holds {placeholders} {self.processor.image_token} for {image_count} image(s) "
                f"(is {self.processor.image_token} typed into a question or answer?)",
                reason="placeholder mismatch",
            )
        if text.count(self.processor.video_token) != video_count:
            raise BadSample(f"the text holds {text.count(self.processor.video_token)} {self.processor.video_token} "
                            f"for {video_count} video(s) (typed into a question or answer, or a chat template "
                            "without video parts?)", reason="placeholder mismatch")
        turns = sum(message["role"] == "assistant" for message in messages)
        if len(spans) != turns:
            raise BadSample(f"the chat template marks {len(spans)} answers for {turns} assistant turns "
                            "(does it lack {% generation %} blocks?)", reason="template")
        return text, spans

    def check_placeholders(self, input_ids, tiles):
        """The model puts one image feature on each placeholder, and drops all-zero tiles as padding."""
        # A tile's first value almost always settles it; only a zero there needs the whole tile read.
        seen = sum(bool(tile[0, 0, 0] != 0 or tile.any()) for tile in tiles)
        features = seen * self.processor.image_seq_len
        placeholders = int((input_ids == self.image_token_id).sum())
        if placeholders != features:
            raise BadSample(
                f"{placeholders} {self.processor.image_token} placeholders but {seen} image tiles x "
                f"{self.processor.image_seq_len} = {features} image features",
                reason="placeholder mismatch",
            )

    def padded_length(self, longest):
        if self.padding == "max_length":
            return self.max_length
        return min(self.max_length, -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of)

    def pad_text(self, samples):
        """Right padding; attention_mask (not the pad id, which is also real text) marks it."""
        length = self.padded_length(max(len(sample.input_ids) for sample in samples))
        input_ids = torch.full((len(samples), length), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(samples), length), dtype=torch.long)
        labels = torch.full((len(samples), length), IGNORE_INDEX, dtype=torch.long)
        for index, sample in enumerate(samples):
            size = len(sample.input_ids)
            input_ids[index, :size] = sample.input_ids
            attention_mask[index, :size] = 1
            labels[index, :size] = sample.labels
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def pad_images(self, samples):
        return pad_tiles([sample.tiles for sample in samples])
