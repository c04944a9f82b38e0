"""RLAIF-V's parquet layout (the hub's columns) converted to preference rows that stage dpo reads, and
`bash download_resource.sh --preference` fetching and converting it once, as dpo_train.yaml reads it."""

import io
import json
import re
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from qwen3_smvl.data import own_files, rlaif_v

import train
from conftest import REPO
from hub_standin import install
from test_download import MODELS, STUB, SYSTEM_PATH, calls, run
from test_dpo import small_graft  # noqa: F401  (the module fixture)


def png():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def shard(path, rows):
    """A parquet shard with RLAIF-V-Dataset's columns, in its order."""
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("ds_name", pa.string()), ("image", image), ("question", pa.string()), ("chosen", pa.string()),
                        ("rejected", pa.string()), ("origin_dataset", pa.string()), ("origin_split", pa.string()),
                        ("idx", pa.string()), ("image_path", pa.string())])
    full = [{"ds_name": "RLAIF-V", "origin_dataset": "VQAv2", "origin_split": json.dumps({"model": "x"}),
             "image_path": "a/b.png", **row} for row in rows]
    pq.write_table(pa.Table.from_pylist(full, schema=schema), path)


def test_rlaif_v_parquet_becomes_preference_rows(tmp_path):
    source = tmp_path / "RLAIF-V-Dataset"
    source.mkdir()
    good = {"image": {"bytes": png(), "path": "0.png"}, "question": "What is red?", "chosen": "The square.",
            "rejected": "A red car and a dog.", "idx": "0"}
    shard(source / "RLAIF-V-Dataset_000.parquet",
          [good, {**good, "idx": "1", "rejected": "The square."}, {**good, "idx": "2", "image": None}])
    out = tmp_path / "preference" / "rlaif_v.jsonl"
    written, skipped = rlaif_v.convert(source, out)
    assert (written, skipped) == (1, {"chosen equals rejected": 1, "no image": 1})

    ds = own_files.read_file(str(out), "messages", None, str(tmp_path / "cache"), "rlaif_v")
    assert ds[0]["problem"] is None and ds[0]["rejected"] == "A red car and a dog."
    messages = json.loads(ds[0]["messages"])
    assert messages[-1] == {"role": "assistant", "content": "The square."}
    assert Image.open(ds[0]["images"][0]["path"]).size == (8, 8)


# `bash download_resource.sh --preference` as a user runs it (models from ModelScope, RLAIF-V from the hub), against
# the stand-in `hf` (tests/hub_standin.py) serving the dataset repo in its hub layout: README (the hub's front matter:
# features, no configs, so every parquet is the train split), .gitattributes and shards named as the hub's 14 are.
README = """---
license: cc-by-nc-4.0
task_categories:
- visual-question-answering
language:
- en
pretty_name: RLAIF-V-Dataset
dataset_info:
  features:
""" + "".join(f"  - name: {name}\n    dtype: {'image' if name == 'image' else 'string'}\n" for name in (
    "ds_name", "image", "question", "chosen", "rejected", "origin_dataset", "origin_split", "idx", "image_path")) + """\
size_categories:
- 10K<n<100K
---

# Dataset Card for RLAIF-V-Dataset
"""
SHARDS = {"RLAIF-V-Dataset_000.parquet": ["0", "1", "2"], "RLAIF-V-Dataset_001.parquet": ["3", "4"]}
SKIPPED = "1"  # its chosen answer equals its rejected one
DATASET_DIR = "data/preference/RLAIF-V-Dataset"
CONVERTED = "data/preference/rlaif_v.jsonl"


