"""collate.Collator on the tiny stitched processor (32 px, one tile of 4 features per image) and, where
the image block's markup matters, on SmolVLM2's real geometry (512 px tiles of 64 features, split)."""

import copy
import io
import math
import pickle
import re

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from transformers import AutoProcessor, SmolVLMImageProcessorPil

from qwen3_smvl.data.collate import IGNORE_INDEX, SKIP_REASONS, Collator
from qwen3_smvl.data.the_cauldron import cauldron_messages
from qwen3_smvl.graft import stitch
from qwen3_smvl.training import trainable

THINK = "<think>\n\n</think>\n\n"


def encoded(mode="RGB", size=(40, 30), colour=(200, 30, 30)):
    """Image file bytes (PNG; JPEG for CMYK), as datasets' Image(decode=False) holds them."""
    image = Image.new("RGB", size, colour)
    image = image.quantize(8) if mode == "P" else image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if mode == "CMYK" else "PNG")
    return buffer.getvalue()


def undecoded(mode="RGB", **kwargs):
    return {"bytes": encoded(mode, **kwargs), "path": None}


def make_row(question="What colour is it?", answer="red", images=1, source="cocoqa", turns=(), max_images=None):
    """A the_cauldron row as its reader gives it: images lead the first question (the first `max_images`
    of them when set, as the reader keeps for a config's max_images)."""
    texts = [{"user": question, "assistant": answer}] + [{"user": q, "assistant": a} for q, a in turns]
    shown = images if max_images is None else min(images, max_images)
    return {"images": [undecoded(colour=(40 * i, 90, 200)) for i in range(images)],
            "messages": cauldron_messages(texts, shown), "source": source}


def single_turn(question, answer):
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n{THINK}{answer}<|im_end|>\n"


def image_block(processor, features):
    """The unsplit block the processor expands one placeholder into."""
    p = processor
    return p.fake_image_token + p.global_image_token + p.image_token * features + p.fake_image_token


def decode(processor, ids):
    return processor.tokenizer.decode(ids, skip_special_tokens=False)


def supervised(processor, batch, index=0):
    labels = batch["labels"][index]
    return decode(processor, labels[labels != IGNORE_INDEX])


def placeholders(processor, batch, index=0):
    return int((batch["input_ids"][index] == processor.image_token_id).sum())


@pytest.fixture(scope="module")
def processor(stitched_dir):
    return AutoProcessor.from_pretrained(stitched_dir)


@pytest.fixture(scope="module")
def real_geometry(real_geometry_smolvlm_dir, tiny_qwen_dir):
    """(model, processor) at SmolVLM2's image geometry: images resized to 2048 px, split into 512 px tiles."""
    return stitch(real_geometry_smolvlm_dir, tiny_qwen_dir)


def test_full_text_labels_skip_exactly_the_image_block(processor):
    batch = Collator(processor, max_length=64)([make_row()])
    ids, labels, attention = batch["input_ids"][0], batch["labels"][0], batch["attention_mask"][0]
    real = int(attention.sum())
    conversation, prompt = single_turn("What colour is it?", "red"), "<|im_start|>user\n"
    assert decode(processor, ids[:real]) == prompt + image_block(processor, 4) + conversation[len(prompt):]
    assert supervised(processor, batch) == conversation
    assert ids.shape == (64,) and attention[real:].eq(0).all() and labels[real:].eq(IGNORE_INDEX).all()
    assert ids[real:].eq(processor.tokenizer.pad_token_id).all()
    assert Collator(processor).image_backend == "torchvision"


