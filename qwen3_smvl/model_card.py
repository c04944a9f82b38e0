"""The model card (README.md) of a trained model, in the Hub's format, written from the run.

Any stage calls `write_card(output_dir, summary)` at its final save: the run's facts go to
`run_summary.json` next to the model, so the card can be rendered again later without the run.
`refresh_card(dir)` re-renders it when results are added to the same directory: `eval_results.json`
(held-out VQA, train.py's run_evaluation or eval_vqa.py), `bench_results.json` (eval_bench.py) and
GGUF files (export_gguf.py). A directory without run_summary.json is not ours (a download may have
its own README.md), so nothing is written there.

Metadata goes through huggingface_hub's ModelCardData (base_model, license, datasets, model-index);
the prose is model_card_template.md, rendered by ModelCard.from_template.
"""

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

CARD_FILE = "README.md"
SUMMARY_FILE = "run_summary.json"
TEMPLATE = Path(__file__).with_name("model_card_template.md")
# The donors the graft stands on; their hub ids when a run names them by a local path.
DONORS = {"vision": "HuggingFaceTB/SmolVLM2-256M-Video-Instruct", "text": "Qwen/Qwen3-0.6B"}
LICENSE = "apache-2.0"  # both donors' license
CAULDRON = "HuggingFaceM4/the_cauldron"
# Files download_resource.sh makes from a hub dataset, by name.
DOWNLOADED_DATASETS = {"sharegpt_zh_en.jsonl": "shareAI/ShareGPT-Chinese-English-90k"}
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
HUB_CACHE_FOLDER = re.compile(r"models--([\w.-]+?)--([\w.-]+)")
BENCH_TASK_TYPE = "image-text-to-text"


@dataclass
class RunSummary:
    """What the card says about a run, saved as run_summary.json. Any stage fills it in."""

    stage: str  # e.g. "stage 1: connector alignment", "GRPO"
    donors: dict  # {"vision": hub id, "text": hub id}
    donors_from: str  # how the donor ids were found (named in the card)
    recipe: dict  # the config keys that differ from their defaults, as set
    learning_rates: dict  # {part: learning rate} of the parts that trained
    lora: dict | None = None  # {"r", "alpha", "parts"} when adapters were trained and merged
    init_from: str | None = None
    data_mix: list = field(default_factory=list)  # [{"source", "rows", "dataset"}], training rows per source
    held_out_rows: int = 0
    steps: int = 0
    samples_seen: int = 0  # rows (packed rows with packing) through the optimizer steps
    packed: bool = False
    tokens_seen: int | None = None
    epochs: float | None = None
    hardware: str = ""
    train_seconds: float | None = None
    offline_demo: bool = False  # tiny random checkpoints and synthetic data

    def save(self, output_dir):
        path = Path(output_dir) / SUMMARY_FILE
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False, default=str) + "\n")
        return path

    @classmethod
    def load(cls, model_dir):
        return cls(**json.loads((Path(model_dir) / SUMMARY_FILE).read_text()))


def hub_id(path, default):
    """The hub id a donor path stands for: a hub id itself (not a local folder), a hub cache folder
    (models--ORG--NAME), else (a local download, such as download_resource.sh's model/...) the default donor's."""
    found = HUB_CACHE_FOLDER.search(str(path))
    if found:
        return f"{found[1]}/{found[2]}"
    if not Path(path).exists() and HUB_ID.fullmatch(str(path)):  # a run's donor paths exist when local
        return str(path)
    return default


def donors_of(smolvlm_path, qwen_path, init_from=None):
    """({"vision": id, "text": id}, how they were found). A run from init_from takes the donors its
    own run_summary.json names (a stitch.py output has none: the defaults)."""
    if init_from:
        summary = Path(init_from) / SUMMARY_FILE
        if summary.is_file():
            return RunSummary.load(init_from).donors, f"run_summary.json of {init_from}"
        return dict(DONORS), f"the default donors ({init_from} records none)"
    donors = {"vision": hub_id(smolvlm_path, DONORS["vision"]), "text": hub_id(qwen_path, DONORS["text"])}
    named = [path for path in (smolvlm_path, qwen_path) if hub_id(path, None)]
    how = "smolvlm_path and qwen_path" if len(named) == 2 else \
        "the default donors, for the local paths smolvlm_path and qwen_path" if not named else \
        "smolvlm_path / qwen_path where hub ids, the default donors for local paths"
    return donors, how


def hub_dataset_of(source_name, subset):
    """The hub dataset a train_data source comes from, when known."""
    return CAULDRON if subset else DOWNLOADED_DATASETS.get(Path(source_name).name)


