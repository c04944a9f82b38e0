"""qwen3_smvl/data/text_replay.py: ShareGPT-Chinese-English-90k's Firefly rows become messages rows that qwen3_smvl/data/sources.py reads."""

import json

import pytest

from qwen3_smvl import tiny
from qwen3_smvl.data import sources, text_replay


def test_conversion_reads_back_through_the_messages_reader(tmp_path):
    source = tiny.write_tiny_sharegpt_zh_en(tmp_path / "download", rows=3)
    out = tmp_path / "replay.jsonl"
    written, skipped, _ = text_replay.convert(source, out)
    assert (written, skipped) == (6, {})
    rows, fmt = sources.read_source(sources.parse_entry({"path": str(out)}, str(tmp_path), "train_data"),
                                    str(tmp_path), str(tmp_path / "cache"), max_images=1)
    assert fmt == "messages" and len(rows) == 6 and rows["problem"] == [None] * 6
    assert json.loads(rows[0]["messages"]) == [{"role": "user", "content": "What is 0 plus one?"},
                                               {"role": "assistant", "content": "0 plus one is 1."}]
    assert json.loads(rows[3]["messages"])[0]["content"] == "0加一是多少？"


def test_turns_stop_at_the_first_unanswered_one_and_bad_lines_are_counted(tmp_path):
    folder = tmp_path / "download" / "sharegpt_jsonl"
    folder.mkdir(parents=True)
    good = {"human": "hi", "assistant": "hello"}
    lines = [json.dumps({"conversation": [good, {"human": "and?", "assistant": ""}, good]}),
             json.dumps({"conversation": [{"human": "unanswered"}]}), "{not json", json.dumps({"texts": []})]
    (folder / "common_en.jsonl").write_text("\n".join(lines) + "\n")
    written, skipped, first = text_replay.convert(tmp_path / "download", tmp_path / "out.jsonl")
    assert written == 1 and skipped == {"no answered turn": 1, "not JSON": 1, "no 'conversation' list": 1}
    assert first == f"{folder / 'common_en.jsonl'}:2: no answered turn"
    only = json.loads((tmp_path / "out.jsonl").read_text())
    assert only == {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def test_nothing_usable_is_an_error_and_writes_nothing(tmp_path):
    with pytest.raises(text_replay.ReplayError, match="holds no .jsonl files"):
        text_replay.convert(tmp_path, tmp_path / "out.jsonl")
    (tmp_path / "a.jsonl").write_text('{"conversation": []}\n')
    with pytest.raises(text_replay.ReplayError, match=r"no usable conversation in 1 file\(s\)"):
        text_replay.convert(tmp_path, tmp_path / "out.jsonl")
    assert not list(tmp_path.glob("out.jsonl*"))
