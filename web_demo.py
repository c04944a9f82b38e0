"""A browser chat with a Qwen3-SmVL checkpoint: images or a video in, streamed answers and Qwen3's thinking out (Gradio).

    python web_demo.py --model DIR [--quantize 4bit|8bit] [--host 127.0.0.1] [--port 7860]

The page builds its prompts and generates through infer.py (user_turn, render_prompt, reply_to), so at
temperature 0 (greedy, the default) it answers what `infer.py --chat` answers for the same images
or video, questions and settings (a video sampled as `infer.py --video` samples it). It serves on 127.0.0.1 unless --host says otherwise, loads the model once, runs
--concurrency generations at a time and queues up to --queue-size more.
"""

import argparse
import html
import mimetypes
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from qwen3_smvl import inference
from qwen3_smvl.data import media
from qwen3_smvl.data.collate import BadSample, check_media_mix

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# What the upload box takes, by MIME type: images PIL reads, videos in any container PyAV opens (mp4, webm,
# mkv, mov, ...), as the collator takes them.
UPLOAD_TYPES = ["image", "video"]
MAX_NEW_TOKENS_LIMIT = 8192
# Replies are shown as the text infer.py prints (no Markdown), their line breaks kept.
PAGE_CSS = "#chat .message-content { white-space: pre-wrap; }"


class UploadError(ValueError):
    """An upload the page refuses; its message is shown in the page."""


def read_upload(path, max_pixels):
    """The uploaded image at `path` as the model sees it (qwen3_smvl/data/media.py's rule); refused when it is not an image
    or has over `max_pixels` pixels (read from the header, before any pixel is decoded)."""
    name = Path(path).name
    try:
        width, height = media.image_size(path)
        if width * height > max_pixels:
            raise UploadError(f"{name}: {width}x{height} is {width * height / 1e6:.1f} megapixels; "
                              f"this page takes at most {max_pixels / 1e6:.1f} (--max-image-megapixels)")
        return media.decode_image(path)
    except media.UnreadableImage as error:  # its message names the server's temporary copy: name the upload
        raise UploadError(str(error).replace(str(path), name)) from None


def is_video(path):
    return (mimetypes.guess_type(path)[0] or "").startswith("video/")


def read_video_upload(path, video_processor, max_pixels):
    """(frames, metadata) of the uploaded video at `path`: the frames `infer.py --video` samples (qwen3_smvl/data/media.py
    with the processor's saved video_fps and video_max_frames); refused when PyAV cannot use the file or
    its frames have over `max_pixels` pixels (read from the header, before any frame is decoded)."""
    name = Path(path).name
    try:
        metadata = media.video_metadata(path, video_processor)
        if metadata.width * metadata.height > max_pixels:
            raise UploadError(f"{name}: its frames are {metadata.width}x{metadata.height}, "
                              f"{metadata.width * metadata.height / 1e6:.1f} megapixels; this page takes at most "
                              f"{max_pixels / 1e6:.1f} (--max-image-megapixels)")
        return media.decode_video(path, video_processor)
    except media.UnreadableVideo as error:  # named by the server's temporary copy: name the upload
        raise UploadError(str(error).replace(str(path), name)) from None


@dataclass
class Turn:
    """One question with the images or the video uploaded with it, and the model's reply to it."""
    question: str
    paths: list  # the uploads, shown in the chat
    images: list
    video: tuple = None  # (frames, metadata) of media.decode_video
    thinking: str = ""
    answer: str = ""
    finished: bool = False


def user_message(turn):
    if turn.video is not None:
        return inference.user_turn(turn.question, 1, kind="video")
    return inference.user_turn(turn.question, len(turn.images))


def conversation_messages(turns):
    """infer.py's chat messages for `turns`, the last one still to be answered. Earlier answers go in
    without their thinking, as infer.py's chat keeps them (Qwen3's template drops it anyway)."""
    messages = []
    for turn in turns[:-1]:
        messages += [user_message(turn), {"role": "assistant", "content": turn.answer}]
    return messages + [user_message(turns[-1])]


def chat_view(turns):
    """The Chatbot's messages: each question with its images or video, the thinking as a collapsible block,
    the answer."""
    view = []
    for turn in turns:
        files = [{"type": "file", "file": {"path": path, "mime_type": mimetypes.guess_type(path)[0]}}
                 for path in turn.paths]
        view.append({"role": "user", "content": files + [{"type": "text", "text": turn.question}]})
        if turn.thinking:
            status = "done" if turn.finished or turn.answer else "pending"
            view.append({"role": "assistant", "content": turn.thinking,
                         "metadata": {"title": "Thinking", "status": status}})
        if turn.answer or not turn.thinking:
            view.append({"role": "assistant", "content": turn.answer})
    return view


