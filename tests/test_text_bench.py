"""Forgetting through eval_bench.py (qwen3_smvl/evaluation/text_bench.py) on tiny checkpoints: lm-eval tasks read from a tiny
local copy in its hub layout, the graft (whole model, no image) against a Qwen3, beside an image task in
the same command, both tables, and the refusals of both kinds before any model loads."""

import json

import pyarrow.parquet as pq
import pytest
import torch
from lm_eval.api.instance import Instance
from transformers import AutoProcessor, AutoTokenizer

from qwen3_smvl import inference, tiny
from qwen3_smvl.evaluation import text_bench

import eval_bench
from conftest import REPO
from test_eval_bench import drop_split, relabel

TASK = "mmlu_abstract_algebra"
GROUP = "mmlu_social_sciences"  # a group of 12 MMLU subjects (a tag of tasks under it), aggregated by lm-eval


def with_chat_template(model_dir):
    """The stand-in tokenizer (no shared assets) has no chat template; give it Qwen3's rendering."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if not tokenizer.chat_template:
        tokenizer.chat_template = (REPO / "chat_template.jinja").read_text()
        tokenizer.save_pretrained(model_dir)
    return model_dir


@pytest.fixture(scope="module")
def bench_data(tmp_path_factory):
    """cais/mmlu with TASK's subject and GROUP's, a few questions each."""
    root = tmp_path_factory.mktemp("text_bench")
    index = text_bench.task_index().task_index
    subjects = [text_bench.task_config(index[task])["dataset_name"] for task in [TASK, *text_bench.leaf_tasks(index, GROUP)]]
    tiny.write_tiny_mmlu(root, subjects, rows=2)
    return root


@pytest.fixture(scope="module")
def other_qwen_dir(tmp_path_factory, qwen_tokenizer_dir):
    """A Qwen3 that is not the graft's own (another seed), so that the two columns can differ."""
    return with_chat_template(tiny.build_tiny_qwen(tmp_path_factory.mktemp("base_qwen"), qwen_tokenizer_dir, seed=1))