def jpeg(index):
    buffer = io.BytesIO()
    Image.new("RGB", (40 + index, 30), (40 * index, 200, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def hub_row(idx):
    return {"image": {"bytes": jpeg(int(idx)), "path": f"{idx}.jpg"}, "question": f"What is in picture {idx}?",
            "chosen": f"A green field, number {idx}.",
            "rejected": f"A green field, number {idx}." if idx == SKIPPED else f"A red car and a dog, number {idx}."}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    repo = root / "datasets" / rlaif_v.HUB_REPO
    repo.mkdir(parents=True)
    (repo / "README.md").write_text(README)
    (repo / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")
    for name, ids in SHARDS.items():
        shard(repo / name, [{**hub_row(idx), "idx": idx} for idx in ids])
    return root


def download(work, hub, **env):
    """Runs the script in `work` with the stand-in `hf` and test_download's logging `modelscope` on PATH."""
    bin_dir = install(work / "bin")
    (bin_dir / "modelscope").write_text(STUB)
    (bin_dir / "modelscope").chmod(0o755)
    return run(work, "--preference", path=f"{bin_dir}:{SYSTEM_PATH}", HF_MIRROR=str(hub), **env)


def files_under(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def test_download_fetches_the_shards_and_converts_them_once_for_dpo_train_yaml(tmp_path, hub, small_graft, capsys,
                                                                                monkeypatch):
    result = download(tmp_path, hub)
    assert result.returncode == 0, result.stderr
    dataset_call = ["hf", "download", rlaif_v.HUB_REPO, "--repo-type", "dataset", "--include", "*.parquet",
                    "--include", "README.md", "--local-dir", DATASET_DIR]
    assert calls(tmp_path) == [["modelscope", "download", *model] for model in MODELS] + [dataset_call]
    assert files_under(tmp_path / DATASET_DIR) == [".complete", "README.md", *SHARDS]  # not .gitattributes
    assert "RLAIF-V: 4 preference pairs -> data/preference/rlaif_v.jsonl, 1 skipped (chosen equals rejected 1)" \
        in result.stdout

    rows = [json.loads(line) for line in (tmp_path / CONVERTED).read_text().splitlines()]
    kept = [idx for ids in SHARDS.values() for idx in ids if idx != SKIPPED]
    assert [row["id"] for row in rows] == kept
    for row, idx in zip(rows, kept):
        source = hub_row(idx)
        image = row["messages"][0]["content"][0]["image"]
        assert row["messages"] == [{"role": "user", "content": [
            {"type": "image", "image": image}, {"type": "text", "text": source["question"]}]}]
        assert (row["chosen"], row["rejected"]) == (source["chosen"], source["rejected"])
        assert (tmp_path / "data/preference" / image).read_bytes() == source["image"]["bytes"]
    assert len(list((tmp_path / "data/preference/images").iterdir())) == len(kept)

    converted_at = (tmp_path / CONVERTED).stat().st_mtime_ns
    again = download(tmp_path, hub)  # converted once: nothing fetched or rewritten
    assert again.returncode == 0, again.stderr
    assert len(calls(tmp_path)) == 3 and (tmp_path / CONVERTED).stat().st_mtime_ns == converted_at
    assert f"skip {DATASET_DIR} (already complete)" in again.stdout and "RLAIF-V:" not in again.stdout

    monkeypatch.chdir(tmp_path)  # dpo_train.yaml as shipped (on a CPU), its relative train_data, from the download
    with pytest.raises(SystemExit) as checked:
        train.main([str(REPO / "dpo_train.yaml"), "--init_from", str(small_graft), "--use_cpu", "true",
                    "--check_data", "true"])
    printed = capsys.readouterr().out
    assert checked.value.code == 0, printed
    assert re.search(r"\ndata check: 4 rows in 1 source\(s\), 0 problem\(s\) found, \d+ s$", printed.rstrip()), printed


def test_an_interrupted_download_is_not_converted_and_the_next_run_finishes_it(tmp_path, hub):
    failed = download(tmp_path, hub, HF_STANDIN_FAIL_AT="RLAIF-V-Dataset_001.parquet")
    assert failed.returncode == 1 and "connection to the hub dropped" in failed.stderr
    assert files_under(tmp_path / DATASET_DIR) == ["README.md", "RLAIF-V-Dataset_000.parquet"]  # no .complete
    assert not list((tmp_path / "data/preference").glob("rlaif_v.jsonl*"))

    resumed = download(tmp_path, hub)
    assert resumed.returncode == 0, resumed.stderr
    assert len((tmp_path / CONVERTED).read_text().splitlines()) == 4


def test_an_unreadable_shard_is_named_leaves_nothing_converted_and_is_fetched_again(tmp_path, hub):
    broken = tmp_path / "broken_hub"
    shutil.copytree(hub, broken)
    cut = broken / "datasets" / rlaif_v.HUB_REPO / "RLAIF-V-Dataset_001.parquet"
    cut.write_bytes(cut.read_bytes()[:200])  # a shard a mirror served cut short
    failed = download(tmp_path, broken)
    assert failed.returncode == 1
    shard_path = f"{DATASET_DIR}/RLAIF-V-Dataset_001.parquet"
    assert f"rlaif_v: {shard_path} cannot be read as {rlaif_v.HUB_REPO}'s parquet (" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    assert not list((tmp_path / "data/preference").glob("rlaif_v.jsonl*"))
    assert not (tmp_path / DATASET_DIR / ".complete").exists()

    (tmp_path / shard_path).unlink()  # as the message says; the mirror serves it whole again
    fixed = download(tmp_path, hub)
    assert fixed.returncode == 0, fixed.stderr
    assert len((tmp_path / CONVERTED).read_text().splitlines()) == 4
