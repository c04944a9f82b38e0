"""web_demo.py: its handlers on the tiny model, and its page in headless Chromium against the app on 127.0.0.1.

One app (a subprocess killed after APP_LIFETIME_S whatever happens) and one browser serve the module; each
browser test opens the page afresh, so it starts with an empty history. The model is a tiny stitched one
that talks and thinks (tiny.build_tiny_chat_model); what the page shows is compared with infer.py's answer."""

import html
import random
import time
from types import SimpleNamespace

import gradio as gr
import pytest
from PIL import Image

from qwen3_smvl import inference, tiny

import web_demo
import web_page

APP_LIFETIME_S = 300
QUESTION = "What colour is it?"
VIDEO_QUESTION = "What colour is the last second?"
MAX_NEW_TOKENS = 24
# The app refuses files over 0.1 MB and images over 10,000 pixels, so the tests' refusals stay small.
APP_OPTIONS = ["--max-upload-mb", "0.1", "--max-image-megapixels", "0.01"]
needs_browser = pytest.mark.skipif(bool(web_page.browser_missing()), reason=str(web_page.browser_missing()))


@pytest.fixture(scope="module")
def red_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("uploads") / "red.png"
    Image.new("RGB", (40, 30), "red").save(path)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A 3 s WebM clip at 8 fps (red, green, blue seconds; 3 frames sampled at 1 fps) in VP8, which Chromium
    plays; an audio-only MPEG-4 file and one that is not a video."""
    root = tmp_path_factory.mktemp("clips")
    tiny.write_colour_video(root / "rgb.webm", [(220, 20, 20), (20, 160, 20), (20, 40, 220)], fps=8, codec="libvpx")
    tiny.write_audio_only(root / "audio.mp4")
    (root / "garbage.webm").write_bytes(b"not a video at all" * 10)
    return root


@pytest.fixture(scope="module")
def chat_model_dir(stitched_dir, tmp_path_factory, red_png):
    return tiny.build_tiny_chat_model(stitched_dir, tmp_path_factory.mktemp("chat_model"), inference.load_image(red_png),
                                      QUESTION)


@pytest.fixture(scope="module")
def loaded(chat_model_dir):
    return inference.load_model(chat_model_dir)


def infer_reply(loaded, image_path, question, **settings):
    """infer.py's reply, as `infer.py --question` prints it."""
    model, processor = loaded
    return inference.answer(model, processor, inference.load_image(image_path), question, max_new_tokens=MAX_NEW_TOKENS,
                        **settings)


def infer_video_answer(loaded, video_path, question, **settings):
    """The answer part of `infer.py --video video_path --question question`'s reply."""
    model, processor = loaded
    reply = inference.answer(model, processor, None, question, max_new_tokens=MAX_NEW_TOKENS,
                         video=inference.load_video(video_path, processor), **settings)
    return inference.split_thinking(reply)[1]


def infer_answer(loaded, image_path, question, **settings):
    """The answer part of infer.py's reply, as its chat keeps it (infer.split_thinking: no think block,
    surrounding whitespace trimmed): what the page shows in the answer bubble."""
    return inference.split_thinking(infer_reply(loaded, image_path, question, **settings))[1]


@pytest.fixture(scope="module")
def app_url(chat_model_dir, tmp_path_factory):
    with web_page.running_app(chat_model_dir, tmp_path_factory.mktemp("app") / "app.log", *APP_OPTIONS,
                              lifetime_s=APP_LIFETIME_S) as url:
        yield url


@pytest.fixture(scope="module")
def driver():
    browser = web_page.open_browser()
    yield browser
    browser.quit()


@pytest.fixture
def page(app_url, driver):
    page = web_page.Page(driver, app_url)
    page.set_number("max-new-tokens", MAX_NEW_TOKENS)
    return page