@pytest.fixture(scope="module")
def image_copies(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    tiny.write_benchmark_copies(root, tasks=("docvqa_val",), rows=2)
    return root


def test_one_command_runs_image_and_text_tasks_and_saves_both_tables(stitched_dir, other_qwen_dir, bench_data,
                                                                       image_copies, capsys):
    """eval_bench.py with --base_qwen: an image task, then a text group (each of its tasks reading the
    local copy, lm-eval aggregating them) and a text task on base Qwen3 and on the graft's text model."""
    eval_bench.main(["--model", str(stitched_dir), "--tasks", "docvqa_val", "--data_dir", str(image_copies),
                     "--base_qwen", str(other_qwen_dir), "--text_tasks", f"{GROUP},{TASK}",
                     "--text_data_dir", str(bench_data), "--limit", "1", "--batch_size", "8"])
    saved = json.loads((stitched_dir / "bench_results.json").read_text())
    graft, base = stitched_dir.name, other_qwen_dir.name
    assert list(saved["scores"]) == [graft] and list(saved["scores"][graft]) == ["docvqa_val"]
    results = saved["text_scores"]
    assert list(results) == [base, graft]
    assert all(list(scores) == [f"{GROUP} (acc)", f"{TASK} (acc)"] for scores in results.values()), results
    assert all(0 <= score <= 100 for scores in results.values() for score in scores.values())
    markdown = (stitched_dir / "bench_results.md").read_text()
    assert markdown.strip() in capsys.readouterr().out
    image_part, text_part = markdown.split("## Forgetting: text benchmarks against base Qwen3")
    assert image_part.startswith("## Image benchmarks") and f"| task | {graft} |" in image_part
    header, _, *rows = text_part.strip().splitlines()
    assert header == f"| task | {base} | {graft} | Δ {graft} |"
    for row, task in zip(rows, results[graft], strict=True):
        mine, theirs = results[graft][task], results[base][task]
        assert row == f"| {task} | {theirs:.1f} | {mine:.1f} | {mine - theirs:+.1f} |"


def test_two_copies_with_one_name_and_a_rewritten_copy_each_give_their_own_rows(tmp_path):
    """lm-eval builds the task from each cais/mmlu copy's own rows, and from a copy's new rows once it
    is downloaded again (datasets would cache every copy under the name mmlu)."""
    from lm_eval.tasks import get_task_dict

    subject = text_bench.task_config(text_bench.task_index().task_index[TASK])["dataset_name"]
    folders = {place: tiny.write_tiny_mmlu(tmp_path / place, [subject], rows=2) for place in ("x", "y")}

    def relabelled(place, suffix):  # -> the test split's questions, as lm-eval should read them
        relabel(folders[place], suffix)
        return pq.read_table(folders[place] / subject / "test-00000-of-00001.parquet")["question"].to_pylist()

    def questions(place):
        datasets = text_bench.datasets_of(text_bench.task_index(), [TASK])
        text_bench.check_opens(text_bench.task_index(), datasets, tmp_path / place)
        with text_bench.local_tasks([TASK], datasets, tmp_path / place) as manager:
            return list(get_task_dict([TASK], manager)[TASK].test_docs()["question"])

    gold = {place: relabelled(place, f"(copy {place})") for place in ("x", "y")}
    assert questions("x") == gold["x"] and questions("y") == gold["y"]
    gold["y"] = relabelled("y", "(downloaded again)")
    assert questions("y") == gold["y"]


def test_the_graft_scores_as_its_qwen3_would(stitched_dir, tiny_qwen_dir):
    """Stitching leaves Qwen3 untouched, so through the whole graft (no image) lm-eval must see the
    prompt infer.py renders and the log-likelihoods of the Qwen3 the graft was stitched from."""
    graft = text_bench.load_lm(stitched_dir, graft=True, batch_size=2, device="cpu")
    qwen = text_bench.load_lm(with_chat_template(tiny_qwen_dir), graft=False, batch_size=2, device="cpu")
    chat = [{"role": "user", "content": "What is 2 + 3?\nA. 4\nB. 5\nAnswer:"}]
    prompt = graft.apply_chat_template(chat)
    processor = AutoProcessor.from_pretrained(stitched_dir)
    assert prompt == inference.render_prompt(processor, inference.build_messages(chat[0]["content"], image=False))
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n") and prompt == qwen.apply_chat_template(chat)
    requests = [Instance("loglikelihood", {}, (prompt, choice), idx) for idx, choice in enumerate([" A", " B"])]
    mine, theirs = graft.loglikelihood(requests), qwen.loglikelihood(requests)
    assert torch.allclose(torch.tensor([ll for ll, _ in mine]), torch.tensor([ll for ll, _ in theirs]), atol=1e-5)


def test_refusals_of_both_kinds_come_together_before_any_model_loads(bench_data, image_copies, tmp_path):
    never_loaded = tmp_path / "no_such_model"
    with pytest.raises(SystemExit) as stop:
        eval_bench.main(["--model", str(never_loaded), "--tasks", "chartqa", "--data_dir", str(image_copies),
                         "--base_qwen", str(never_loaded), "--text_tasks", f"{TASK},gsm8k",
                         "--text_data_dir", str(bench_data)])
    assert str(stop.value).splitlines() == [
        f"eval_bench.py: {never_loaded} is not a model directory (no config.json)",
        f"chartqa: its dataset lmms-lab-encoder/ChartQA is not in {image_copies / 'lmms-lab-encoder/ChartQA'}; "
        "fetch it with: bash download_resource.sh --bench chartqa",
        f"gsm8k: dataset openai/gsm8k is not in {bench_data / 'openai/gsm8k'} (not there); "
        "run `bash download_resource.sh --text-bench gsm8k`"]


def test_a_copy_without_the_split_lm_eval_scores_is_refused_before_any_model_loads(stitched_dir, tiny_qwen_dir,
                                                                                   tmp_path):
    subject = text_bench.task_config(text_bench.task_index().task_index[TASK])["dataset_name"]
    folder = tiny.write_tiny_mmlu(tmp_path, [subject], rows=2)
    drop_split(folder / "README.md", "test")
    with pytest.raises(SystemExit) as stop:
        eval_bench.main(["--model", str(stitched_dir), "--tasks", "none", "--base_qwen", str(tiny_qwen_dir),
                         "--text_tasks", TASK, "--text_data_dir", str(tmp_path)])
    assert str(stop.value) == (f"eval_bench.py: {TASK}: task {TASK}'s copy {folder} does not open as lm-eval opens it "
                               f"(no test split (config {subject} has validation, dev)); "
                               f"run `bash download_resource.sh --text-bench {TASK}` again")


def test_unknown_text_task_and_wrong_checkpoints_are_named(stitched_dir, tiny_qwen_dir, bench_data, capsys):
    def refusal(*flags):
        with pytest.raises(SystemExit) as stop:
            eval_bench.main(["--tasks", "none", "--text_data_dir", str(bench_data), *flags])
        return str(stop.value)

    assert f"task {TASK} is in both mmlu and {TASK}" in refusal(
        "--model", str(stitched_dir), "--base_qwen", str(tiny_qwen_dir), "--text_tasks", f"mmlu,{TASK}")
    assert "mmlu_abstract_algebr (close: mmlu_abstract_algebra" in refusal(
        "--model", str(stitched_dir), "--base_qwen", str(tiny_qwen_dir), "--text_tasks", "mmlu_abstract_algebr")
    assert "is a qwen3 checkpoint, not a Qwen3-SmVL graft or SmolVLM" in refusal(
        "--model", str(tiny_qwen_dir), "--base_qwen", str(tiny_qwen_dir), "--text_tasks", TASK)
    assert f"--base_qwen {stitched_dir} is a vision-language checkpoint (smolvlm)" in refusal(
        "--model", str(stitched_dir), "--base_qwen", str(stitched_dir), "--text_tasks", TASK)
    assert refusal("--model", str(stitched_dir), "--text_tasks", TASK) == "2"  # argparse's exit status
    assert "--text_tasks compares with base Qwen3: add --base_qwen DIR" in capsys.readouterr().err


def test_print_text_datasets_names_each_hub_dataset_once(capsys):
    eval_bench.main(["--print_text_datasets", "--text_tasks", f"{GROUP},{TASK},gsm8k"])
    assert capsys.readouterr().out.splitlines() == ["cais/mmlu", "openai/gsm8k"]
