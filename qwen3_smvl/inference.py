"""Asking a Qwen3-SmVL checkpoint about an image, a video or text: loading it (quantized or not), the
prompt as training renders it, the answer (streamed, thinking split off) and the post-training demo.
The command is infer.py, which streams the answer to the terminal (its docstring has the usage).
"""

import sys
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, TextStreamer

from qwen3_smvl.data import media

DIM, RESET = "\033[2m", "\033[0m"


QUANTIZE_CHOICES = ("4bit", "8bit")
# Kept in bf16/fp32 when quantizing: the vision tower and connector are small (a sixth of the weights)
# and feed every image feature; the LM head is tied to the embeddings, which bitsandbytes never quantizes.
UNQUANTIZED_MODULES = ["model.vision_model", "model.connector", "lm_head"]


def quantization_config(quantize, dtype):
    """bitsandbytes settings for --quantize: nf4 (4bit) or LLM.int8 (8bit) linear layers in the text model."""
    from transformers import BitsAndBytesConfig

    if quantize == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
                                  llm_int8_skip_modules=UNQUANTIZED_MODULES)
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=UNQUANTIZED_MODULES)


def load_model(model_dir, device=None, quantize=None):
    """(model, processor) from a saved checkpoint, in eval mode: bf16 on a GPU, float32 on the CPU;
    quantize="4bit"/"8bit" quantizes the text model (unquantized weights then bf16 on either)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model directory not found: {model_dir}")
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a model directory (no config.json)")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" or quantize else torch.float32
    quantized = {"quantization_config": quantization_config(quantize, dtype)} if quantize else {}
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype, device_map=device, use_kernels=False,
                                                        **quantized)
    return model.eval(), AutoProcessor.from_pretrained(model_dir)


def load_image(path):
    """The image at `path` as the model sees it (qwen3_smvl/data/media.py's rule); a missing or unreadable file raises
    an error naming it."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        return media.decode_image(path)
    except media.UnreadableImage as error:
        raise ValueError(str(error)) from None


def load_video(path, processor):
    """(frames, metadata) of the frames the processor's video settings sample from the video at `path`;
    a missing or unreadable file raises an error naming it."""
    try:
        return media.decode_video(path, processor.video_processor)
    except media.UnreadableVideo as error:
        raise ValueError(f"cannot use video {path}: {error}") from None


def user_turn(text, images, kind="image"):
    """A user message: `images` parts of `kind` (a count; True is one), then the text."""
    return {"role": "user", "content": [{"type": kind}] * int(images) + [{"type": "text", "text": text}]}


def build_messages(question, image=True, history=(), kind="image"):
    """Chat messages for `question` after the earlier (question, answer) pairs in `history`;
    the image (True, or a count of images, in order; or the video, kind="video"), if any, belongs to the
    first user turn."""
    messages = []
    for earlier_question, earlier_answer in history:
        messages.append(user_turn(earlier_question, 0 if messages else image, kind))
        messages.append({"role": "assistant", "content": earlier_answer})
    messages.append(user_turn(question, 0 if messages else image, kind))
    return messages


def render_prompt(processor, messages, think=False, tools=None):
    """The prompt text the model continues, ending with the assistant's header (and, with think off,
    an empty think block)."""
    # The processor's template, rendered by its tokenizer: given any template variable (enable_thinking),
    # SmolVLMProcessor.apply_chat_template adds video kwargs that transformers warns about on every call.
    return processor.tokenizer.apply_chat_template(
        messages, tools=tools, chat_template=processor.chat_template, tokenize=False,
        add_generation_prompt=True, enable_thinking=think,
    )


def answer(model, processor, image, question, think=False, max_new_tokens=512, history=(), streamer=None, video=None):
    """The model's greedy reply to `question` about `image` or `video` (load_video's (frames, metadata);
    neither: text only), without the prompt. With think=True the reply starts with Qwen3's <think>
    block (see split_thinking)."""
    kind = "video" if video is not None else "image"
    messages = build_messages(question, image is not None or video is not None, history, kind)
    return reply_to(model, processor, messages, [] if image is None else [image], think, max_new_tokens, streamer,
                    videos=[] if video is None else [video])


def reply_to(model, processor, messages, images, think=False, max_new_tokens=512, streamer=None, tools=None,
             videos=(), **generate_options):
    """The model's reply to a conversation whose image parts stand for `images` (PIL, in order) and whose
    video part stands for `videos` ([(frames, metadata)] of load_video, sampled already): greedy unless
    `generate_options` (model.generate's keywords) ask for sampling; they may also add stopping_criteria."""
    inputs = model_inputs(processor, messages, images, think, tools, videos).to(model.device)
    generate_options = {"do_sample": False, **generate_options}
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, streamer=streamer, **generate_options)
    new_tokens = output[0, inputs["input_ids"].shape[1]:]
    return processor.decode(new_tokens, skip_special_tokens=True)


def model_inputs(processor, messages, images, think=False, tools=None, videos=()):
    """The prompt's tensors for generate(): images handed to the processor as training hands them
    (media.fit_to_processor), videos sampled already."""
    prompt = render_prompt(processor, messages, think, tools)
    images = [media.fit_to_processor(image, processor.image_processor) for image in images]
    video_inputs = dict(videos=[frames for frames, _ in videos], video_metadata=[meta for _, meta in videos],
                        videos_kwargs={"do_sample_frames": False}) if videos else {}
    return processor(text=[prompt], images=[images] if images else None, return_tensors="pt", **video_inputs)


def demo(model, processor, image, question, max_new_tokens=512):
    """The post-training demo: `question` about `image` with thinking on; prints the prompt and the
    answer and returns both."""
    prompt = render_prompt(processor, build_messages(question), think=True)
    reply = answer(model, processor, image, question, think=True, max_new_tokens=max_new_tokens)
    print(f"demo prompt:\n{prompt}\ndemo answer:\n{reply}")
    return prompt, reply


def split_thinking(reply):
    """(thinking, answer) of a reply. <think>/</think> are plain text in Qwen3's tokenizer, so
    they survive decoding; a reply cut off inside its think block is all thinking."""
    reply = reply.strip()
    if "</think>" in reply:
        thinking, _, final = reply.partition("</think>")
        return thinking.removeprefix("<think>").strip(), final.strip()
    if reply.startswith("<think>"):
        return reply.removeprefix("<think>").strip(), ""
    return "", reply


class ReplyStreamer(TextStreamer):
    """Prints the reply as it is generated, the think block dimmed when stdout is a terminal.
    The tags are single tokens without spaces, so TextStreamer never splits one across chunks."""

    def __init__(self, tokenizer):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.dim = sys.stdout.isatty()

    def on_finalized_text(self, text, stream_end=False):
        if self.dim:
            text = text.replace("<think>", DIM + "<think>").replace("</think>", "</think>" + RESET)
        super().on_finalized_text(text, stream_end)
