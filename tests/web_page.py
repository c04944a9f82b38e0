"""Drives web_demo.py's page in headless Chromium (Selenium), for its browser tests and the docs screenshot.

Chromium and its driver are Debian's `chromium` and `chromium-driver` packages (.ci/run installs them);
the driver is named explicitly, so Selenium never tries to download one.
"""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[1]
WINDOW = (1280, 900)
FINAL_STATUS = re.compile(r"reply (\d+): (\d+) tokens in [\d.]+ s( · stopped)?")
# Keeps every text the last reply bubble showed, so a test can see the answer arrive in pieces.
RECORD_STREAM = """
window.streamed = [];
new MutationObserver(() => {
  const parts = document.querySelectorAll('#chat [data-testid="bot"] > .message-content');
  if (parts.length) window.streamed.push(parts[parts.length - 1].textContent);
}).observe(document.querySelector('#chat'), {subtree: true, childList: true, characterData: true});
"""


def browser_missing():
    """Why the browser cannot start here (a sentence), or None."""
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    return missing and f"{' and '.join(missing)} not found (apt-get install chromium chromium-driver)"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_app(model_dir, log_path, *options, lifetime_s=300, startup_s=180):
    """The URL of `web_demo.py --model model_dir` on 127.0.0.1 (a free port); the app is killed after
    `lifetime_s` whatever happens, and stopped on leaving."""
    port = free_port()
    command = [sys.executable, str(REPO / "web_demo.py"), "--model", str(model_dir), "--port", str(port), *options]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
        watchdog = threading.Timer(lifetime_s, process.kill)
        watchdog.start()
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_until_serving(url, process, log_path, startup_s)
            yield url
        finally:
            watchdog.cancel()
            process.terminate()
            process.wait(timeout=30)


def wait_until_serving(url, process, log_path, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"web_demo.py exited with {process.returncode}:\n{Path(log_path).read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"web_demo.py did not serve {url} within {timeout_s} s")


def open_browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


class Page:
    """One visit of the page (a fresh session: empty history), with what a user does and sees there."""

    def __init__(self, driver, url, timeout_s=60):
        self.driver, self.timeout_s = driver, timeout_s
        driver.get(url)
        self.wait_for(lambda _: driver.find_elements(By.CSS_SELECTOR, "#question textarea"))
        driver.execute_script(RECORD_STREAM)

    def wait_for(self, condition, timeout_s=None):
        return WebDriverWait(self.driver, timeout_s or self.timeout_s, poll_frequency=0.1).until(condition)

    def find(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def set_number(self, elem_id, value):
        field = self.find(f"#{elem_id} input[type=number]")
        field.clear()
        field.send_keys(str(value), Keys.TAB)

    def set_thinking(self, on):
        box = self.find("#think input")
        if box.is_selected() != on:
            box.click()

    def ask(self, question, files=()):
        """Uploads `files`, types `question` and sends it."""
        for path in files:
            uploaded = len(self.driver.find_elements(By.CSS_SELECTOR, "#question .thumbnail-item"))
            self.upload(path)
            self.wait_for(lambda _: len(self.driver.find_elements(By.CSS_SELECTOR, "#question .thumbnail-item"))
                          > uploaded)
        text = self.find("#question textarea")
        text.send_keys(Keys.CONTROL, "a")
        text.send_keys(Keys.DELETE)
        text.send_keys(question, Keys.ENTER)

    def upload(self, path):
        """Picks `path` in the input box's file dialog."""
        field = self.find("#question input[type=file]")
        field.send_keys(str(path))
        # ChromeDriver adds to a multiple-file input's earlier picks; a person's next pick replaces them.
        self.driver.execute_script("arguments[0].value = '';", field)

    def status(self):
        return self.find("#status").text.strip()

    def wait_for_reply(self, number, timeout_s=None):
        """The status line once reply `number` (1 = the first of this visit) is complete."""
        def finished(_):
            match = FINAL_STATUS.fullmatch(self.status())
            return match and int(match[1]) == number and match
        return self.wait_for(finished, timeout_s)

    def answers(self):
        """Each reply's answer text as shown (the think block apart)."""
        return [part.get_attribute("textContent")
                for part in self.driver.find_elements(By.CSS_SELECTOR, '#chat [data-testid="bot"] > .message-content')]

    def questions(self):
        """Each question's text as shown."""
        return [part.get_attribute("textContent").strip() for part in
                self.driver.find_elements(By.CSS_SELECTOR, '#chat [data-testid="user"] .message-content')
                if part.get_attribute("textContent").strip()]

    def thinking_sections(self):
        return self.driver.find_elements(By.CSS_SELECTOR, "#chat .thought-group")

    def streamed(self):
        return self.driver.execute_script("return window.streamed")

    def errors(self):
        return [toast.text for toast in self.driver.find_elements(By.CSS_SELECTOR, '[data-testid="toast-text"]')]

    def click(self, elem_id):
        self.find(f"#{elem_id}").click()

    def screenshot(self, path):
        self.driver.save_screenshot(str(path))
        return Path(path)
