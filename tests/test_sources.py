"""qwen3_smvl/data/sources.py and data.load_data on your own files: the LLaVA and messages readers, image references
(relative paths, data: URLs, file://, http on 127.0.0.1), problems with file:line, and weighted mixtures."""

import base64
import http.server
import json
import threading
from collections import Counter
from pathlib import Path

import datasets
import pytest

from qwen3_smvl.data import loading, own_files, sources, the_cauldron
from qwen3_smvl.training.train_config import ConfigError, DataArguments, check_config, parse_config

from conftest import REPO

EXAMPLES = REPO / "examples"
PNG = (EXAMPLES / "images" / "red.png").read_bytes()


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def read(path, tmp_path, **entry):
    source = sources.parse_sources([{"path": str(path), **entry}], str(tmp_path))[0]
    ds, fmt = sources.read_source(source, str(tmp_path), str(tmp_path / "image_cache"), max_images=4)
    return ds, fmt


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def image_row(*references, question="Colour?"):
    parts = [{"type": "image_url", "image_url": {"url": ref}} for ref in references]
    return {"messages": [{"role": "user", "content": parts + [{"type": "text", "text": question}]},
                         {"role": "assistant", "content": "red"}]}


def test_llava_rows_become_messages_with_images_where_the_placeholders_stand(tmp_path):
    ds, fmt = read(EXAMPLES / "llava.json", tmp_path)
    assert fmt == "llava" and len(ds) == 5 and ds["problem"] == [None] * 5
    two = ds[2]
    user = json.loads(two["messages"])[0]["content"]
    assert [part.get("text", "<image>") for part in user] == [
        "First picture: ", "<image>", "Second picture: ", "<image>", "Which colour does the second picture have?"]
    assert [Path(image["path"]).name for image in two["images"]] == ["red.png", "green.png"]
    no_placeholder = json.loads(ds[3]["messages"])
    assert no_placeholder[0]["role"] == "system" and no_placeholder[1]["content"][0] == {"type": "image"}
    chinese = json.loads(ds[1]["messages"])
    assert chinese[0]["content"][1]["text"] == "图中是什么颜色？" and chinese[1]["content"] == "蓝色。"
    assert ds[4]["images"] == [] and ds[1]["origin"].endswith("llava.json#1")


def test_messages_rows_keep_tools_reasoning_and_decode_data_urls(tmp_path):
    ds, fmt = read(EXAMPLES / "messages.jsonl", tmp_path)
    assert fmt == "messages" and ds["problem"] == [None] * 5
    assert ds[0]["images"][0]["bytes"].startswith(b"\x89PNG") and ds[0]["images"][0]["path"] is None
    assert [Path(image["path"]).name for image in ds[1]["images"]] == ["red.png", "blue.png"]
    assert json.loads(ds[1]["messages"])[1]["reasoning_content"].startswith("The first picture")
    tool_row = json.loads(ds[2]["messages"])
    assert json.loads(ds[2]["tools"])[0]["function"]["name"] == "get_colour_name"
    assert tool_row[2]["tool_calls"][0]["function"]["arguments"] == {"rgb": [20, 160, 20]} and tool_row[3]["role"] == "tool"
    assert ds[2]["origin"].endswith("messages.jsonl:3")


def test_image_references_local_file_url_and_data_root(tmp_path):
    encoded = "data:image/png;base64," + base64.b64encode(PNG).decode()
    path = write_jsonl(tmp_path / "rows.jsonl", [
        image_row("red.png"), image_row(f"file://{EXAMPLES / 'images' / 'red.png'}"), image_row(encoded),
        image_row("data:image/png;base64,@@@"),
    ])
    ds, _ = read(path, tmp_path, data_root=str(EXAMPLES / "images"))
    assert ds[0]["images"][0]["path"] == str(EXAMPLES / "images" / "red.png")
    assert ds[1]["images"][0]["path"] == str(EXAMPLES / "images" / "red.png")
    assert ds[2]["images"][0]["bytes"] == PNG
    assert ds[3]["problem"].startswith("bad image: data URL is not valid base64")


