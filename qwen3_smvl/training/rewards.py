"""GRPO's reward functions, in TRL's signature: `f(completions, **columns) -> [float | None]`, one value
per completion; the dataset's columns (`answer`, the reference; `origin`, `source`, ...) arrive as keyword
lists. A completion is TRL's conversational one, `[{"role": "assistant", "content": text}]`, or a string.

    correctness  1 when the final answer (after the think block) equals the reference under the VQA
                 normalisation evaluation uses (qwen3_smvl/evaluation/vqa.py), or, both numbers, is within
                 `answer_tolerance` of it (relative); else 0
    format       1 for one well-formed `<think>...</think>` block (something inside) followed by an answer
    module:fn    a user's function, imported by path, with the same signature

`rewards` lists them by name and TRL's `reward_weights` weighs them (same order).
"""

import importlib
import math
import re
from functools import partial

from qwen3_smvl.inference import split_thinking
from qwen3_smvl.evaluation.vqa import normalise

THINK_BLOCK = re.compile(r"\s*<think>(?P<thinking>.*?)</think>(?P<answer>.*)", re.DOTALL)
BUILT_IN = ("correctness", "format")


class RewardError(ValueError):
    """A `rewards` entry that names no function."""


def completion_text(completion):
    return completion[-1]["content"] if isinstance(completion, list) else completion


def final_answer(completion):
    """What the completion answers: the text after its think block (nothing when cut off inside it)."""
    return split_thinking(completion_text(completion))[1]


def as_number(text):
    try:
        return float(text)
    except ValueError:
        return None


def is_correct(prediction, reference, tolerance):
    predicted, expected = normalise(prediction), normalise(reference)
    if predicted == expected:
        return True
    predicted_number, expected_number = as_number(predicted), as_number(expected)
    return (predicted_number is not None and expected_number is not None
            and math.isclose(predicted_number, expected_number, rel_tol=tolerance, abs_tol=0.0))


def correctness(completions, answer, tolerance=0.0, **columns):
    """1.0 for a final answer that matches the reference `answer`, 0.0 otherwise."""
    return [float(is_correct(final_answer(completion), reference, tolerance))
            for completion, reference in zip(completions, answer)]


def is_well_formed(text):
    block = THINK_BLOCK.fullmatch(text)
    if not block:
        return False
    thinking, reply = block["thinking"], block["answer"]
    tags_elsewhere = any(tag in part for tag in ("<think>", "</think>") for part in (thinking, reply))
    return bool(thinking.strip()) and bool(reply.strip()) and not tags_elsewhere


def format(completions, **columns):  # noqa: A001 - the name TRL logs it under (rewards/format/mean)
    """1.0 for one `<think>` block with reasoning in it, closed, then a non-empty answer; 0.0 otherwise."""
    return [float(is_well_formed(completion_text(completion))) for completion in completions]


def imported(path):
    """The function `module:function` names (the module importable from the working directory or sys.path)."""
    module_name, _, name = path.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise RewardError(f"rewards: '{path}' names no function ({error})")
    if not callable(function):
        raise RewardError(f"rewards: '{path}' is not callable")
    return function


def reward_functions(names, tolerance):
    """The functions `rewards` names, in its order; TRL logs each under its __name__."""
    functions = []
    for name in names:
        if name == "correctness":
            function = partial(correctness, tolerance=tolerance)
            function.__name__ = "correctness"
        elif name == "format":
            function = format
        elif ":" in name:
            function = imported(name)
        else:
            raise RewardError(f"rewards: '{name}' is not one of {BUILT_IN} nor a `module:function` path")
        functions.append(function)
    return functions
