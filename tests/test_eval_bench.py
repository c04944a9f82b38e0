"""eval_bench.py and qwen3_smvl/evaluation/harness_model.py: lmms-eval's own task definitions and metrics on tiny copies of
textvqa_val (VQA accuracy), docvqa_val (ANLS) and mmbench_cn_dev (multiple choice, Chinese) in
their hub layout, answered by the tiny stitched checkpoint or by it with its generate() output
replaced by gold (or wrong) answers wrapped in what the real path must strip."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from qwen3_smvl import inference, tiny
from qwen3_smvl.evaluation import benchmarks
from qwen3_smvl.evaluation.harness_model import Qwen3SmVL

import eval_bench
from conftest import HF_CACHE
from test_download import SYSTEM_PATH, calls, run

TASKS = ["textvqa_val", "docvqa_val", "mmbench_cn_dev"]


@pytest.fixture(scope="module")
def bench_copies(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    return root, tiny.write_benchmark_copies(root, TASKS)


@pytest.fixture(scope="module")
def configs(bench_copies):
    return benchmarks.task_configs(benchmarks.task_manager(), TASKS, bench_copies[0])


class ScriptedAnswers(Qwen3SmVL):
    """The real class with only generate()'s output replaced: after each prompt, a think block, the
    scripted answer to the prompt's question, the task's `until` string, an end of turn and more text,
    which the real path must cut away before the task's scorer sees the answer."""

    def __init__(self, pretrained, answers, **kwargs):
        super().__init__(pretrained, **kwargs)
        self.answers = {question.lower(): answer for question, answer in answers.items()}
        self.asked = []  # the questions of the rows the harness read, in order

    def answer_batch(self, contexts, visuals, gen_kwargs):
        until = gen_kwargs.get("until") or []
        self.until = [until] if isinstance(until, str) else until
        return super().answer_batch(contexts, visuals, gen_kwargs)

    def _generate(self, inputs, generate_kwargs):
        rows = []
        for prompt_ids in inputs["input_ids"]:
            prompt = self.tokenizer.decode(prompt_ids).lower()
            question = next(q for q in self.answers if q in prompt)
            self.asked.append(question)
            answer = self.answers[question]
            after = f"{self.until[0]} and more" if self.until else ""
            text = f"<think>\nlooking\n</think>\n\n{answer}{after}<|im_end|>\n<|im_start|>user\nnext"
            rows.append(torch.cat([prompt_ids, torch.tensor(self.tokenizer.encode(text))]))
        width = max(len(row) for row in rows)
        return torch.stack([torch.nn.functional.pad(row, (0, width - len(row)), value=self.pad_id) for row in rows])


def relabel(folder, suffix):
    """Rewrites each parquet shard under `folder` with `suffix` after every question (what a re-download
    of a changed dataset does to the files); -> {question: its row} (each split of a tiny copy asks the same)."""
    rows = {}
    for shard in sorted(Path(folder).rglob("*.parquet")):
        table = pq.read_table(shard)
        index = table.schema.get_field_index("question")
        questions = [f"{question} {suffix}" for question in table["question"].to_pylist()]
        table = table.set_column(index, table.schema.field(index), [questions])
        pq.write_table(table, shard)
        rows.update({question: row for question, row in zip(questions, table.to_pylist())})
    return rows


def wrong(answer):
    return {"A": "B", "B": "C", "C": "D", "D": "A"}.get(answer, "purple")


def test_gold_answers_score_100_and_wrong_answers_0_through_the_harness(stitched_dir, bench_copies, configs):
    gold = {question: answer for _, answers in bench_copies[1].values() for question, answer in answers.items()}
    right = ScriptedAnswers(stitched_dir, gold, batch_size=2)
    scores, results = benchmarks.evaluate(right, configs, output_path=stitched_dir)
    assert scores == {task: 100.0 for task in TASKS}, results
    scores, _ = benchmarks.evaluate(ScriptedAnswers(stitched_dir, {q: wrong(a) for q, a in gold.items()}), configs,
                                    output_path=stitched_dir)
    assert scores == {task: 0.0 for task in TASKS}


def test_two_copies_with_one_name_and_a_rewritten_copy_each_score_their_own_rows(stitched_dir, tmp_path):
    """datasets caches a README-configs folder under its name: x/.../textvqa and y/.../textvqa must not
    share rows, and a copy downloaded again must be read anew."""
    repo = tiny.BENCHMARK_COPIES["textvqa_val"][0]
    gold = {}
    for place in ("x", "y"):
        tiny.write_benchmark_copies(tmp_path / place, tasks=("textvqa_val",), rows=2)
        gold[place] = relabel(tmp_path / place / repo, f"(copy {place})")

    def asked(place):
        answers = {question: row["answers"][0] for copy in gold.values() for question, row in copy.items()}
        model = ScriptedAnswers(stitched_dir, answers, batch_size=2)
        configs = benchmarks.task_configs(benchmarks.task_manager(), ["textvqa_val"], tmp_path / place)
        scores, _ = benchmarks.evaluate(model, configs, output_path=tmp_path)
        return scores, model.asked

    for place in ("x", "y"):
        assert asked(place) == ({"textvqa_val": 100.0}, [question.lower() for question in gold[place]])
    gold["y"] = relabel(tmp_path / "y" / repo, "(downloaded again)")
    assert asked("y") == ({"textvqa_val": 100.0}, [question.lower() for question in gold["y"]])


