"""Regenerates docs/images/web_demo.png: the web demo's page in headless Chromium, on a tiny random model.

    python scripts/web_demo_screenshot.py [--out docs/images/web_demo.png]

The model is tests' tiny stitched one made to talk and think (tiny.build_tiny_chat_model), on Qwen3's real
tokenizer when ../shared/assets has it; its words are random, the page is the real one. CJK glyphs need
a font (Debian's fonts-wqy-microhei, which .ci/run installs).
"""

import argparse
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # web_page

from qwen3_smvl import inference, tiny
from qwen3_smvl.graft import stitch

import web_page  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUESTION = "What colour is it?"


def tiny_chat_model(work, image):
    real_tokenizer = REPO.parent / "shared" / "assets" / "qwen3-0.6b"
    tokenizer = real_tokenizer if (real_tokenizer / "vocab.json").is_file() else tiny.build_standin_tokenizer(
        work / "tokenizer", base_vocab_size=tiny.QWEN3_BASE_VOCAB).name_or_path
    model, processor = stitch(tiny.build_tiny_smolvlm(work / "smolvlm"), tiny.build_tiny_qwen(work / "qwen", tokenizer))
    model.save_pretrained(work / "stitched")
    processor.save_pretrained(work / "stitched")
    return tiny.build_tiny_chat_model(work / "stitched", work / "chat", inference.load_image(image), QUESTION)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "web_demo.png")
    args = parser.parse_args(argv)
    if web_page.browser_missing():
        raise SystemExit(f"web_demo_screenshot.py: {web_page.browser_missing()}")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        image = work / "red.png"
        Image.new("RGB", (160, 120), (200, 30, 30)).save(image)
        with web_page.running_app(tiny_chat_model(work, image), work / "app.log") as url:
            driver = web_page.open_browser()
            try:
                page = web_page.Page(driver, url)
                page.set_number("max-new-tokens", 40)
                page.set_thinking(True)
                page.ask(QUESTION, [image])
                page.wait_for_reply(1)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(args.out)
            finally:
                driver.quit()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