class ImageServer(http.server.ThreadingHTTPServer):
    """Serves PNG at /red.png on 127.0.0.1, 404 elsewhere; stops itself after `lifetime` seconds."""

    def __init__(self, lifetime=60):
        self.requests = Counter()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler):  # noqa: N805
                self.requests[handler.path] += 1
                if handler.path == "/red.png":
                    handler.send_response(200)
                    handler.send_header("Content-Type", "image/png")
                    handler.end_headers()
                    handler.wfile.write(PNG)
                else:
                    handler.send_error(404)

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.timer = threading.Timer(lifetime, self.shutdown)

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()
        self.shutdown()
        self.server_close()


def test_http_images_are_fetched_once_before_training_and_failures_listed(tmp_path, caplog):
    with ImageServer() as server:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        video_row = {"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": f"{base}/gone.mp4"}}]},
                                  {"role": "assistant", "content": "a cat"}]}
        path = write_jsonl(tmp_path / "web.jsonl", [image_row(f"{base}/red.png"), image_row(f"{base}/gone.png"), video_row])
        ds, _ = read(path, tmp_path)
        again, _ = read(write_jsonl(tmp_path / "again.jsonl", [image_row(f"{base}/red.png")]), tmp_path)
    assert Path(ds[0]["images"][0]["path"]).read_bytes() == PNG and ds[0]["problem"] is None
    assert ds[1]["problem"].startswith(f"bad image: {base}/gone.png could not be fetched (HTTPError: HTTP Error 404")
    assert ds[2]["problem"].startswith(f"bad video: {base}/gone.mp4 could not be fetched (HTTPError: HTTP Error 404")
    assert again[0]["images"][0]["path"] == ds[0]["images"][0]["path"]
    assert server.requests["/red.png"] == 1 and server.requests["/gone.png"] == own_files.FETCH_ATTEMPTS
    assert "2 of 3 image/video URLs could not be fetched" in caplog.text and f"{base}/gone.mp4" in caplog.text


def test_problems_name_file_and_line_and_refuse_or_are_skipped(tmp_path):
    args = DataArguments(train_data=[{"path": str(EXAMPLES / "planted")}], test_size=0)
    with pytest.raises(loading.DataError) as refused, pytest.warns(UserWarning, match="ignoring key"):
        loading.load_data(args, 0)
    message = str(refused.value)
    assert "4 unusable row(s)" in message
    for planted in ("llava_problems.json#1: placeholder mismatch: 2 <image> placeholder(s) for 1 image(s)",
                    "llava_problems.json#2: missing video: video file ", "clip.mp4 not found",
                    "messages_problems.jsonl:2: invalid JSON: ",
                    "messages_problems.jsonl:3: missing image: image file ", "missing.png not found"):
        assert planted in message
    args.on_bad_sample = "skip"
    with pytest.warns(UserWarning) as warned:
        loaded = loading.load_data(args, 0)
    assert len(loaded.train) == 5
    assert loaded.problems == {str(EXAMPLES / "planted"): {"placeholder mismatch": 1, "missing video": 1, "invalid JSON": 1,
                                                           "missing image": 1}}
    named = [str(w.message) for w in warned if "ignoring key" in str(w.message)]
    assert named == [f"{EXAMPLES / 'planted'}: ignoring key(s) ['score'] that the llava+messages reader does not understand"]


def mixture(tmp_path, weights, sizes=(1500, 600)):
    entries = []
    for name, weight, size in zip("ab", weights, sizes):
        rows = [{"messages": [{"role": "user", "content": f"{name}{i}"}, {"role": "assistant", "content": name}]}
                for i in range(size)]
        entries.append({"path": str(write_jsonl(tmp_path / f"{name}.jsonl", rows)), **({"weight": weight} if weight else {})})
    return entries


