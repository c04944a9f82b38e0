"""Ask a stitched Qwen3-SmVL checkpoint about an image or a video, streaming the answer to the terminal.

    python infer.py --model DIR --image PATH --question "What is in the picture?" [--think] [--max-new-tokens N]
    python infer.py --model DIR --video clip.mp4 --question "What happens?"   # frames sampled as in training
    python infer.py --model DIR --image PATH --chat     # a conversation; an empty line, `exit` or EOF ends it
    python infer.py ... --quantize 4bit|8bit            # the text model's linear layers in 4/8 bits (bitsandbytes)

Without --image or --video the question goes to the text model alone. A video is decoded with PyAV and
sampled by the processor's saved video settings (video_fps, video_max_frames of the training run). With --think Qwen3 reasons in a
<think> block first (shown dimmed on a terminal); without it the prompt closes that block empty.
"""

import argparse

from qwen3_smvl import graft, inference


def chat(model, processor, image, think, max_new_tokens, video=None):
    """Questions from stdin until an empty line, `exit` or EOF; each turn sees the earlier ones."""
    history = []
    streamer = inference.ReplyStreamer(processor.tokenizer)
    while True:
        try:
            question = input("you> ").strip()
        except EOFError:
            print()
            return
        if question in ("", "exit"):
            return
        print("model> ", end="", flush=True)
        reply = inference.answer(model, processor, image, question, think, max_new_tokens, history, streamer, video)
        # Qwen3's template drops earlier turns' thinking anyway; keeping only answers says so.
        history.append((question, inference.split_thinking(reply)[1]))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="stitched (or trained) checkpoint directory")
    seeing = parser.add_mutually_exclusive_group()
    seeing.add_argument("--image", help="image to ask about; omit for a text-only question")
    seeing.add_argument("--video", help="video to ask about (decoded with PyAV, sampled as the model trained)")
    asking = parser.add_mutually_exclusive_group(required=True)
    asking.add_argument("--question", help="one question; the answer streams to stdout")
    asking.add_argument("--chat", action="store_true", help="an interactive conversation on stdin")
    parser.add_argument("--think", action="store_true", help="let Qwen3 think before answering")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--quantize", choices=inference.QUANTIZE_CHOICES, help="text model in 4-bit nf4 or 8-bit (bitsandbytes)")
    args = parser.parse_args(argv)
    if args.max_new_tokens < 1:
        parser.error("--max-new-tokens must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        image = inference.load_image(args.image) if args.image else None
        model, processor = inference.load_model(args.model, quantize=args.quantize)
        if args.video:
            graft.check_renders_videos(processor, args.model)
        video = inference.load_video(args.video, processor) if args.video else None
    except (FileNotFoundError, ValueError) as error:  # GraftError is a ValueError
        raise SystemExit(f"infer.py: {error}")
    if args.chat:
        chat(model, processor, image, args.think, args.max_new_tokens, video)
    else:
        inference.answer(model, processor, image, args.question, args.think, args.max_new_tokens,
               streamer=inference.ReplyStreamer(processor.tokenizer), video=video)


if __name__ == "__main__":
    main()