def test_the_suite_reads_and_writes_its_own_datasets_caches():
    """Here, in lmms-eval's choice of cache and in a process a test launches: never the user's."""
    import datasets
    from lmms_eval.api.task import _resolve_hf_datasets_cache_dir

    child = subprocess.run([sys.executable, "-c", "import datasets; print(datasets.config.HF_DATASETS_CACHE)"],
                           capture_output=True, text=True, check=True)
    for cache in (datasets.config.HF_DATASETS_CACHE, _resolve_hf_datasets_cache_dir(), child.stdout.strip()):
        assert Path(cache).is_relative_to(HF_CACHE), cache


@pytest.fixture(scope="module")
def lively_dir(stitched_dir, tmp_path_factory):
    """The stitched checkpoint with larger random weights: its greedy replies differ from token to
    token and from prompt to prompt (the small initialisation answers every prompt with newlines)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(stitched_dir)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() > 1:
                weight.copy_(torch.randn(weight.shape, generator=generator) * 0.3)
    out = tmp_path_factory.mktemp("lively")
    model.save_pretrained(out)
    AutoProcessor.from_pretrained(stitched_dir).save_pretrained(out)
    return out


def test_batch_of_two_answers_as_each_alone(lively_dir):
    model = Qwen3SmVL(lively_dir, device="cpu")
    images = [[Image.new("RGB", (32, 32), "red")], [Image.new("RGB", (24, 40), "blue")]]
    contexts = ["What colour is it?", "Which colour fills this picture, and how bright is that colour?"]
    settings = {"max_new_tokens": 6, "temperature": 0, "do_sample": False}
    together = model.answer_batch(contexts, images, settings)
    alone = [model.answer_batch([c], [i], settings)[0] for c, i in zip(contexts, images)]
    assert together == alone
    assert together[0] != together[1] and all(len(set(answer)) > 3 for answer in together)


def test_prompt_and_inputs_are_infer_py_s(stitched_dir):
    model = Qwen3SmVL(stitched_dir, device="cpu")
    image = Image.new("RGB", (32, 32), "green")
    question = "What colour is it?\nAnswer the question using a single word or phrase."
    expected = inference.render_prompt(model.processor, inference.build_messages(question))
    assert model.prompt(question, 1) == expected
    assert expected.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    ours = model.inputs([question], [[image]])
    theirs = model.processor(text=[expected], images=[[image]], return_tensors="pt")
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["pixel_values"], theirs["pixel_values"])
    image_part = model.processor.image_token  # one per image; the processor expands each to its tiles
    assert model.prompt("Compare them.", 2).startswith(f"<|im_start|>user\n{image_part}{image_part}Compare them.")


def test_generation_settings_follow_the_task():
    model = Qwen3SmVL.__new__(Qwen3SmVL)
    model.pad_id, model._warned = 0, set()
    kwargs, until = model.generation_settings({"until": "ASSISTANT:", "max_new_tokens": 16, "temperature": 0,
                                               "do_sample": False, "image_aspect_ratio": "original"})
    assert until == ["ASSISTANT:"] and kwargs == {"do_sample": False, "max_new_tokens": 16, "pad_token_id": 0}
    kwargs, _ = model.generation_settings({"temperature": 0.7, "do_sample": True, "top_p": 0.9})
    assert kwargs["do_sample"] and kwargs["temperature"] == 0.7 and kwargs["top_p"] == 0.9


def test_registered_with_lmms_eval():
    from lmms_eval.models import get_model

    assert get_model("qwen3_smvl") is Qwen3SmVL


def test_baseline_prints_both_columns_and_saves_them(stitched_dir, lively_dir, bench_copies, capsys):
    eval_bench.main(["--model", str(stitched_dir), "--baseline", str(lively_dir), "--tasks", "docvqa_val",
                     "--limit", "2", "--batch_size", "2", "--data_dir", str(bench_copies[0])])
    out = capsys.readouterr().out
    header = f"| task | {stitched_dir.name} | {lively_dir.name} | Δ {lively_dir.name} |"
    assert header in out and "| docvqa_val | " in out
    lines = out.strip().splitlines()
    assert lines[-4].startswith("bench: docvqa_val ") and " (and 1 baseline), " in lines[-4] and lines[-3] == "next:"
    saved = json.loads((stitched_dir / "bench_results.json").read_text())
    assert list(saved["scores"]) == [stitched_dir.name, lively_dir.name]
    assert header in (stitched_dir / "bench_results.md").read_text()


def test_markdown_table_has_a_difference_column_per_later_checkpoint():
    table = benchmarks.markdown_table({"graft": {"textvqa_val": 50.0, "mmlu": 40.0},
                                       "SmolVLM2": {"textvqa_val": 62.5, "mmlu": None}})
    assert table.splitlines() == ["| task | graft | SmolVLM2 | Δ SmolVLM2 |", "|---|---|---|---|",
                                  "| textvqa_val | 50.0 | 62.5 | +12.5 |", "| mmlu | 40.0 | - | - |"]


def test_a_missing_dataset_is_refused_in_one_line_before_loading(stitched_dir, tmp_path):
    with pytest.raises(SystemExit) as refusal:
        eval_bench.main(["--model", str(stitched_dir), "--tasks", "chartqa", "--data_dir", str(tmp_path)])
    message = str(refusal.value)
    assert message == (f"eval_bench.py: chartqa: its dataset lmms-lab-encoder/ChartQA is not in "
                       f"{tmp_path / 'lmms-lab-encoder/ChartQA'}; fetch it with: bash download_resource.sh --bench chartqa")


def drop_split(readme, split):
    """The README's configs without `split` (a copy whose card lost the split a task scores)."""
    text = readme.read_text()
    entry = next(line for line in text.splitlines() if line.strip() == f"- split: {split}")
    path = text.splitlines()[text.splitlines().index(entry) + 1]
    readme.write_text(text.replace(f"{entry}\n{path}\n", ""))