def test_weighted_mixture_draws_in_proportion(tmp_path):
    args = DataArguments(train_data=mixture(tmp_path, (3.0, 1.0)), test_size=20)
    loaded = loading.load_data(args, seed=7)
    drawn = Counter(Path(source).stem for source in loaded.train.select(range(2000))["source"])
    assert abs(drawn["a"] - 1500) < 60 and abs(drawn["b"] - 500) < 60  # 3 standard deviations
    held = Counter(Path(source).stem for source in loaded.held_out["source"])
    assert held == {"a": 14, "b": 6}  # test_size split in proportion to the sources' sizes
    assert not set(loaded.held_out["messages"]) & set(loaded.train["messages"])
    again = loading.load_data(args, seed=7).train.select(range(50))["messages"]
    other = loading.load_data(args, seed=8).train.select(range(50))["messages"]
    assert again == loaded.train.select(range(50))["messages"] != other


def test_max_samples_caps_a_source_and_eval_data_replaces_the_held_out_rows(tmp_path):
    a, b = mixture(tmp_path, (None, None), sizes=(30, 10))
    args = DataArguments(train_data=[{**a, "max_samples": 12}, b], eval_data=[{"path": str(EXAMPLES / "llava.json")}],
                         test_size=5)
    loaded = loading.load_data(args, seed=0)
    assert len(loaded.train) == 22 and len(loaded.held_out) == 5
    assert set(loaded.held_out["source"]) == {str(EXAMPLES / "llava.json")}


@pytest.mark.parametrize("entry, message", [
    ({"path": "examples/llava.json", "format": "sharegpt"}, "unknown format 'sharegpt'; known: ['cauldron', 'llava', 'messages']"),
    ({"path": "examples/llava.json", "weight": 0}, "weight must be a number above 0"),
    ({"path": "examples/llava.json", "weigth": 2}, "unknown key(s) ['weigth']"),
    ({"path": "examples/nowhere.jsonl"}, "examples/nowhere.jsonl does not exist"),
    ({"format": "llava"}, "has no 'path'"),
])
def test_bad_entries_are_refused_before_anything_loads(entry, message, monkeypatch):
    monkeypatch.chdir(REPO)
    args = parse_config(["--train_data", json.dumps(entry), "--smolvlm_path", "x", "--qwen_path", "y"])
    with pytest.raises(ConfigError, match="train_data: ") as refused:
        check_config(*args)
    assert message in str(refused.value)


