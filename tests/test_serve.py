"""`transformers serve` answers OpenAI-style image chats about a stitched checkpoint, as infer.py does.

The server is a subprocess bound to 127.0.0.1 on a free port, stopped after the module (and killed
by a timer should the module hang)."""

import base64
import io
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from qwen3_smvl import inference

from conftest import free_port

openai = pytest.importorskip("openai", reason="transformers[serving] (requirements-deploy.txt) brings openai")
pytest.importorskip("fastapi", reason="transformers[serving] is in requirements-deploy.txt")

SERVER_LIFETIME_S = 300
STARTUP_TIMEOUT_S = 120
QUESTION = "What colour is it?"


def wait_until_healthy(url, process, log_path):
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"transformers serve exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1)
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"transformers serve did not answer {url}/health within {STARTUP_TIMEOUT_S} s")


@pytest.fixture(scope="module")
def server(stitched_dir, tmp_path_factory):
    """Base URL of `transformers serve` with the stitched model preloaded, on the CPU."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "server.log"
    command = [str(Path(sys.executable).with_name("transformers")), "serve", str(stitched_dir),
               "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    log = log_path.open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    watchdog = threading.Timer(SERVER_LIFETIME_S, process.kill)
    watchdog.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, process, log_path)
        yield url
    finally:
        watchdog.cancel()
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def image():
    return Image.new("RGB", (40, 30), "red")


def image_chat(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    content = [{"type": "image_url", "image_url": {"url": data_url}}, {"type": "text", "text": QUESTION}]
    return [{"role": "user", "content": content}]


def test_chat_completion_with_a_base64_image_answers_as_infer_does(server, stitched_dir, image):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused")
    # enable_thinking=False: infer.py's default, an empty think block closing the prompt.
    reply = client.chat.completions.create(
        model=str(stitched_dir), messages=image_chat(image), max_tokens=5,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    model, processor = inference.load_model(stitched_dir)
    assert reply.usage.completion_tokens == 5
    assert reply.choices[0].message.content == inference.answer(model, processor, image, QUESTION, max_new_tokens=5)


def test_streamed_chat_completion_arrives_in_pieces_that_make_the_answer(server, stitched_dir, image):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused")
    stream = client.chat.completions.create(model=str(stitched_dir), messages=image_chat(image), max_tokens=5, stream=True)
    pieces = [chunk.choices[0].delta.content for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    model, processor = inference.load_model(stitched_dir)
    # Without chat_template_kwargs Qwen3's template leaves thinking on: infer.py's --think prompt.
    # Pieces, not one reply; how many depends on timing: a stream that fell behind sends what queued up as one event.
    assert 1 < len(pieces) <= 5
    assert "".join(pieces) == inference.answer(model, processor, image, QUESTION, think=True, max_new_tokens=5)