def test_image_block_markup_is_masked_at_the_real_geometry(real_geometry):
    model, processor = real_geometry
    image = Image.new("RGB", (120, 90), (10, 120, 60))  # resized to 2048x1536: 3 rows x 4 columns + global view
    row = {**make_row("How many dogs?", "three"), "images": [image]}
    batch = Collator(processor, padding="longest")([row])
    text = decode(processor, batch["input_ids"][0])
    assert "<row_3_col_4>" in text and "\n\n" + processor.fake_image_token + processor.global_image_token in text
    assert placeholders(processor, batch) == batch["pixel_values"].shape[1] * processor.image_seq_len == 13 * 64
    assert supervised(processor, batch) == single_turn("How many dogs?", "three")
    markers = [processor.image_token, processor.fake_image_token, processor.global_image_token]
    marker_ids = torch.tensor(processor.tokenizer.convert_tokens_to_ids(markers))
    assert batch["labels"][0][torch.isin(batch["input_ids"][0], marker_ids)].eq(IGNORE_INDEX).all()
    assert torch.isfinite(model(**batch).loss)


def test_image_too_long_for_max_length_raises_or_is_skipped(real_geometry):
    _, processor = real_geometry
    question = "What is on the table in this kitchen?"
    big = {**make_row(question, "a cup", source="aokvqa"), "images": [Image.new("RGB", (640, 480), "gray")]}
    text_only = make_row(images=0)
    named = rf"sample 1 of the batch \(source 'aokvqa', question '{re.escape(question)}'\)"
    with pytest.raises(ValueError, match=named + r": its image block\(s\) end at token \d+ .*640x480.*max_length is 256"):
        Collator(processor, max_length=256)([text_only, big])
    skipping = Collator(processor, max_length=256, on_bad_sample="skip")
    with pytest.warns(UserWarning, match="skipped sample 1 of the batch"):
        batch = skipping([text_only, big])
    assert len(batch["input_ids"]) == 1 and "pixel_values" not in batch
    assert skipping.skipped == 1 and skipping.skipped_by_reason == {"image exceeds max_length": 1}
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="every one of the 1 samples"):
        skipping([big])
    assert skipping.skipped == 2


def test_assistant_only_loss_supervises_the_answers_and_their_end(processor):
    row = make_row("What colour is it?", "red", turns=[("And the border?", "dark blue")])
    collator = Collator(processor, assistant_only_loss=True)
    text_only = make_row("What colour is it?", "red", images=0, turns=[("And the border?", "dark blue")])
    batch = collator([row, text_only])
    for index in range(2):
        assert supervised(processor, batch, index) == "red<|im_end|>dark blue<|im_end|>"
        rising_edges = torch.diff(batch["labels"][index].ne(IGNORE_INDEX).int()).eq(1).sum()
        assert rising_edges == 2  # two contiguous spans, nothing else
    earlier_turn = "<|im_start|>user\nWhat colour is it?<|im_end|>\n<|im_start|>assistant\nred<|im_end|>\n"
    last_turn = single_turn("And the border?", "dark blue")  # only the final answer gets the empty think block
    assert supervised(processor, Collator(processor)([row])) == earlier_turn + last_turn


def test_first_turn_only_keeps_texts_0(processor):
    batch = Collator(processor, first_turn_only=True)([make_row("Q one?", "A one", turns=[("Q two?", "A two")])])
    assert supervised(processor, batch) == single_turn("Q one?", "A one")


def test_a_real_endoftext_in_an_answer_stays_supervised(processor):
    for assistant_only_loss in (False, True):
        collator = Collator(processor, assistant_only_loss=assistant_only_loss)
        batch = collator([make_row(answer="red<|endoftext|>green")])
        tail = "red<|endoftext|>green<|im_end|>" + ("" if assistant_only_loss else "\n")
        assert supervised(processor, batch).endswith(tail)
        real = batch["attention_mask"][0].bool()
        assert (batch["labels"][0][real] == processor.tokenizer.pad_token_id).sum() == 1


def test_truncation_cuts_text_after_the_image_never_the_block(processor):
    row = make_row(answer="red " * 200)
    whole = Collator(processor, max_length=4096, padding="longest")([row])
    batch = Collator(processor, max_length=48, padding="longest")([row])
    assert batch["input_ids"].shape == (1, 48) and batch["attention_mask"].all()
    assert placeholders(processor, batch) == 4
    assert torch.equal(batch["input_ids"][0], whole["input_ids"][0, :48])
    image_end = len(processor.tokenizer.encode("<|im_start|>user\n")) + 7  # the block: 7 special tokens
    with pytest.raises(ValueError, match=f"end at token {image_end} .*max_length is {image_end - 1}"):
        Collator(processor, max_length=image_end - 1)([row])
    with pytest.raises(ValueError, match="no supervised token"):
        Collator(processor, max_length=16, assistant_only_loss=True)([make_row(question="why " * 50)])


