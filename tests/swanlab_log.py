"""What a run logged to SwanLab without an account: the `swanlab_dir` fixture points SwanLab at a test folder
in offline mode (the mode docs/training.md offers for no account) and `scalars` reads back the run's record
file with the reader `swanlab sync` uploads from, so a test sees each key's values as the SwanLab board would."""

import pytest
import swanlab
from swanlab.proto.swanlab.record.v1.record_pb2 import Record
from swanlab.sdk.internal.core_python.store import DataStoreReader


@pytest.fixture
def swanlab_dir(monkeypatch, tmp_path):
    """SwanLab's log folder for a run in this process; the run (left open by train.main) ends with the test."""
    monkeypatch.setenv("SWANLAB_MODE", "offline")
    monkeypatch.setenv("SWANLAB_LOG_DIR", str(tmp_path / "swanlog"))
    yield tmp_path / "swanlog"
    if swanlab.has_run():
        swanlab.finish()


def scalars(log_dir):
    """{key: {step: value}} of the one run under log_dir, finished first so that all of it is written."""
    if swanlab.has_run():
        swanlab.finish()
    [record_file] = log_dir.glob("run-*/run-*.swanlab")
    reader = DataStoreReader()
    reader.open(record_file)
    logged = {}
    for data in reader:
        record = Record()
        record.ParseFromString(data)
        if record.HasField("scalar"):
            logged.setdefault(record.scalar.key, {})[record.scalar.step] = record.scalar.value.number
    reader.close()
    return logged