class StopButton(StoppingCriteria):
    """Ends generate() at the next token once `event` is set; counts the tokens generated meanwhile."""

    def __init__(self, event):
        self.event = event
        self.tokens = 0

    def __call__(self, input_ids, scores, **kwargs):
        self.tokens += 1
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def stream_reply(model, processor, turns, think, max_new_tokens, sampling, stop_button):
    """Yields the reply to the last of `turns` as it grows; the last value is infer.reply_to's own decoded
    reply. An error inside generate() is raised here, with its traceback."""
    streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    images = [image for turn in turns for image in turn.images]
    videos = [turn.video for turn in turns if turn.video is not None]
    outcome = {}

    def generate():
        try:
            outcome["reply"] = inference.reply_to(model, processor, conversation_messages(turns), images, think,
                                              max_new_tokens, streamer, videos=videos,
                                              stopping_criteria=StoppingCriteriaList([stop_button]), **sampling)
        except Exception as error:  # handed to the page's thread, which raises it
            outcome["error"] = error
            streamer.end()

    thread = threading.Thread(target=generate, daemon=True)
    thread.start()
    streamed = False
    try:
        text = ""
        for chunk in streamer:
            text += chunk
            yield text
        thread.join()
        streamed = True
    finally:
        if not streamed:  # the page went away mid-stream: end generate() instead of running on unseen
            stop_button.event.set()
    if "error" in outcome:
        raise outcome["error"]
    yield outcome["reply"]


def sampling_options(temperature, top_p):
    """model.generate's sampling keywords: none at temperature 0 (greedy, as infer.py)."""
    return {} if temperature == 0 else {"do_sample": True, "temperature": temperature, "top_p": top_p}


class WebDemo:
    """The page's handlers around one loaded model."""

    def __init__(self, model, processor, max_pixels, max_images):
        self.model, self.processor = model, processor
        self.max_pixels, self.max_images = max_pixels, max_images
        self.stop_events = {}  # session -> the Event its running generation watches

    def respond(self, message, turns, think, max_new_tokens, temperature, top_p, request: gr.Request):
        """Streams (chat, turns, status) while the model answers the question in `message`."""
        question, paths = message.get("text", "").strip(), message.get("files", [])
        try:
            if not question:
                raise UploadError("type a question about the images or the video")
            image_paths, video_paths = self.check_uploads(paths, turns)
            images = [read_upload(path, self.max_pixels) for path in image_paths]
            video = read_video_upload(video_paths[0], self.processor.video_processor,
                                      self.max_pixels) if video_paths else None
        except UploadError as error:  # a toast; the event ends normally
            gr.Warning(html.escape(str(error)), title="Not asked")
            yield gr.skip(), gr.skip(), gr.skip()
            return
        turn, event = Turn(question, paths, images, video), threading.Event()
        self.stop_events[request.session_hash] = event
        stop_button, started = StopButton(event), time.perf_counter()
        asked = [*turns, turn]
        yield chat_view(asked), gr.skip(), "generating…"
        try:
            for reply in stream_reply(self.model, self.processor, asked, think, int(max_new_tokens),
                                      sampling_options(temperature, top_p), stop_button):
                turn.thinking, turn.answer = inference.split_thinking(reply)
                yield chat_view(asked), gr.skip(), gr.skip()
        finally:
            if self.stop_events.get(request.session_hash) is event:
                del self.stop_events[request.session_hash]
        turn.finished = True
        stopped = " · stopped" if event.is_set() else ""
        status = f"reply {len(asked)}: {stop_button.tokens} tokens in {time.perf_counter() - started:.1f} s{stopped}"
        yield chat_view(asked), asked, status

    def check_uploads(self, paths, turns):
        """(image paths, video paths) of a turn's uploads, refused before any is decoded when the
        conversation would hold more than --max-images images, or what training refuses in a row
        (collate.check_media_mix): more than one video, or images beside a video."""
        video_paths = [path for path in paths if is_video(path)]
        image_paths = [path for path in paths if not is_video(path)]
        images = sum(len(turn.images) for turn in turns) + len(image_paths)
        videos = sum(turn.video is not None for turn in turns) + len(video_paths)
        names = ", ".join(Path(path).name for path in paths)
        try:
            check_media_mix(images, videos, holder="conversation")
        except BadSample as error:
            raise UploadError(f"{names}: {error}; press Clear to start a new conversation") from None
        if images > self.max_images:
            raise UploadError(f"this conversation would hold more than {self.max_images} images "
                              "(--max-images); press Clear to start a new one")
        return image_paths, video_paths

    def stop(self, request: gr.Request):
        event = self.stop_events.get(request.session_hash)
        if event is not None:
            event.set()

    def clear(self, request: gr.Request):
        self.stop(request)
        return [], [], None, ""