def test_padding_longest_rounds_up_to_a_multiple_and_caps_at_max_length(processor):
    rows = [make_row(answer="red"), make_row(answer="a much longer answer than the first")]
    batch = Collator(processor, max_length=2048, padding="longest")(rows)
    longest = int(batch["attention_mask"].sum(1).max())
    assert batch["input_ids"].shape[1] == math.ceil(longest / 8) * 8
    capped = Collator(processor, max_length=30, padding="longest")([make_row(answer="red " * 50)])
    assert capped["input_ids"].shape == (1, 30)
    assert Collator(processor, max_length=128, padding="max_length")(rows)["input_ids"].shape == (2, 128)


def test_mixed_batches_match_the_processors_own_padding(processor):
    rows = [make_row(images=1), make_row(images=2), make_row(images=0)]
    batch = Collator(processor, max_images=2)(rows)
    assert [placeholders(processor, batch, i) for i in range(3)] == [4, 8, 0]
    assert batch["pixel_values"].shape == (3, 2, 3, 32, 32)
    images = [[Collator.decode_image(image) for image in row["images"]] for row in rows]
    expected = processor(text=["<|image_pad|>", "<|image_pad|><|image_pad|>", "x"], images=images)
    assert torch.equal(batch["pixel_values"], expected["pixel_values"])
    assert torch.equal(batch["pixel_attention_mask"], expected["pixel_attention_mask"].bool())
    read_with_one = [make_row(images=n, max_images=1) for n in (1, 2, 0)]
    one = Collator(processor, max_images=1)(read_with_one)
    assert [placeholders(processor, one, i) for i in range(3)] == [4, 4, 0] and one["pixel_values"].shape[1] == 1
    text_only = Collator(processor)([make_row(images=0)] * 3)
    assert set(text_only) == {"input_ids", "attention_mask", "labels"}


def test_pil_backend_gives_the_same_layout(processor, stitched_dir):
    pil = copy.copy(processor)
    pil.image_processor = SmolVLMImageProcessorPil.from_pretrained(stitched_dir)
    rows = [make_row(images=2), make_row(images=0)]
    fast, slow = Collator(processor, max_images=2), Collator(pil, max_images=2)
    assert (fast.image_backend, slow.image_backend) == ("torchvision", "pil")
    fast_batch, slow_batch = fast(rows), slow(rows)
    assert torch.equal(fast_batch["input_ids"], slow_batch["input_ids"])
    assert torch.equal(fast_batch["pixel_attention_mask"], slow_batch["pixel_attention_mask"])
    assert torch.allclose(fast_batch["pixel_values"], slow_batch["pixel_values"], atol=0.05)


def test_forward_pass_on_every_kind_of_batch(stitched):
    model, processor = stitched
    text_only = make_row(images=0)
    batches = {
        "one image": [make_row(), make_row(answer="blue")],
        "two images": [make_row(images=2), make_row(images=1)],
        "mixed": [make_row(images=2), text_only],
        "text only": [text_only, text_only],
    }
    for kind, rows in batches.items():
        batch = Collator(processor, padding="longest", max_images=2)(rows)
        assert torch.isfinite(model(**batch).loss), kind