def assert_non_blank_png(path):
    with Image.open(path) as shot:
        assert shot.format == "PNG" and shot.width == web_page.WINDOW[0] and shot.height > 600  # the viewport
        assert len(shot.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50  # text, image, widgets


# --- the handlers, without a browser ---------------------------------------------------------------------


def test_a_single_image_conversation_is_infer_pys(red_png):
    image = inference.load_image(red_png)
    first = web_demo.Turn("What colour?", [str(red_png)], [image], answer="Red.")
    follow_up = web_demo.Turn("And the sky?", [], [])
    assert web_demo.conversation_messages([first, follow_up]) == inference.build_messages(
        "And the sky?", history=[("What colour?", "Red.")])


def test_a_video_conversation_is_infer_pys(loaded, clips):
    video = inference.load_video(clips / "rgb.webm", loaded[1])
    first = web_demo.Turn(VIDEO_QUESTION, [str(clips / "rgb.webm")], [], video, answer="Blue.")
    follow_up = web_demo.Turn("And the first?", [], [])
    assert web_demo.conversation_messages([first, follow_up]) == inference.build_messages(
        "And the first?", history=[(VIDEO_QUESTION, "Blue.")], kind="video")


def test_read_video_upload_samples_as_infer_py_and_names_bad_files(loaded, clips):
    video_processor = loaded[1].video_processor
    frames, metadata = web_demo.read_video_upload(clips / "rgb.webm", video_processor, max_pixels=10_000)
    theirs, their_metadata = inference.load_video(clips / "rgb.webm", loaded[1])
    assert (frames == theirs).all() and list(metadata.frames_indices) == list(their_metadata.frames_indices) == [0, 11, 23]
    with pytest.raises(web_demo.UploadError, match=r"^rgb\.webm: its frames are 16x16"):
        web_demo.read_video_upload(clips / "rgb.webm", video_processor, max_pixels=100)
    with pytest.raises(web_demo.UploadError, match=r"^audio\.mp4 has no video stream \(audio streams only\)$"):
        web_demo.read_video_upload(clips / "audio.mp4", video_processor, max_pixels=10_000)
    with pytest.raises(web_demo.UploadError, match=r"^garbage\.webm cannot be read") as refused:
        web_demo.read_video_upload(clips / "garbage.webm", video_processor, max_pixels=10_000)
    assert str(clips) not in str(refused.value)  # the upload's name, not the server's temporary copy


def refusal(demo, paths, turns=()):
    """The message the page shows for asking with `paths` after `turns`; nothing else changes."""
    with pytest.warns(UserWarning) as warned:
        assert list(demo.respond({"text": QUESTION, "files": list(map(str, paths))}, list(turns), False,
                                 MAX_NEW_TOKENS, 0, 1, SimpleNamespace(session_hash="test"))) == [(gr.skip(),) * 3]
    return html.unescape(str(warned[0].message))  # the toast's HTML, as the page shows it


def test_what_training_refuses_beside_a_video_is_refused_naming_the_upload(loaded, clips, red_png):
    demo = web_demo.WebDemo(*loaded, max_pixels=10_000, max_images=8)
    clip = clips / "rgb.webm"
    assert refusal(demo, [red_png, clip]).startswith(
        "red.png, rgb.webm: 1 image(s) and a video in one conversation; SmolVLM's processor encodes either")
    assert refusal(demo, [clip, clip]).startswith("rgb.webm, rgb.webm: 2 videos in one conversation")
    with_video = web_demo.Turn(VIDEO_QUESTION, [str(clip)], [], inference.load_video(clip, loaded[1]), answer="Blue.")
    assert refusal(demo, [red_png], [with_video]).startswith("red.png: 1 image(s) and a video in one conversation")
    assert refusal(demo, [clip], [with_video]).startswith("rgb.webm: 2 videos in one conversation")
    with_image = web_demo.Turn(QUESTION, [str(red_png)], [inference.load_image(red_png)], answer="Red.")
    assert refusal(demo, [clip], [with_image]).endswith("press Clear to start a new conversation")


def test_read_upload_refuses_too_many_pixels_and_non_images_naming_the_file(tmp_path):
    wide = tmp_path / "wide.png"
    Image.new("RGB", (200, 100), "blue").save(wide)
    with pytest.raises(web_demo.UploadError, match=r"wide\.png: 200x100 is 0\.0 megapixels"):
        web_demo.read_upload(wide, max_pixels=10_000)
    assert web_demo.read_upload(wide, max_pixels=20_000).size == (200, 100)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(web_demo.UploadError, match=r"^broken\.jpg cannot be read"):
        web_demo.read_upload(broken, max_pixels=10_000)


def ask_directly(demo, question, paths=(), turns=()):
    """Runs the page's handler as Gradio does; returns its last output."""
    outputs = list(demo.respond({"text": question, "files": list(map(str, paths))}, list(turns), False,
                                MAX_NEW_TOKENS, 0, 1, SimpleNamespace(session_hash="test")))
    return outputs[-1]


def test_a_failing_generation_raises_its_error_and_the_next_question_is_answered(loaded, red_png, monkeypatch):
    model, processor = loaded
    demo = web_demo.WebDemo(model, processor, max_pixels=10_000, max_images=8)
    real_generate = model.generate
    monkeypatch.setattr(model, "generate", lambda **kwargs: (_ for _ in ()).throw(RuntimeError("CUDA out of memory")))
    with pytest.raises(RuntimeError, match="CUDA out of memory"):  # Gradio shows it and keeps serving
        ask_directly(demo, QUESTION, [red_png])
    monkeypatch.setattr(model, "generate", real_generate)
    chat, turns, status = ask_directly(demo, QUESTION, [red_png])
    assert turns[-1].answer == infer_answer(loaded, red_png, QUESTION) and status.startswith("reply 1:")
    assert demo.stop_events == {}


def test_too_many_images_in_a_conversation_are_refused(loaded, red_png):
    demo = web_demo.WebDemo(*loaded, max_pixels=10_000, max_images=2)
    with pytest.warns(UserWarning, match="more than 2 images"):
        assert list(demo.respond({"text": QUESTION, "files": [str(red_png)] * 3}, [], False, MAX_NEW_TOKENS, 0, 1,
                                 SimpleNamespace(session_hash="test"))) == [(gr.skip(),) * 3]  # nothing changes


def test_the_host_is_127_0_0_1_unless_told_and_exposure_is_announced(chat_model_dir, monkeypatch, capsys):
    launched = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **options: launched.append(options))
    web_demo.main(["--model", str(chat_model_dir)])
    assert launched[-1]["server_name"] == "127.0.0.1" and "reachable" not in capsys.readouterr().err
    web_demo.main(["--model", str(chat_model_dir), "--host", "0.0.0.0", "--port", "8080"])
    assert launched[-1]["server_name"] == "0.0.0.0"
    assert "serving on 0.0.0.0:8080, reachable from other machines" in capsys.readouterr().err