def build_page(demo, title):
    with gr.Blocks(title="Qwen3-SmVL", analytics_enabled=False) as page:
        gr.Markdown(f"## Qwen3-SmVL · `{title}`")
        with gr.Row():
            with gr.Column(scale=4):
                chat = gr.Chatbot(elem_id="chat", height=460, show_label=False, render_markdown=False,
                                  buttons=["copy"], feedback_options=None)
                box = gr.MultimodalTextbox(elem_id="question", file_types=UPLOAD_TYPES, file_count="multiple",
                                           placeholder="Drop images (several at once) or a video here and ask",
                                           show_label=False)
                with gr.Row():
                    stop = gr.Button("Stop", elem_id="stop", variant="stop")
                    clear = gr.Button("Clear", elem_id="clear")
                status = gr.Markdown(elem_id="status")
            with gr.Column(scale=1):
                think = gr.Checkbox(label="Thinking", value=False, elem_id="think",
                                    info="Qwen3 reasons first; shown apart, collapsible")
                max_new_tokens = gr.Slider(1, MAX_NEW_TOKENS_LIMIT, value=512, step=1, label="Max new tokens",
                                           elem_id="max-new-tokens")
                temperature = gr.Slider(0, 2, value=0, step=0.05, label="Temperature", elem_id="temperature",
                                        info="0: greedy, the answer infer.py gives")
                top_p = gr.Slider(0.05, 1, value=1, step=0.05, label="Top-p", elem_id="top-p")
        turns = gr.State([])
        asking = gr.State()  # the submitted message, while the input box is emptied for the next one
        box.submit(lambda message: (message, None), box, [asking, box], queue=False).then(
            demo.respond, [asking, turns, think, max_new_tokens, temperature, top_p], [chat, turns, status])
        # Not queued: a stop or clear must not wait behind the generation it ends.
        stop.click(demo.stop, None, None, queue=False)
        clear.click(demo.clear, None, [chat, turns, box, status], queue=False)
        chat.clear(demo.clear, None, [chat, turns, box, status], queue=False)  # the chat's own bin icon
    return page


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="stitched (or trained) checkpoint directory")
    parser.add_argument("--quantize", choices=inference.QUANTIZE_CHOICES, help="text model in 4-bit nf4 or 8-bit")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind; another than 127.0.0.1 exposes "
                        "the page to whoever reaches this machine (there is no login)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--concurrency", type=int, default=1, help="generations run at once")
    parser.add_argument("--queue-size", type=int, default=16, help="requests waiting beyond those; more are refused")
    parser.add_argument("--max-upload-mb", type=float, default=32, help="largest file the page accepts")
    parser.add_argument("--max-image-megapixels", type=float, default=64,
                        help="largest image or video frame (width x height) decoded; SmolVLM2 resizes to 2048 px anyway")
    parser.add_argument("--max-images", type=int, default=8,
                        help="images in one conversation (each is 0.8K-1.3K tokens of Qwen3's context)")
    args = parser.parse_args(argv)
    for name in ("concurrency", "queue_size", "max_upload_mb", "max_image_megapixels", "max_images"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        model, processor = inference.load_model(args.model, quantize=args.quantize)
    except FileNotFoundError as error:
        raise SystemExit(f"web_demo.py: {error}")
    demo = WebDemo(model, processor, int(args.max_image_megapixels * 1e6), args.max_images)
    page = build_page(demo, Path(args.model).name)
    page.queue(default_concurrency_limit=args.concurrency, max_size=args.queue_size)
    if args.host not in LOCAL_HOSTS:
        print(f"web_demo.py: serving on {args.host}:{args.port}, reachable from other machines; "
              "anyone who reaches it can use the model (no login)", file=sys.stderr)
    page.launch(server_name=args.host, server_port=args.port, max_file_size=int(args.max_upload_mb * 1024 ** 2),
                show_error=True, ssr_mode=False, css=PAGE_CSS)


if __name__ == "__main__":
    main()
