"""infer.py: prompts, greedy answers, the streaming CLI and its refusals, on the tiny stitched model."""

import io
import subprocess
import sys

import pytest
import torch
from PIL import Image
from transformers.generation.streamers import BaseStreamer

from qwen3_smvl import inference

import infer
from conftest import REPO


def run_cli(*args, stdin=None):
    return subprocess.run(
        [sys.executable, str(REPO / "infer.py"), *map(str, args)],
        input=stdin, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def loaded(stitched_dir):
    return inference.load_model(stitched_dir)


@pytest.fixture(scope="module")
def on_cpu(stitched_dir):
    return inference.load_model(stitched_dir, device="cpu")


class TokenRecorder(BaseStreamer):
    """Keeps the token ids generate() streams: the prompt first, then one tensor per new token."""

    def __init__(self):
        self.chunks = []

    def put(self, value):
        self.chunks.append(value.reshape(-1))

    def end(self):
        pass


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (40, 30), "red").save(path)
    return path


def test_load_model_in_eval_mode_bf16_on_a_gpu_float32_on_the_cpu(stitched_dir, loaded):
    model, processor = inference.load_model(stitched_dir, device="cpu")
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    assert not model.training
    assert processor.image_token == "<|image_pad|>"
    default, _ = loaded
    assert default.dtype == (torch.bfloat16 if torch.cuda.is_available() else torch.float32)