# --- the page in a real browser --------------------------------------------------------------------------


@needs_browser
def test_the_streamed_answer_equals_infer_pys(page, loaded, red_png, tmp_path):
    page.ask(QUESTION, [red_png])
    page.wait_for_reply(1)
    expected = infer_answer(loaded, red_png, QUESTION)
    assert page.answers() == [expected]
    pieces = [text for text in page.streamed() if text]
    assert len(set(pieces)) > 1 and all(expected.startswith(text) for text in pieces), "not streamed in pieces"
    assert_non_blank_png(page.screenshot(tmp_path / "page.png"))


@needs_browser
def test_a_follow_up_question_in_chinese_carries_the_history(page, loaded, red_png):
    follow_up = "为什么是这个颜色？"  # shown in a CJK font (Debian's fonts-wqy-microhei, which .ci/run installs)
    page.ask(QUESTION, [red_png])
    page.wait_for_reply(1)
    page.ask(follow_up)
    page.wait_for_reply(2)
    first = infer_answer(loaded, red_png, QUESTION)
    assert page.questions() == [QUESTION, follow_up]
    assert page.answers() == [first, infer_answer(loaded, red_png, follow_up, history=[(QUESTION, first)])]


@needs_browser
def test_an_uploaded_video_is_shown_and_answered_as_infer_py_answers_it(page, loaded, clips):
    page.ask(VIDEO_QUESTION, [clips / "rgb.webm"])
    page.wait_for_reply(1)
    assert page.answers() == [infer_video_answer(loaded, clips / "rgb.webm", VIDEO_QUESTION)]
    [video] = page.driver.find_elements(web_page.By.CSS_SELECTOR, "#chat video")
    assert video.get_attribute("src").endswith("rgb.webm")
    page.wait_for(lambda _: page.driver.execute_script("return arguments[0].videoWidth", video) == 16)  # it plays


