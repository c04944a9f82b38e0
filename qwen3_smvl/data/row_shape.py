"""The one row shape that every reader writes and the collator, evaluation, the demo and the data check read:

    {"messages": JSON text of [{"role", "content": str | [{"type": "text", "text"} | {"type": "image"}
                                                        | {"type": "video"}], ...}],
     "tools": JSON text of the row's tool list, or null,
     "images": [{"bytes", "path"}, ...]   one per {"type": "image"} part, in order, undecoded,
     "videos": [{"bytes", "path"}, ...]   one per {"type": "video"} part, in order, undecoded,
     "source": the source's name, "origin": "file:line" (JSONL) or "file#index",
     "problem": null, or "reason: cause" for a row that cannot be trained on,
     "ignored_keys": null, or the row's keys the reader does not understand,
     "rejected": null, or a preference row's rejected answer (text); its chosen answer is the last
                 assistant turn of "messages", which holds the prompt before it}

Rows with a problem are kept (so that a cached source still reports them) and dropped or refused by
data.load_data; the data check lists them.
"""

import pyarrow.compute as pc
from datasets import Features, Image, List, Value

ROW_FEATURES = Features({
    "messages": Value("string"), "tools": Value("string"), "images": List(Image(decode=False)),
    "videos": List({"bytes": Value("binary"), "path": Value("string")}),
    "source": Value("string"), "origin": Value("string"), "problem": Value("string"), "ignored_keys": Value("string"),
    "rejected": Value("string"),
})


class DataError(ValueError):
    """Training data that cannot be used; the message names the path (and row) and the cause."""


class RowProblem(ValueError):
    """A row that cannot be trained on; `reason` counts it, the message says why."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def problems_of(ds):
    """(indices of usable rows, [(origin, problem)]) from the problem column, without reading images."""
    problem = ds.data.column("problem")
    bad = pc.is_valid(problem).to_numpy(zero_copy_only=False)
    origins = ds.data.column("origin").filter(bad).to_pylist()
    return (~bad).nonzero()[0], list(zip(origins, problem.filter(bad).to_pylist()))


def ignored_keys(ds):
    """The keys some rows carry that the reader ignores, named once."""
    values = pc.unique(ds.data.column("ignored_keys").drop_null()).to_pylist()
    return sorted({key for value in values for key in value.split(",")})


def has_videos(ds):
    """Whether any row of `ds` holds a video, read from the videos column through any selection."""
    if "videos" not in ds.column_names:
        return False
    lengths = pc.list_value_length(ds.select_columns(["videos"]).with_format("arrow")[:]["videos"])
    return bool(pc.max(lengths).as_py())


def preference_problem(rejected, videos):
    """Why a row cannot train under stage dpo ("reason: cause"), or None."""
    if rejected is None:
        return "no rejected: stage dpo trains on preference rows ('chosen' and 'rejected' answers); this row has one answer"
    if videos:
        return "video in a preference row: stage dpo reads images only"
    return None
