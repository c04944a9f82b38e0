"""VQA accuracy and eval loss of a trained Qwen3-SmVL: answer normalisation, scoring, the loss over the
supervised tokens, the table and eval_results.json, used by eval_vqa.py and by train.py's
run_evaluation. The command is eval_vqa.py (its docstring has the usage and which rows are scored).
"""

import json
import re
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from num2words import num2words
from tqdm.auto import tqdm

from qwen3_smvl import inference
from qwen3_smvl.data import loading
from qwen3_smvl.data.collate import (
    IGNORE_INDEX,
    BadSample,
    Collator,
    content_text,
    conversation,
    count_images,
    count_videos,
    decode_video,
)

ARTICLES = {"a", "an", "the"}
# "twenty-one" is "twenty one" once punctuation is gone; "none" -> "0" as the official VQA evaluation maps it.
NUMBER_WORDS = {num2words(n).replace("-", " "): str(n) for n in range(101)} | {"none": "0"}
NUMBER_PATTERN = re.compile(r"(?<!\S)(" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + r")(?!\S)")
CONTRACTIONS = [  # with or without the apostrophe, which answers often drop
    (r"\bcan'?t\b|\bcannot\b", "can not"),
    (r"\bwon'?t\b", "will not"),
    (r"\b(do|does|did|is|are|was|were|has|have|had|could|should|would|must|need)n'?t\b", r"\1 not"),
    (r"'re\b", " are"), (r"'m\b", " am"), (r"'ve\b", " have"), (r"'ll\b", " will"),
]
DEFAULT_MAX_NEW_TOKENS = 128


def normalise(answer):
    """VQA-style: lowercase, contractions expanded, punctuation gone (decimal points and thousands
    commas in numbers kept and folded: "1,000.5" -> "1000.5"), number words as digits, articles
    dropped, single spaces."""
    text = answer.lower().replace("\u2019", "'")
    for pattern, replacement in CONTRACTIONS:
        text = re.sub(pattern, replacement, text)
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    text = re.sub(r"\.(?!\d)", " ", text)  # a period that is not a decimal point
    text = re.sub(r"[^\w\s.]|_", " ", text.replace("'", ""))
    words = NUMBER_PATTERN.sub(lambda match: NUMBER_WORDS[match[1]], " ".join(text.split())).split()
    # A last "a" is an option letter ("Answer: A"), not an article.
    return " ".join(word for i, word in enumerate(words) if word not in ARTICLES or i == len(words) - 1)


def score(prediction, reference):
    """(exact, contains) after normalisation. VQA's accuracy, min(#humans who gave the answer / 3, 1),
    is plain exact match here: the_cauldron keeps a single reference answer per question. `contains`
    matches whole words, so a chatty "There are 2 dogs." counts for "two" but "12" does not for "2"."""
    predicted, expected = normalise(prediction), normalise(reference)
    return predicted == expected, f" {expected} " in f" {predicted} "


def loss_of_row(model, collator, row):
    """(summed cross-entropy, supervised tokens) of one row, shifted and masked as the model's own loss."""
    batch = {key: value.to(model.device) for key, value in collator([row]).items()}
    labels = batch.pop("labels")[0, 1:]
    with torch.no_grad():
        logits = model(**batch).logits[0, :-1]
    loss = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return loss.item(), int((labels != IGNORE_INDEX).sum())


def evaluate_row(model, processor, row, collator, max_new_tokens, think):
    """Scores the reply to the conversation up to the row's last assistant turn against that turn."""
    try:
        loss, tokens = loss_of_row(model, collator, row)
    except BadSample as bad:  # training skips or refuses such a row; here it is counted
        return {"skipped": str(bad)}
    messages, tools = conversation(row)
    last = max(index for index, message in enumerate(messages) if message["role"] == "assistant")
    prompt, reference = messages[:last], content_text(messages[last]["content"])
    images = [Collator.decode_image(image) for image in row["images"][: count_images(prompt)]]
    videos = [decode_video(video, processor.video_processor) for video in (row.get("videos") or [])[: count_videos(prompt)]]
    reply = inference.reply_to(model, processor, prompt, images, think=think, max_new_tokens=max_new_tokens, tools=tools,
                           videos=videos)
    prediction = inference.split_thinking(reply)[1]  # a reply cut off while thinking answers nothing
    correct, contains = score(prediction, reference)
    question = next((content_text(m["content"]) for m in reversed(prompt) if m["role"] == "user"), "")
    return {
        "source": row["source"], "question": question, "reference": reference,
        "prediction": prediction, "correct": correct, "contains": contains,
        "loss": loss / tokens, "tokens": tokens,
    }


