"""The stage-2 text-only replay source, converted once at download time into the messages JSONL that
qwen3_smvl/data/sources.py reads (docs/own-data.md), so that training reads it like any file of one's own.

    python -m qwen3_smvl.data.text_replay SOURCE_DIR OUT.jsonl

SOURCE_DIR is a download of ShareGPT-Chinese-English-90k (shareAI/ShareGPT-Chinese-English-90k on the
Hugging Face hub, AI-ModelScope/ShareGPT-Chinese-English-90k on ModelScope; Apache-2.0): real user
questions with ChatGPT's answers, the same conversations in English and in Chinese, in Firefly's layout,
one conversation a line in sharegpt_jsonl/*.jsonl:

    {"conversation_id": 1, "category": "...", "conversation": [{"human": "...", "assistant": "..."}, ...]}

Each conversation becomes {"messages": [{"role": "user", ...}, {"role": "assistant", ...}, ...]}. A
conversation keeps its turns up to the first one without both a question and an answer (later turns
build on it); one with no such turn, or a line that is not a JSON conversation, is skipped and counted.
"""

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

HUB_REPO = "shareAI/ShareGPT-Chinese-English-90k"
MODELSCOPE_REPO = "AI-ModelScope/ShareGPT-Chinese-English-90k"


class ReplayError(Exception):
    """A source that cannot be converted at all (no files, nothing usable); the message says why."""


def conversation_messages(row):
    """A Firefly row's turns as chat messages; (None, reason) when it has no usable turn."""
    turns = row.get("conversation") if isinstance(row, dict) else None
    if not isinstance(turns, list):
        return None, "no 'conversation' list"
    messages = []
    for turn in turns:
        question = turn.get("human") if isinstance(turn, dict) else None
        answer = turn.get("assistant") if isinstance(turn, dict) else None
        if not (isinstance(question, str) and question.strip() and isinstance(answer, str) and answer.strip()):
            break
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return (messages, None) if messages else (None, "no answered turn")


def convert(source_dir, out_path):
    """Writes OUT.jsonl from every *.jsonl under source_dir (sorted); -> (rows written, {reason: count},
    the first skipped line's file:line and reason)."""
    files = sorted(Path(source_dir).rglob("*.jsonl"))
    if not files:
        raise ReplayError(f"{source_dir} holds no .jsonl files; is it a download of {HUB_REPO}?")
    written, skipped, first_skip = 0, Counter(), None
    part = Path(f"{out_path}.part")
    part.parent.mkdir(parents=True, exist_ok=True)
    with part.open("w", encoding="utf-8") as out:
        for path in files:
            with path.open("rb") as lines:
                for number, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    try:
                        messages, reason = conversation_messages(json.loads(line))
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        messages, reason = None, "not JSON"
                    if messages is None:
                        skipped[reason] += 1
                        first_skip = first_skip or f"{path}:{number}: {reason}"
                        continue
                    out.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
                    written += 1
    if not written:
        part.unlink()
        raise ReplayError(f"no usable conversation in {len(files)} file(s) under {source_dir} (first: {first_skip})")
    os.replace(part, out_path)  # a half-written file never looks converted
    return written, dict(skipped), first_skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source_dir", help=f"a download of {HUB_REPO}")
    parser.add_argument("out", help="the messages JSONL to write")
    args = parser.parse_args(argv)
    try:
        written, skipped, first_skip = convert(args.source_dir, args.out)
    except ReplayError as error:
        sys.exit(f"text_replay: {error}")
    reasons = f" ({', '.join(f'{reason} {count:,}' for reason, count in skipped.items())}; first: {first_skip})" \
        if skipped else ""
    print(f"text replay: {written:,} conversations -> {args.out}, {sum(skipped.values()):,} skipped{reasons}")


if __name__ == "__main__":
    main()
