"""text_bench.py on tiny checkpoints: an lm-eval task read from a tiny local copy in its hub layout,
the graft (whole model, no image) against a Qwen3, the table, and the refusals before any model loads."""

import json

import pytest
import torch
from lm_eval.api.instance import Instance
from transformers import AutoProcessor, AutoTokenizer

import infer
import text_bench
import tiny
from conftest import REPO

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


def test_graft_against_base_on_a_local_group_prints_both_and_the_delta(stitched_dir, other_qwen_dir, bench_data,
                                                                        tmp_path, capsys):
    """A group (each of its tasks reading the local copy, lm-eval aggregating them) and a task."""
    out = tmp_path / "forgetting"
    text_bench.main(["--model", str(stitched_dir), "--base", str(other_qwen_dir), "--tasks", GROUP, TASK, "--limit", "1", "--batch_size", "8", "--device", "cpu", "--data_dir", str(bench_data),
                     "--out", str(out)])
    results = json.loads(out.with_suffix(".json").read_text())["results"]
    graft, base = stitched_dir.name, other_qwen_dir.name
    assert list(results) == [graft, base]
    assert all(list(scores) == [f"{GROUP} (acc)", f"{TASK} (acc)"] for scores in results.values()), results
    assert all(0 <= score <= 1 for scores in results.values() for score in scores.values())
    table = out.with_suffix(".md").read_text()
    assert table in capsys.readouterr().out
    header, _, *rows = table.splitlines()
    assert header == f"| task | {graft} | {base} | Δ {graft} − {base} |"
    for row, task in zip(rows, results[graft], strict=True):
        mine, theirs = results[graft][task], results[base][task]
        assert row == f"| {task} | {100 * mine:.1f} | {100 * theirs:.1f} | {100 * (mine - theirs):+.1f} |"


def test_the_graft_scores_as_its_qwen3_would(stitched_dir, tiny_qwen_dir):
    """Stitching leaves Qwen3 untouched, so through the whole graft (no image) lm-eval must see the
    prompt infer.py renders and the log-likelihoods of the Qwen3 the graft was stitched from."""
    graft = text_bench.load_lm(stitched_dir, graft=True, batch_size=2, device="cpu")
    qwen = text_bench.load_lm(with_chat_template(tiny_qwen_dir), graft=False, batch_size=2, device="cpu")
    chat = [{"role": "user", "content": "What is 2 + 3?\nA. 4\nB. 5\nAnswer:"}]
    prompt = graft.apply_chat_template(chat)
    processor = AutoProcessor.from_pretrained(stitched_dir)
    assert prompt == infer.render_prompt(processor, infer.build_messages(chat[0]["content"], image=False))
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n") and prompt == qwen.apply_chat_template(chat)
    requests = [Instance("loglikelihood", {}, (prompt, choice), idx) for idx, choice in enumerate([" A", " B"])]
    mine, theirs = graft.loglikelihood(requests), qwen.loglikelihood(requests)
    assert torch.allclose(torch.tensor([ll for ll, _ in mine]), torch.tensor([ll for ll, _ in theirs]), atol=1e-5)


def test_absent_data_is_refused_in_one_line_before_any_model_loads(bench_data, tmp_path):
    never_loaded = tmp_path / "no_such_model"
    with pytest.raises(SystemExit) as stop:
        text_bench.main(["--model", str(never_loaded), "--base", str(never_loaded), "--tasks", TASK, "gsm8k",
                         "--data_dir", str(bench_data)])
    assert str(stop.value) == (f"text_bench: gsm8k: dataset openai/gsm8k is not in {bench_data / 'openai/gsm8k'} "
                               "(not there); run `bash download_resource.sh --text-bench gsm8k`")


def test_unknown_task_and_wrong_checkpoints_are_named(stitched_dir, tiny_qwen_dir, bench_data):
    with pytest.raises(text_bench.BenchError, match=f"task {TASK} is in both mmlu and {TASK}"):
        text_bench.run(stitched_dir, tiny_qwen_dir, ["mmlu", TASK], bench_data)
    with pytest.raises(text_bench.BenchError, match=r"mmlu_abstract_algebr \(close: mmlu_abstract_algebra"):
        text_bench.run(stitched_dir, tiny_qwen_dir, ["mmlu_abstract_algebr"], bench_data)
    with pytest.raises(text_bench.BenchError, match=r"is not a graft \(model_type qwen3"):
        text_bench.run(tiny_qwen_dir, tiny_qwen_dir, [TASK], bench_data)
    with pytest.raises(text_bench.BenchError, match=r"--base .* is a vision-language checkpoint \(smolvlm\)"):
        text_bench.run(stitched_dir, stitched_dir, [TASK], bench_data)