@needs_browser
def test_an_audio_only_or_corrupt_video_shows_an_error_and_the_next_question_is_answered(page, loaded, clips):
    page.ask(VIDEO_QUESTION, [clips / "audio.mp4"])
    page.wait_for(lambda _: any("audio.mp4 has no video stream" in error for error in page.errors()))
    page.ask(VIDEO_QUESTION, [clips / "garbage.webm"])
    page.wait_for(lambda _: any("garbage.webm cannot be read" in error for error in page.errors()))
    assert page.answers() == []
    page.ask(VIDEO_QUESTION, [clips / "rgb.webm"])
    page.wait_for_reply(1)
    assert page.answers() == [infer_video_answer(loaded, clips / "rgb.webm", VIDEO_QUESTION)]


@needs_browser
def test_thinking_on_shows_the_think_block_apart_and_collapsible(page, loaded, red_png):
    page.set_thinking(True)
    page.ask(QUESTION, [red_png])
    page.wait_for_reply(1)
    thinking, answer = inference.split_thinking(infer_reply(loaded, red_png, QUESTION, think=True))
    assert thinking and answer  # the tiny model thinks about this question, then answers
    assert page.answers() == [answer]
    [section] = page.thinking_sections()
    assert thinking not in section.text  # a finished think block starts collapsed
    section.find_element(web_page.By.CSS_SELECTOR, ".title").click()
    page.wait_for(lambda _: thinking in section.text)


@needs_browser
def test_a_corrupt_upload_shows_an_error_and_the_next_question_is_answered(page, loaded, red_png, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    page.ask(QUESTION, [corrupt])
    page.wait_for(lambda _: any("corrupt.png cannot be read" in error for error in page.errors()))
    assert page.answers() == []
    page.ask(QUESTION, [red_png])
    page.wait_for_reply(1)
    assert page.answers() == [infer_answer(loaded, red_png, QUESTION)]


@needs_browser
def test_oversized_uploads_are_refused_with_a_message(page, tmp_path):
    big_file = tmp_path / "noise.png"  # 270 KB, over the app's 0.1 MB
    Image.frombytes("RGB", (300, 300), random.Random(0).randbytes(300 * 300 * 3)).save(big_file)
    wide = tmp_path / "wide.png"  # 20,000 pixels, over the app's 10,000
    Image.new("RGB", (200, 100), "blue").save(wide)
    page.upload(big_file)
    page.wait_for(lambda _: any("maximum allowed size" in error and "noise.png" in error for error in page.errors()))
    page.ask(QUESTION, [wide])
    page.wait_for(lambda _: any("wide.png: 200x100" in error for error in page.errors()))
    assert page.answers() == []


@needs_browser
def test_stop_ends_a_long_generation_early(page):
    page.set_number("max-new-tokens", web_demo.MAX_NEW_TOKENS_LIMIT)
    page.ask("Tell me a long story.")
    page.wait_for(lambda _: any(page.streamed()))
    page.click("stop")
    stopped_at = time.monotonic()
    status = page.wait_for_reply(1, timeout_s=30)
    assert status[3] and int(status[2]) < web_demo.MAX_NEW_TOKENS_LIMIT, status[0]
    assert time.monotonic() - stopped_at < 10
    assert page.answers()[0]