def differences(parsed, defaults, skip=()):
    """{key: value} of every field of the dataclasses `parsed` whose value differs from the same
    field of `defaults` (the same classes parsed from an empty config), JSON-ready."""
    changed = {}
    for ours, default in zip(parsed, defaults):
        for key in (f.name for f in fields(ours) if f.init):
            value = getattr(ours, key)
            if key not in skip and value != getattr(default, key):
                changed[key] = json.loads(json.dumps(getattr(value, "value", value), default=str))
    return changed


def read_json(path):
    return json.loads(path.read_text()) if path.is_file() else None


def gguf_files(folder):
    """The GGUF files under folder (checkpoints excluded), relative to it."""
    folder = Path(folder)
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*.gguf")
                  if not path.relative_to(folder).parts[0].startswith(("checkpoint-", "incomplete-checkpoint-")))


def bench_eval_results(bench, model_name):
    """model-index entries of the model's own column of bench_results.json: the image benchmarks,
    each on its hub dataset, when they ran in full (a --limit run is not the benchmark's figure)."""
    if not bench or bench.get("limit") or not bench.get("scores"):
        return []
    own = next(iter(bench["scores"].values()))
    datasets, metrics = bench.get("datasets") or {}, bench.get("metrics") or {}
    return [EvalResult(task_type=BENCH_TASK_TYPE, dataset_type=datasets[task], dataset_name=task,
                       metric_type=metrics.get(task, "score"), metric_value=round(score, 2),
                       metric_name=f"{metrics.get(task, 'score')} (lmms-eval, eval_bench.py)")
            for task, score in own.items() if score is not None and task in datasets]


def card_data(summary, bench, model_name, ggufs):
    datasets = list(dict.fromkeys(entry["dataset"] for entry in summary.data_mix if entry.get("dataset")))
    tags = ["qwen3", "smolvlm", "vision-language-model", "multimodal", "qwen3-smvl"]
    tags += ["lora"] * bool(summary.lora) + ["gguf"] * bool(ggufs) + ["offline-demo"] * summary.offline_demo
    eval_results = bench_eval_results(bench, model_name)
    return ModelCardData(
        base_model=[summary.donors["vision"], summary.donors["text"]], license=LICENSE,
        pipeline_tag="image-text-to-text", library_name="transformers", datasets=datasets or None,
        language=["en", "zh"], tags=tags, model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
    )


def render(model_dir, output_dir=None, repo_id=None):
    """The ModelCard of model_dir (its config, run_summary.json and results), listing the GGUF files
    of output_dir (default: model_dir)."""
    model_dir = Path(model_dir)
    output_dir = Path(output_dir or model_dir)
    summary = RunSummary.load(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    bench = read_json(model_dir / "bench_results.json")
    ggufs = gguf_files(output_dir)
    name = repo_id.split("/")[-1] if repo_id else model_dir.resolve().name
    total_rows = sum(entry["rows"] for entry in summary.data_mix) or 1
    return ModelCard.from_template(
        card_data(summary, bench, name, ggufs), template_path=str(TEMPLATE),
        name=name, repo_id=repo_id or f"USER/{name}", model_dir=str(model_dir), s=summary,
        vision=config["vision_config"], text=config["text_config"], scale_factor=config.get("scale_factor", 1),
        shares=[{**entry, "share": entry["rows"] / total_rows} for entry in summary.data_mix],
        vqa=read_json(model_dir / "eval_results.json"), bench=bench, bench_tables=bench_tables(model_dir),
        ggufs=ggufs, mmprojs=[g for g in ggufs if Path(g).name.startswith("mmproj")],
    )


def bench_tables(model_dir):
    """eval_bench.py's markdown tables (the donor column, the forgetting table) as it saved them, a
    heading level down."""
    path = Path(model_dir) / "bench_results.md"
    return re.sub(r"^## ", "#### ", path.read_text().strip(), flags=re.MULTILINE) if path.is_file() else None


def write_card(output_dir, summary=None, model_dir=None, repo_id=None):
    """Saves `summary` (when given) as output_dir/run_summary.json and writes output_dir/README.md from
    model_dir's (default: output_dir's) files; repo_id: the repo its usage snippet loads. Returns the card's path."""
    if summary is not None:
        summary.save(output_dir)
    path = Path(output_dir) / CARD_FILE
    render(model_dir or output_dir, output_dir, repo_id).save(path)
    return path


def refresh_card(model_dir, output_dir=None, repo_id=None):
    """Re-renders the card after results were added; does nothing where model_dir has no
    run_summary.json (not a model trained here: its README.md, if any, is someone else's)."""
    if not (Path(model_dir) / SUMMARY_FILE).is_file():
        return None
    return write_card(output_dir or model_dir, model_dir=model_dir, repo_id=repo_id)