def test_supervised_logits_only_gives_the_same_loss_and_gradient(stitched):
    model, processor = stitched
    trainable.set_trainable(model)
    rows = [make_row(turns=[("And now?", "still red")]), make_row(answer="blue"), make_row(images=2)]
    results = []
    for supervised_only in (False, True):
        batch = Collator(processor, padding="longest", max_images=2, supervised_logits_only=supervised_only)(rows)
        model.zero_grad()
        output = model(**batch)
        output.loss.backward()
        results.append((output.loss, model.model.connector.modality_projection.proj.weight.grad.clone(), output.logits.shape[:-1].numel()))
    (full_loss, full_grad, all_positions), (kept_loss, kept_grad, kept_positions) = results
    assert torch.allclose(full_loss, kept_loss) and torch.allclose(full_grad, kept_grad, rtol=1e-4, atol=1e-7)
    supervised = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    assert kept_positions == supervised < all_positions


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "CMYK"])
def test_non_rgb_images_are_converted(processor, mode):
    image = Collator.decode_image(undecoded(mode))
    assert image.mode == "RGB" and image.size == (40, 30)
    batch = Collator(processor)([{**make_row(), "images": [undecoded(mode)]}])
    assert placeholders(processor, batch) == 4


def test_transparency_is_composited_onto_white_as_the_image_processor_does():
    clear = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert Collator.decode_image(clear).getpixel((0, 0)) == (255, 255, 255)


def with_images(*images):
    return {**make_row(source="vqarad"), "images": list(images)}


BAD_ROWS = {  # name: (row, skip reason, what the message says)
    "corrupt bytes": (with_images({"bytes": b"not an image", "path": None}), "bad image", "embedded image bytes cannot be read"),
    "truncated file": (with_images({"bytes": encoded(size=(64, 64))[:60], "path": None}), "bad image", "decoded"),
    "None image": (with_images(None), "bad image", "missing"),
    "no bytes nor path": (with_images({"bytes": None, "path": None}), "bad image", "missing"),
    "empty answer": (make_row(answer=" ", source="vqarad"), "empty answer", "empty assistant answer"),
    "empty texts": ({"images": [undecoded()], "messages": []}, "no texts", "no texts"),
    "placeholder typed in": (make_row(question="see <|image_pad|>", source="vqarad"), "placeholder mismatch", "typed"),
}


@pytest.mark.parametrize("name", list(BAD_ROWS))
def test_bad_rows_are_named_or_skipped_and_counted(processor, name):
    bad, reason, message = BAD_ROWS[name]
    source = "None" if name == "empty texts" else "'vqarad'"
    with pytest.raises(ValueError, match=rf"sample 1 of the batch \(source {source}.*{message}"):
        Collator(processor)([make_row(), bad])
    collator = Collator(processor, on_bad_sample="skip")
    with pytest.warns(UserWarning, match=message):
        batch = collator([make_row(), bad, make_row(answer="blue")])
    assert len(batch["input_ids"]) == 2 and collator.skipped_by_reason == {reason: 1}
    assert reason in SKIP_REASONS


def test_decoded_and_undecoded_images_give_the_same_batch(processor):
    row = make_row()
    decoded = {**row, "images": [Image.open(io.BytesIO(row["images"][0]["bytes"]))]}
    collator = Collator(processor)
    for key, value in collator([row]).items():
        assert torch.equal(value, collator([decoded])[key]), key


def test_picklable_and_runs_in_dataloader_workers(processor):
    collator = Collator(processor, padding="longest", on_bad_sample="skip")
    rows = [make_row(), make_row(answer="blue"), make_row(answer=""), make_row(answer="green")]
    clone = pickle.loads(pickle.dumps(collator))
    for key, value in collator(rows[:2]).items():
        assert torch.equal(value, clone(rows[:2])[key]), key
    loader = DataLoader(rows, batch_size=2, num_workers=2, collate_fn=collator, multiprocessing_context="fork")
    assert [len(batch["input_ids"]) for batch in loader] == [2, 1]
    assert collator.skipped == 1 and collator.skipped_by_reason == {"empty answer": 1}  # counted in a worker
    raising = DataLoader(rows, batch_size=2, num_workers=2, collate_fn=Collator(processor),
                         multiprocessing_context="fork")
    with pytest.raises(ValueError, match="sample 0 of the batch .*empty assistant answer"):
        list(raising)


def test_rejects_unknown_settings(processor):
    for kwargs in ({"padding": "right"}, {"on_bad_sample": "ignore"}, {"max_images": 0}):
        with pytest.raises(ValueError):
            Collator(processor, **kwargs)
