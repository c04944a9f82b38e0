"""The saved checkpoint as other tools use it: assistant-token masks (TRL's assistant_only_loss),
batched generation, and the pad id, all on a stitched checkpoint reloaded with plain transformers."""

import logging

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, pipeline

from qwen3_smvl.data.collate import IGNORE_INDEX, Collator
from qwen3_smvl.data.the_cauldron import cauldron_messages

ANSWERS = ("It is red.", "Yes, quite sure.")
# Two questions of different lengths, so that a batch of them is padded.
QUESTIONS = ("Colour?", "What is the colour of this picture, in one word?")


def solid(colour, size=48):
    return Image.new("RGB", (size, size), colour)


def ask(question, image=None):
    """A user message with an image (a bare placeholder when the pixels are passed separately)."""
    image_part = {"type": "image"} if image is None else {"type": "image", "image": image}
    return {"role": "user", "content": [image_part, {"type": "text", "text": question}]}


def two_turn_chat(image):
    return [
        ask("What colour is it?", image),
        {"role": "assistant", "content": [{"type": "text", "text": ANSWERS[0]}]},
        {"role": "user", "content": [{"type": "text", "text": "Are you sure?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": ANSWERS[1]}]},
    ]


def masked_runs(input_ids, mask):
    """The token ids of each maximal run of mask == 1."""
    runs, current = [], []
    for token, flag in zip(input_ids, mask):
        if flag:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    return runs + [current] if current else runs


def assistant_mask(processor, messages):
    encoded = processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, enable_thinking=False
    )
    return encoded["input_ids"][0], encoded["assistant_masks"][0]


def test_assistant_mask_covers_exactly_the_answers(stitched_dir):
    processor = AutoProcessor.from_pretrained(stitched_dir)
    input_ids, mask = assistant_mask(processor, two_turn_chat(solid("red")))
    end = processor.end_of_utterance_token
    runs = [processor.tokenizer.decode(run) for run in masked_runs(input_ids, mask)]
    assert runs == [answer + end for answer in ANSWERS]
    # The expanded image block really is in the row (and unmasked): the mask was shifted past it.
    assert input_ids.count(processor.image_token_id) == processor.image_seq_len


def test_collator_assistant_only_loss_agrees_with_the_template_mask(stitched_dir):
    """collate.py supervises the character spans of the template's generation blocks; the tokenizer's
    assistant mask from the same markers must pick out the same tokens, so TRL and this project's
    trainer supervise the same thing."""
    processor = AutoProcessor.from_pretrained(stitched_dir)
    image = solid("red")
    texts = [{"user": "What colour is it?", "assistant": ANSWERS[0]}, {"user": "Are you sure?", "assistant": ANSWERS[1]}]
    row = {"images": [image], "messages": cauldron_messages(texts, image_count=1)}  # as the_cauldron's reader gives it
    batch = Collator(processor, padding="longest", assistant_only_loss=True)([row])
    input_ids, mask = assistant_mask(processor, two_turn_chat(image))
    length = int(batch["attention_mask"].sum())
    assert batch["input_ids"][0, :length].tolist() == input_ids
    assert (batch["labels"][0, :length] != IGNORE_INDEX).tolist() == [bool(flag) for flag in mask]


def test_batched_pipeline_answers_as_each_prompt_alone(stitched_dir):
    pipe = pipeline("image-text-to-text", model=str(stitched_dir))
    chats = [[ask(question, solid(colour))] for question, colour in zip(QUESTIONS, ("red", "blue"))]
    options = dict(max_new_tokens=6, return_full_text=False, do_sample=False)
    alone = [pipe(text=chat, **options)[0]["generated_text"] for chat in chats]
    batched = [result[0]["generated_text"] for result in pipe(text=chats, batch_size=2, **options)]
    assert batched == alone


def test_reloaded_checkpoint_carries_the_pad_id_and_left_padding(stitched_dir):
    model = AutoModelForImageTextToText.from_pretrained(stitched_dir)
    tokenizer = AutoProcessor.from_pretrained(stitched_dir).tokenizer
    assert tokenizer.pad_token_id is not None
    assert model.config.text_config.pad_token_id == tokenizer.pad_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert tokenizer.padding_side == "left"


@pytest.fixture
def transformers_log(caplog, monkeypatch):
    """The warnings transformers logs, with its warning_once memory cleared so that a warning an
    earlier test already triggered is logged again."""
    monkeypatch.setattr(logging.getLogger("transformers"), "propagate", True)
    logging.Logger.warning_once.cache_clear()
    caplog.set_level(logging.WARNING, logger="transformers")
    return caplog


def test_no_pad_warning_on_load_and_batched_generate(stitched_dir, transformers_log, recwarn):
    model = AutoModelForImageTextToText.from_pretrained(stitched_dir)
    processor = AutoProcessor.from_pretrained(stitched_dir)
    prompts = [processor.apply_chat_template([ask(question)], add_generation_prompt=True, enable_thinking=False)
               for question in QUESTIONS]
    inputs = processor(text=prompts, images=[[solid("red")], [solid("blue")]], padding=True, return_tensors="pt")
    assert (inputs["attention_mask"][:, 0] == 0).any()  # the batch is padded, on the left
    with torch.no_grad():
        model.generate(**inputs, max_new_tokens=3, do_sample=False)
    messages = [record.getMessage() for record in transformers_log.records] + [str(w.message) for w in recwarn]
    assert not [message for message in messages if "pad" in message.lower()]


def test_trl_sft_trainer_trains_only_the_answers(stitched_dir, tmp_path):
    trl = pytest.importorskip("trl")
    from datasets import Dataset

    model = AutoModelForImageTextToText.from_pretrained(stitched_dir)
    processor = AutoProcessor.from_pretrained(stitched_dir)
    rows = [
        {"images": [solid(colour)], "messages": [
            ask("What colour is it?"),
            {"role": "assistant", "content": [{"type": "text", "text": f"It is {colour}."}]},
        ]}
        for colour in ("red", "blue")
    ]
    args = trl.SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, per_device_train_batch_size=2,
                         max_length=None, use_cpu=True, report_to="none")
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=processor)
    batch = next(iter(trainer.get_train_dataloader()))
    supervised = [processor.tokenizer.decode(ids[labels != IGNORE_INDEX])
                  for ids, labels in zip(batch["input_ids"], batch["labels"])]
    # The trainer shuffles the rows.
    assert sorted(supervised) == [f"It is {colour}.{processor.end_of_utterance_token}" for colour in ("blue", "red")]