def test_a_copy_that_does_not_open_as_lmms_eval_opens_it_is_refused_before_loading(stitched_dir, tmp_path):
    """A shard its README lists is gone; a README without the split the task scores: a line each, the fix named."""
    copies = tiny.write_benchmark_copies(tmp_path, tasks=("textvqa_val", "docvqa_val"), rows=2)
    textvqa, docvqa = copies["textvqa_val"][0], copies["docvqa_val"][0]
    (textvqa / "data" / "validation-00000-of-00001.parquet").unlink()
    drop_split(docvqa / "README.md", "validation")
    with pytest.raises(SystemExit) as refusal:
        eval_bench.main(["--model", str(stitched_dir), "--tasks", "textvqa_val,docvqa_val", "--data_dir", str(tmp_path)])
    textvqa_line, docvqa_line = str(refusal.value).removeprefix("eval_bench.py: ").splitlines()
    assert textvqa_line.startswith(f"textvqa_val: its copy {textvqa} does not open as lmms-eval opens it (DataFilesNotFoundError: ")
    assert textvqa_line.endswith("; fetch it with: bash download_resource.sh --bench textvqa_val")
    assert docvqa_line == (f"docvqa_val: its copy {docvqa} does not open as lmms-eval opens it (no validation split "
                           "(config DocVQA has test)); fetch it with: bash download_resource.sh --bench docvqa_val")


def test_an_unknown_task_gets_the_close_names(stitched_dir):
    with pytest.raises(SystemExit, match=r"unknown task 'textvqa_vall'; did you mean textvqa_val"):
        eval_bench.main(["--model", str(stitched_dir), "--tasks", "textvqa_vall"])


def test_a_checkpoint_that_is_neither_graft_nor_smolvlm_is_named(tiny_qwen_dir):
    with pytest.raises(SystemExit, match=r"is a qwen3 checkpoint, not a Qwen3-SmVL graft or SmolVLM"):
        eval_bench.main(["--model", str(tiny_qwen_dir), "--tasks", "docvqa_val"])


# A stub `hf` that logs its argv and leaves a parquet file where the dataset's files would go.
HF_STUB = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(json.dumps(["hf"] + args) + "\\n")
folder = args[args.index("--include") + 1].split("/")[0] if "--include" in args else "data"
os.makedirs(os.path.join(args[args.index("--local-dir") + 1], folder), exist_ok=True)
open(os.path.join(args[args.index("--local-dir") + 1], folder, "test-00000-of-00001.parquet"), "w").close()
"""


def test_download_resource_fetches_each_suite_task_s_dataset_where_eval_bench_reads_it(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "hf").write_text(HF_STUB)
    (bin_dir / "hf").chmod(0o755)
    result = run(tmp_path, "--bench", path=f"{bin_dir}:{SYSTEM_PATH}")
    assert result.returncode == 0, result.stderr
    manager = benchmarks.task_manager()
    for task, call in zip(benchmarks.DEFAULT_SUITE, calls(tmp_path), strict=True):
        source = manager._get_config(task)["dataset_path"]
        assert call[:5] == ["hf", "download", source, "--repo-type", "dataset"]
        assert call[call.index("--local-dir") + 1] == str(benchmarks.local_copy(benchmarks.DEFAULT_DATA_DIR, source))
    mmbench = [call for call in calls(tmp_path) if call[2] == "lmms-lab-encoder/MMBench"]
    assert [call[call.index("--include") + 1] for call in mmbench] == ["en/dev-*", "cn/dev-*"]
    assert (tmp_path / benchmarks.DEFAULT_DATA_DIR / "lmms-lab-encoder/MMBench/.complete.mmbench_cn_dev").is_file()
    unknown = run(tmp_path, "--bench", "textvqa_vall", path=f"{bin_dir}:{SYSTEM_PATH}")
    assert unknown.returncode == 2 and "no download known for task textvqa_vall" in unknown.stderr
