"""Publish a trained model to the Hugging Face Hub or ModelScope: weights, processor, model card and
any GGUF files in the directory, private unless --public.

    python publish.py --model model/freeze_llm_vlm_cocoqa --to hf:USER/NAME [--public] [--overwrite]
    python publish.py --model model/freeze_llm_vlm_cocoqa --to modelscope:USER/NAME

Refused before anything is uploaded: no token, the site unreachable, a name already taken (without
--overwrite), a directory that is not a complete standalone checkpoint, a checkpoint-N folder.
The checks and the upload are qwen3_smvl/publishing.py's; the card is qwen3_smvl/model_card.py's.
"""

import argparse

from qwen3_smvl import publishing


def main(argv=None):
    parser = argparse.ArgumentParser(prog="publish.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, metavar="DIR", help="the final model directory of a run (not checkpoint-N)")
    parser.add_argument("--to", required=True, metavar="SITE:USER/NAME", help="hf:USER/NAME or modelscope:USER/NAME")
    parser.add_argument("--public", action="store_true", help="make a new repo public (default: private)")
    parser.add_argument("--overwrite", action="store_true", help="upload into a repo that already exists")
    args = parser.parse_args(argv)
    try:
        page = publishing.publish(args.model, args.to, public=args.public, overwrite=args.overwrite)
    except publishing.PublishError as error:
        raise SystemExit(f"publish.py: {error}; nothing was uploaded")
    print(f"published {args.model} -> {page}")


if __name__ == "__main__":
    main()