def test_yaml_mappings_and_names_mix_in_train_data(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = tmp_path / "cfg.yaml"
    config.write_text("train_data:\n  - cocoqa\n  - {path: examples/llava.json, weight: 2.0}\n"
                      "  - {path: examples/messages.jsonl, max_samples: 3}\n")
    _, data_args, _, _ = parse_config([str(config)])
    parsed = sources.parse_sources(data_args.train_data, "data/the_cauldron")
    assert [(s.name, s.subset, s.weight, s.max_samples) for s in parsed] == [
        ("cocoqa", True, None, None), ("examples/llava.json", False, 2.0, None), ("examples/messages.jsonl", False, None, 3)]


def test_a_yaml_list_typed_on_the_command_line_is_read_as_the_list(monkeypatch):
    """`--train_data "[cocoqa, {path: ...}]"`, as a recipe's YAML writes the list; a broken one is named."""
    monkeypatch.chdir(REPO)
    _, data_args, _, _ = parse_config(["--train_data", "[cocoqa, {path: examples/llava.json, weight: 2.0}]"])
    parsed = sources.parse_sources(data_args.train_data, "data/the_cauldron")
    assert [(s.name, s.subset, s.weight) for s in parsed] == [("cocoqa", True, None), ("examples/llava.json", False, 2.0)]
    with pytest.raises(sources.DataError, match=r"train_data: cannot read '\[cocoqa, \{path: x' as a list"):
        sources.parse_sources(["[cocoqa, {path: x"], "data/the_cauldron")


def test_a_plain_path_in_train_data_is_read_as_a_file_or_refused_naming_the_path_form(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = tmp_path / "cfg.yaml"
    config.write_text("train_data:\n  - examples/llava.json\n  - cocoqa\n  - text_eval.jsonl\n")
    _, data_args, _, _ = parse_config([str(config)])
    parsed = sources.parse_sources(data_args.train_data, "data/the_cauldron")
    assert [(s.name, s.subset) for s in parsed] == [("examples/llava.json", False), ("cocoqa", True),
                                                    ("text_eval.jsonl", False)]
    plain, _ = sources.read_source(parsed[0], "data/the_cauldron", str(tmp_path / "image_cache"), max_images=4)
    assert plain["messages"] == read("examples/llava.json", tmp_path)[0]["messages"]  # as {path: ...} reads it
    for missing in ("data/my_videos.json", "my_videos.jsonl"):
        args = parse_config(["--train_data", missing, "--smolvlm_path", "x", "--qwen_path", "y"])
        with pytest.raises(ConfigError) as refused:
            check_config(*args)
        assert str(refused.value) == (
            f"train_data: {missing} does not exist (an entry with a '/' or a .json/.jsonl/.parquet suffix is read as "
            f"a file or directory, as {{path: {missing}}} is; the_cauldron subsets are bare names such as cocoqa)")


def test_invalid_json_file_names_file_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n {"conversations": []},\n {"conversations": [}\n]')
    with pytest.raises(sources.DataError, match=rf"{path}:3: invalid JSON"):
        read(path, tmp_path, format="llava")


def test_a_large_jsonl_parsed_in_parts_reads_every_line_once(tmp_path, monkeypatch):
    rows = [image_row("red.png", question=f"q{i}") for i in range(40)]
    lines = [json.dumps(row) for row in rows]
    lines[17] = '{"messages": ['  # a bad line in the middle keeps its number
    lines.insert(30, "")  # blank lines count
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(lines) + "\n")
    whole, _ = read(path, tmp_path, data_root=str(EXAMPLES / "images"))
    monkeypatch.setattr(own_files, "PARALLEL_BYTES", 200)
    monkeypatch.setattr(own_files.os, "cpu_count", lambda: 3)
    parts, _ = read(path, tmp_path / "other", data_root=str(EXAMPLES / "images"))
    assert len(list((tmp_path / "hf_cache" / "own_data").glob("*/part-*.arrow"))) == 1 + 3
    expected = [f"{path}:{n}" for n in range(1, 42) if n != 31]
    assert whole["origin"] == parts["origin"] == expected
    assert parts["problem"][17].startswith("invalid JSON") and parts["messages"] == whole["messages"]


def test_subset_names_keep_their_old_forms(tmp_path):
    names = lambda entries: [s.name for s in sources.parse_sources(entries, str(tmp_path))]
    assert names("cocoqa, ai2d") == names(["cocoqa", "ai2d"]) == ["cocoqa", "ai2d"]
    assert names(["all"]) == the_cauldron.ALL_SUBSETS and names(["cocoqa", "cocoqa,ai2d"]) == ["cocoqa", "ai2d"]


def test_parquet_files_in_llava_form_and_cauldron_directories_read_like_the_rest(tmp_path, cauldron_dir):
    rows = json.loads((EXAMPLES / "llava.json").read_text())
    for row in rows:  # one schema for the whole file
        row.setdefault("image", None)
        row.setdefault("images", None)
    path = tmp_path / "llava.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    ds, fmt = read(path, tmp_path, data_root=str(EXAMPLES))
    expected, _ = read(EXAMPLES / "llava.json", tmp_path)
    assert fmt == "llava" and ds["messages"] == expected["messages"] and ds["origin"][2] == f"{path}#2"
    assert [[image["path"] for image in images] for images in ds["images"]] == [
        [image["path"] for image in images] for images in expected["images"]]

    subset, fmt = read(cauldron_dir / "ai2d", tmp_path)  # detected from the first row's `texts`
    assert fmt == "cauldron" and len(subset) == 48 and subset[0]["images"][0]["bytes"].startswith(b"\x89PNG")
    assert json.loads(subset[0]["messages"])[0]["content"][0] == {"type": "image"}
