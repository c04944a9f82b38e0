"""qwen3_smvl/data/loading.py: the_cauldron loading from the on-disk parquet layout, on a synthetic dataset."""

import glob
import io
import json
import os
import warnings

import datasets
import pytest
from datasets import Dataset
from PIL import Image as PILImage

from qwen3_smvl.data.loading import load_data
from qwen3_smvl.data.row_shape import ROW_FEATURES, DataError
from qwen3_smvl.data.the_cauldron import ALL_SUBSETS, FEATURES, resolve_subsets
from qwen3_smvl.tiny import COLOURS, write_synthetic_cauldron
from qwen3_smvl.training.train_config import DataArguments

ROWS = 40


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """Keeps the arrow cache that load_dataset writes out of the user's cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


@pytest.fixture
def cauldron(tmp_path):
    data_dir = tmp_path / "the_cauldron"
    write_synthetic_cauldron(data_dir, subsets=("cocoqa", "ai2d"), rows_per_subset=ROWS, files_per_subset=2)
    return str(data_dir)


def keys(ds):
    """Row identities: the synthetic images carry random noise, so their files are unique per row."""
    return [row["images"][0]["bytes"] for row in ds]


def load_cauldron(data_dir, train_data, test_size=64, data_seed=42, max_train_samples=None):
    """(train, held-out) of a config that names the_cauldron subsets."""
    names = train_data.split(",") if isinstance(train_data, str) else train_data
    args = DataArguments(data_dir=str(data_dir), train_data=names, test_size=test_size,
                         max_train_samples=max_train_samples)
    loaded = load_data(args, data_seed)
    return loaded.train, loaded.held_out


def test_synthetic_layout_and_content(tmp_path):
    paths = write_synthetic_cauldron(tmp_path, subsets=("cocoqa",), rows_per_subset=10, files_per_subset=2, turns=2)
    names = sorted(os.path.basename(p) for p in paths)
    assert [n[:20] for n in names] == ["train-00000-of-00002", "train-00001-of-00002"]
    assert sorted(glob.glob(str(tmp_path / "cocoqa" / "train-*.parquet"))) == sorted(map(str, paths))

    ds = Dataset.from_parquet([str(p) for p in paths])
    assert len(ds) == 10 and ds.features == FEATURES
    row = ds[0]
    assert len(row["texts"]) == 2 and {t["source"] for t in row["texts"]} == {"cocoqa"}
    colour = row["texts"][0]["assistant"]
    pixel = row["images"][0].convert("RGB").getpixel((5, 5))
    assert max(abs(a - b) for a, b in zip(pixel, COLOURS[colour])) <= 8


def test_synthetic_is_deterministic(tmp_path):
    a = write_synthetic_cauldron(tmp_path / "a", rows_per_subset=8, seed=3)
    b = write_synthetic_cauldron(tmp_path / "b", rows_per_subset=8, seed=3)
    assert Dataset.from_parquet(str(a[0])).to_dict() == Dataset.from_parquet(str(b[0])).to_dict()


def test_resolve_subsets():
    assert resolve_subsets("all") == ALL_SUBSETS and len(ALL_SUBSETS) == 21
    assert resolve_subsets("cocoqa") == ["cocoqa"]
    assert resolve_subsets(" cocoqa, ai2d ,") == ["cocoqa", "ai2d"]
    assert resolve_subsets(["ai2d", "nope"]) == ["ai2d", "nope"]


def test_load_counts_and_split(cauldron):
    train, eval_ = load_cauldron(cauldron, "cocoqa,ai2d", test_size=8, data_seed=1)
    assert (len(train), len(eval_)) == (2 * ROWS - 8, 8)
    assert {r["source"] for r in train} == {"cocoqa", "ai2d"}

    train2, eval2 = load_cauldron(cauldron, ["cocoqa", "ai2d"], test_size=8, data_seed=1)
    assert keys(eval2) == keys(eval_) and keys(train2) == keys(train)
    _, eval3 = load_cauldron(cauldron, "cocoqa,ai2d", test_size=8, data_seed=2)
    assert keys(eval3) != keys(eval_)


def test_split_is_disjoint(cauldron):
    train, eval_ = load_cauldron(cauldron, "cocoqa,ai2d", test_size=8)
    train_keys, eval_keys = set(keys(train)), set(keys(eval_))
    assert len(train_keys) + len(eval_keys) == 2 * ROWS
    assert not train_keys & eval_keys


def test_max_train_samples_caps_train_only(cauldron):
    train, eval_ = load_cauldron(cauldron, "cocoqa,ai2d", test_size=8, max_train_samples=5)
    _, eval_full = load_cauldron(cauldron, "cocoqa,ai2d", test_size=8)
    assert (len(train), len(eval_)) == (5, 8)
    assert keys(eval_) == keys(eval_full)
    assert len(load_cauldron(cauldron, "cocoqa", test_size=8, max_train_samples=1000)[0]) == ROWS - 8


def test_rows_are_messages_with_the_image_leading_the_question(cauldron):
    train, _ = load_cauldron(cauldron, "cocoqa", test_size=4)
    row = train[0]
    user, assistant = json.loads(row["messages"])
    assert user["content"][0] == {"type": "image"} and user["content"][1]["text"].endswith("?")
    assert assistant == {"role": "assistant", "content": assistant["content"]} and assistant["content"] in COLOURS
    image = PILImage.open(io.BytesIO(row["images"][0]["bytes"])).convert("RGB")
    assert max(abs(a - b) for a, b in zip(image.getpixel((5, 5)), COLOURS[assistant["content"]])) <= 8
    assert row["source"] == "cocoqa" and row["origin"].startswith("cocoqa#") and row["problem"] is None


def test_all_with_some_subsets_present_warns(cauldron):
    with pytest.warns(UserWarning) as record:
        train, eval_ = load_cauldron(cauldron, "all", test_size=8)
    message = str(record[0].message)
    missing = [s for s in ALL_SUBSETS if s not in ("cocoqa", "ai2d")]
    assert all(f"{s}:" in message for s in missing) and "cocoqa:" not in message and "ai2d:" not in message
    assert "download_resource.sh " + " ".join(missing) in message
    assert len(train) + len(eval_) == 2 * ROWS


def test_corrupt_parquet_warns_naming_subset(cauldron):
    path = glob.glob(os.path.join(cauldron, "ai2d", "train-*.parquet"))[0]
    with open(path, "wb") as f:
        f.write(b"this is not parquet")
    with pytest.warns(UserWarning, match="ai2d"):
        train, eval_ = load_cauldron(cauldron, "cocoqa,ai2d", test_size=4)
    assert len(train) + len(eval_) == ROWS


def test_wrong_columns_warns(cauldron):
    os.makedirs(os.path.join(cauldron, "odd"))
    Dataset.from_dict({"image": [1], "text": ["x"]}).to_parquet(os.path.join(cauldron, "odd", "train-0.parquet"))
    with pytest.warns(UserWarning, match=r"odd: ValueError: missing columns \['images', 'texts'\]"):
        load_cauldron(cauldron, "cocoqa,odd", test_size=4)


def test_texts_without_source_are_cast(cauldron):
    turn = {"user": datasets.Value("string"), "assistant": datasets.Value("string")}
    features = datasets.Features({"images": FEATURES["images"], "texts": datasets.List(turn)})
    rows = Dataset.from_parquet(glob.glob(os.path.join(cauldron, "ai2d", "*.parquet"))).to_dict()
    rows["texts"] = [[{"user": t["user"], "assistant": t["assistant"]} for t in ts] for ts in rows["texts"]]
    os.makedirs(os.path.join(cauldron, "nosource"))
    Dataset.from_dict(rows, features=features).to_parquet(os.path.join(cauldron, "nosource", "train-0.parquet"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, eval_ = load_cauldron(cauldron, "cocoqa,nosource", test_size=4)
    assert train.features == ROW_FEATURES and len(train) + len(eval_) == 2 * ROWS


def test_missing_data_dir_raises(tmp_path):
    with pytest.raises(DataError, match="download_resource.sh cocoqa") as e:
        load_cauldron(str(tmp_path / "nowhere"), "cocoqa")
    assert "nowhere" in str(e.value)


def test_no_subset_loaded_raises(cauldron):
    with pytest.raises(DataError, match="download_resource.sh docvqa dvqa") as e:
        load_cauldron(cauldron, "docvqa,dvqa")
    assert cauldron in str(e.value) and "docvqa:" in str(e.value)


def test_images_stay_undecoded_for_the_collator(tmp_path):
    """A row with undecodable image bytes loads as it is stored; the collator names or skips it."""
    paths = write_synthetic_cauldron(tmp_path / "c", subsets=("cocoqa",), rows_per_subset=10)
    good = Dataset.from_parquet(str(paths[0])).to_dict()
    good["images"][0] = [{"bytes": b"not an image", "path": None}]
    Dataset.from_dict(good, features=FEATURES).to_parquet(str(paths[0]))

    train, eval_ = load_cauldron(str(tmp_path / "c"), "cocoqa", test_size=0)
    assert len(train) == 10 and len(eval_) == 0
    assert sum(row["images"][0]["bytes"] == b"not an image" for row in train) == 1
    assert all(row["images"][0]["bytes"].startswith(b"\x89PNG") for row in train if row["images"][0]["bytes"] != b"not an image")


def test_test_size_too_large_raises(cauldron):
    with pytest.raises(DataError, match="test_size"):
        load_cauldron(cauldron, "cocoqa", test_size=ROWS)