def metrics(records):
    tokens = sum(record["tokens"] for record in records)
    mean = lambda key: sum(record[key] for record in records) / len(records) if records else None
    return {
        "n": len(records),
        "accuracy": mean("correct"),
        "contains": mean("contains"),
        "eval_loss": sum(record["loss"] * record["tokens"] for record in records) / tokens if tokens else None,
    }


def evaluate(model, processor, rows, collator, max_new_tokens=DEFAULT_MAX_NEW_TOKENS, think=False):
    """Answers and scores each row's last assistant turn (given the conversation before it), and its
    eval loss (mean over the supervised tokens of all rows). `collator` raises BadSample on an unusable row, which is counted.
    -> {"summary": {subset: metrics, ..., "overall": metrics}, "skipped": count, "samples": [record, ...]}"""
    model.eval()
    records = [evaluate_row(model, processor, row, collator, max_new_tokens, think)
               for row in tqdm(rows, desc="evaluating", unit="row")]
    scored = [record for record in records if "skipped" not in record]
    subsets = dict.fromkeys(record["source"] for record in scored)
    summary = {subset: metrics([r for r in scored if r["source"] == subset]) for subset in subsets}
    summary["overall"] = metrics(scored)
    return {"summary": summary, "skipped": len(records) - len(scored), "samples": records}


def cell(value, spec):
    return "-" if value is None else format(value, spec)


def format_table(summary):
    width = max(len("overall"), *map(len, summary)) + 2
    lines = [f"{'subset':<{width}}{'n':>6}{'accuracy':>10}{'contains':>10}{'eval loss':>11}"]
    for subset, m in summary.items():
        lines.append(f"{subset:<{width}}{m['n']:>6}{cell(m['accuracy'], '.1%'):>10}"
                     f"{cell(m['contains'], '.1%'):>10}{cell(m['eval_loss'], '.4f'):>11}")
    return "\n".join(lines)


def text_only_loss(model, processor, rows):
    """Mean cross-entropy over the answers (and their <|im_end|>) of text-only conversations, always
    answers only, so that runs with different assistant_only_loss settings compare."""
    collator = Collator(processor, padding="longest", assistant_only_loss=True)
    sums, counts = zip(*(loss_of_row(model, collator, row) for row in tqdm(rows, desc="text-only loss", unit="row")))
    return {"n": len(rows), "loss": sum(sums) / sum(counts)}


def summary_line(results, seconds, path):
    """The evaluation's one line: the overall figures, rows scored and skipped, time and where."""
    overall, skipped = results["summary"]["overall"], results["skipped"]
    text_only = f", text-only loss {results['text_only']['loss']:.4f}" if "text_only" in results else ""
    return (f"eval: accuracy {cell(overall['accuracy'], '.1%')} (contains {cell(overall['contains'], '.1%')}), "
            f"eval loss {cell(overall['eval_loss'], '.4f')} on {overall['n']} rows"
            f"{f' ({skipped} skipped)' if skipped else ''}{text_only}, {seconds:.0f} s -> {path}")


def report(results, out_dir, settings, seconds):
    """Prints the table and writes <out_dir>/eval_results.json; returns its path."""
    print(format_table(results["summary"]))
    if "text_only" in results:
        print(f"text-only held-out loss ({results['text_only']['n']} answers): {results['text_only']['loss']:.4f}")
    if results["skipped"]:
        print(f"{results['skipped']} unusable rows skipped (see eval_results.json)")
    path = Path(out_dir) / "eval_results.json"
    path.write_text(json.dumps({**settings, **results}, indent=2, ensure_ascii=False))
    print(summary_line(results, seconds, path))
    return path


def evaluate_and_report(model, processor, rows, data_args, out_dir, max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
                        think=False, settings=None):
    """evaluate + report with the config's collator settings: what train.py calls after training."""
    started = time.perf_counter()
    # Batches of one: right padding cannot change a causal model's loss; an unusable row raises and is counted.
    collator = Collator.from_args(processor, data_args, padding="longest", on_bad_sample="raise", supervised_logits_only=False)
    results = evaluate(model, processor, rows, collator, max_new_tokens, think)
    if data_args.text_eval_file:
        results["text_only"] = text_only_loss(model, processor, loading.load_text_rows(data_args.text_eval_file))
    settings = {**(settings or {}), "max_new_tokens": max_new_tokens, "think": think}
    report(results, out_dir, settings, time.perf_counter() - started)
    return results