def test_build_messages_renders_a_two_turn_chat(loaded):
    _, processor = loaded
    history = [("What colour is it?", "Red.")]
    messages = inference.build_messages("And the sky?", history=history)
    assert inference.render_prompt(processor, messages) == (
        "<|im_start|>user\n<|image_pad|>What colour is it?<|im_end|>\n"
        "<|im_start|>assistant\nRed.<|im_end|>\n"
        "<|im_start|>user\nAnd the sky?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    thought = [("What colour is it?", "<think>\nIt looks red.\n</think>\n\nRed.")]
    thinking_prompt = inference.render_prompt(processor, inference.build_messages("And the sky?", history=thought), think=True)
    assert "It looks red" not in thinking_prompt  # Qwen3's template drops earlier turns' thinking
    assert thinking_prompt.endswith("<|im_start|>assistant\n")


def test_build_messages_without_image():
    assert inference.build_messages("Hi?", image=False) == [{"role": "user", "content": [{"type": "text", "text": "Hi?"}]}]


@pytest.mark.parametrize("reply, expected", [
    ("<think>\nRed, surely.\n</think>\n\nRed.", ("Red, surely.", "Red.")),
    ("<think>\n\n</think>\n\nRed.", ("", "Red.")),
    ("Red.", ("", "Red.")),
    ("<think>\nStill thinking when cut off", ("Still thinking when cut off", "")),
    ("", ("", "")),
])
def test_split_thinking(reply, expected):
    assert inference.split_thinking(reply) == expected


def test_answer_is_the_greedy_continuation_decoded(on_cpu, image_path):
    """Each token of the reply is the model's most likely next token after the prompt and the reply so
    far (greedy), and the returned text is those tokens decoded without the prompt."""
    model, processor = on_cpu
    image = inference.load_image(image_path)
    recorder = TokenRecorder()
    reply = inference.answer(model, processor, image, "What colour?", max_new_tokens=4, streamer=recorder)
    prompt_ids, new_ids = recorder.chunks[0], torch.cat(recorder.chunks[1:])
    assert len(new_ids) > 0
    assert reply == processor.decode(new_ids, skip_special_tokens=True)
    inputs = processor(text=[inference.render_prompt(processor, inference.build_messages("What colour?"))], images=[[image]],
                       return_tensors="pt")
    assert torch.equal(inputs["input_ids"][0], prompt_ids)
    full = torch.cat([prompt_ids, new_ids])[None]
    with torch.no_grad():
        logits = model(input_ids=full, attention_mask=torch.ones_like(full), pixel_values=inputs["pixel_values"],
                       pixel_attention_mask=inputs["pixel_attention_mask"]).logits[0]
    predicted = logits[len(prompt_ids) - 1:-1].argmax(-1)
    assert torch.equal(predicted, new_ids)


def test_cli_streams_the_answer(stitched_dir, loaded, image_path):
    result = run_cli("--model", stitched_dir, "--image", image_path, "--question", "What colour?", "--max-new-tokens", 4)
    assert result.returncode == 0, result.stderr
    model, processor = loaded
    reply = inference.answer(model, processor, inference.load_image(image_path), "What colour?", max_new_tokens=4)
    assert result.stdout == reply + "\n"


@pytest.mark.parametrize("with_image, think", [(True, True), (False, False)], ids=["think", "text-only"])
def test_main_prints_what_answer_returns(stitched_dir, loaded, image_path, capsys, with_image, think):
    argv = ["--model", str(stitched_dir), "--question", "Colour?", "--max-new-tokens", "4"]
    argv += ["--image", str(image_path)] * with_image + ["--think"] * think
    infer.main(argv)
    model, processor = loaded
    image = inference.load_image(image_path) if with_image else None
    reply = inference.answer(model, processor, image, "Colour?", think=think, max_new_tokens=4)
    assert capsys.readouterr().out == reply + "\n"


def test_chat_carries_the_history_until_eof(stitched_dir, image_path, monkeypatch, capsys):
    asked, replies, real_answer = [], [], inference.answer

    def recording_answer(model, processor, image, question, think, max_new_tokens, history, streamer, video=None):
        asked.append((question, list(history)))
        replies.append(real_answer(model, processor, image, question, think, max_new_tokens, history, streamer, video))
        return replies[-1]

    monkeypatch.setattr(inference, "answer", recording_answer)
    monkeypatch.setattr(sys, "stdin", io.StringIO("What colour?\nAnd the sky?\n"))
    infer.main(["--model", str(stitched_dir), "--image", str(image_path), "--chat", "--max-new-tokens", "4"])
    first_answer = inference.split_thinking(replies[0])[1]
    assert asked == [("What colour?", []), ("And the sky?", [("What colour?", first_answer)])]
    out = capsys.readouterr().out
    assert out.count("you> ") == 3 and out.count("model> ") == 2  # the third prompt met EOF


def test_streamer_dims_the_think_block_on_a_terminal(loaded, capsys):
    streamer = inference.ReplyStreamer(loaded[1].tokenizer)
    streamer.dim = True
    streamer.on_finalized_text("<think>\nhm\n</think>\n\nRed.", stream_end=True)
    assert capsys.readouterr().out == f"{inference.DIM}<think>\nhm\n</think>{inference.RESET}\n\nRed.\n"


@pytest.mark.parametrize("exit_word", ["", "exit"])
def test_chat_stops_at_an_empty_line_or_exit(stitched_dir, monkeypatch, exit_word):
    monkeypatch.setattr(inference, "answer", lambda *args: pytest.fail("answered after the chat ended"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{exit_word}\nnever asked\n"))
    infer.main(["--model", str(stitched_dir), "--chat"])


def refusal_cases(tmp_path, stitched_dir, image_path):
    """(argv, the path the message must name) for each input infer.py must refuse."""
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    not_a_model = tmp_path / "empty_dir"
    not_a_model.mkdir()
    missing_image = tmp_path / "missing.png"
    missing_model = tmp_path / "no_such_model"
    model, image = ["--model", stitched_dir], ["--image", image_path]
    return {
        "missing model dir": ([*image, "--model", missing_model], missing_model),
        "no config.json": ([*image, "--model", not_a_model], not_a_model),
        "missing image": ([*model, "--image", missing_image], missing_image),
        "corrupt image": ([*model, "--image", corrupt], corrupt),
    }


@pytest.mark.parametrize("case", ["missing model dir", "no config.json", "missing image", "corrupt image"])
def test_main_refuses_with_one_line_naming_the_path(tmp_path, stitched_dir, image_path, case):
    argv, named = refusal_cases(tmp_path, stitched_dir, image_path)[case]
    with pytest.raises(SystemExit) as refusal:
        infer.main([*map(str, argv), "--question", "Colour?"])
    message = refusal.value.code
    assert isinstance(message, str) and message.startswith("infer.py: ")
    assert str(named) in message and "\n" not in message


def test_cli_refusal_is_one_line_without_traceback(tmp_path, stitched_dir, image_path):
    argv, named = refusal_cases(tmp_path, stitched_dir, image_path)["corrupt image"]
    result = run_cli(*argv, "--question", "Colour?")
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert str(named) in result.stderr and "Traceback" not in result.stderr
