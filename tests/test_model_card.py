"""The model card (README.md) a run writes, parsed with huggingface_hub as the Hub reads it; results that
eval_bench.py adds; publish.py's refusals before any upload, and the upload calls it makes."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.hf_api import RepoUrl

from qwen3_smvl import model_card, tiny

import eval_bench
import publish
import train
from conftest import REPO, free_port


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_smolvlm_dir, tiny_qwen_dir, cauldron_dir):
    """A tiny stage-1 run with held-out evaluation and one mid-run checkpoint."""
    tmp = tmp_path_factory.mktemp("card_run")
    config = {"smolvlm_path": str(tiny_smolvlm_dir), "qwen_path": str(tiny_qwen_dir), "data_dir": str(cauldron_dir),
              "train_data": ["cocoqa", "ai2d"], "test_size": 4, "max_steps": 2, "per_device_train_batch_size": 2,
              "learning_rate": 5e-3, "save_strategy": "steps", "save_steps": 2, "eval_strategy": "no",
              "report_to": "none", "use_cpu": True, "seed": 0, "demo_max_new_tokens": 0, "run_evaluation": True,
              "eval_max_new_tokens": 2, "text_eval_file": None, "output_dir": str(tmp / "run")}
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(config))
    train.main([str(tmp / "cfg.yaml")])
    return tmp / "run", config


def card_of(model_dir):
    return ModelCard.load(model_dir / "README.md")


def test_card_lists_donors_recipe_data_shares_and_results(trained):
    out, config = trained
    card = card_of(out)
    data = card.data.to_dict()
    assert data["base_model"] == ["HuggingFaceTB/SmolVLM2-256M-Video-Instruct", "Qwen/Qwen3-0.6B"]
    assert data["license"] == "apache-2.0" and data["pipeline_tag"] == "image-text-to-text"
    assert data["library_name"] == "transformers" and data["language"] == ["en", "zh"]
    assert data["datasets"] == ["HuggingFaceM4/the_cauldron"]
    text = card.text
    # the recipe's non-default keys, as set; paths of this machine are left out
    recipe = yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])
    for key in ("train_data", "test_size", "max_steps", "learning_rate", "run_evaluation", "use_cpu"):
        assert recipe[key] == config[key], key
    assert "smolvlm_path" not in recipe and "output_dir" not in recipe
    assert "stage 1: connector alignment" in text and "connector 5.00e-03" in text
    assert "2 optimizer steps, 4 samples" in text and "1 × CPU" in text
    # the data mix: each subset's training rows and share, as the run counted them (2 x 48 rows, 4 held out)
    summary = json.loads((out / "run_summary.json").read_text())
    rows = {entry["source"]: entry["rows"] for entry in summary["data_mix"]}
    assert rows.keys() == {"cocoqa", "ai2d"} and sum(rows.values()) == 92
    for source, count in rows.items():
        assert f"| {source} | HuggingFaceM4/the_cauldron | {count} | {100 * count / 92:.1f}% |" in text
    # the held-out VQA figures of eval_results.json
    overall = json.loads((out / "eval_results.json").read_text())["summary"]["overall"]
    assert f"| overall | {overall['n']} | {100 * overall['accuracy']:.1f}% |" in text
    assert 'AutoModelForImageTextToText.from_pretrained("USER/run"' in text and "enable_thinking" in text


def test_eval_bench_results_appear_in_the_card_and_its_model_index(trained, tmp_path):
    out, _ = trained
    model = shutil.copytree(out, tmp_path / "graft", ignore=shutil.ignore_patterns("checkpoint-*"))
    copies = tiny.write_benchmark_copies(tmp_path / "bench", ["docvqa_val"])
    assert "Benchmarks" not in card_of(model).text
    eval_bench.main(["--model", str(model), "--tasks", "docvqa_val", "--data_dir", str(tmp_path / "bench")])
    score = json.loads((model / "bench_results.json").read_text())["scores"]["graft"]["docvqa_val"]
    card = card_of(model)
    assert f"| docvqa_val | {score:.1f} |" in card.text
    result, = card.data.eval_results
    hub_id = copies["docvqa_val"][0].relative_to(tmp_path / "bench").as_posix()  # the task's hub dataset, as lmms-eval names it
    assert (result.dataset_type, result.dataset_name, result.metric_type) == (hub_id, "docvqa_val", "anls")
    assert result.metric_value == round(score, 2) and card.data.model_name == "graft"


def test_a_folder_that_is_not_ours_keeps_its_readme(stitched_dir, tmp_path):
    model = shutil.copytree(stitched_dir, tmp_path / "download")
    (model / "README.md").write_text("their card\n")
    assert model_card.refresh_card(model) is None
    assert (model / "README.md").read_text() == "their card\n"


def test_donor_ids_from_hub_ids_hub_cache_folders_and_init_from(trained, tmp_path):
    assert model_card.donors_of("me/SmolVLM-x", "/cache/models--Qwen--Qwen3-1.7B/snapshots/abc")[0] == \
        {"vision": "me/SmolVLM-x", "text": "Qwen/Qwen3-1.7B"}
    out, _ = trained
    donors, how = model_card.donors_of("unused", "unused", init_from=str(out))
    assert donors == model_card.DONORS and "run_summary.json" in how


def test_push_to_hub_is_refused_before_training_with_the_publish_command(trained, tmp_path):
    _, config = trained
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({**config, "output_dir": str(tmp_path / "out")}))
    with pytest.raises(SystemExit, match=r"python publish.py --model .*out --to hf:me/graft"):
        train.main([str(tmp_path / "cfg.yaml"), "--push_to_hub", "true", "--hub_model_id", "me/graft"])
    assert not (tmp_path / "out").exists()


@pytest.fixture
def no_uploads(monkeypatch):
    """Every upload call of both libraries fails the test."""
    from modelscope_hub import HubApi

    def forbidden(*args, **kwargs):
        pytest.fail("an upload API was called")

    for api, name in ((HfApi, "create_repo"), (HfApi, "upload_folder"), (HubApi, "create_repo"), (HubApi, "upload_folder")):
        monkeypatch.setattr(api, name, forbidden)


@pytest.fixture
def no_tokens(monkeypatch, tmp_path):
    from modelscope_hub import set_default_config

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "MODELSCOPE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no saved login
    monkeypatch.setenv("MODELSCOPE_HOME", str(tmp_path / "ms_home"))
    set_default_config(None)  # modelscope_hub reads its environment again
    yield
    set_default_config(None)


@pytest.mark.parametrize("site, fix", [("hf", "hf auth login"), ("modelscope", "MODELSCOPE_API_TOKEN")])
def test_no_token_is_refused_before_any_upload(trained, no_uploads, no_tokens, site, fix):
    with pytest.raises(SystemExit, match=f"no .* token: .*{fix}.*nothing was uploaded"):
        publish.main(["--model", str(trained[0]), "--to", f"{site}:me/graft"])


def test_a_checkpoint_folder_is_refused_naming_the_final_model(trained, no_uploads):
    out, _ = trained
    with pytest.raises(SystemExit, match=f"checkpoint-2 is a training checkpoint .* publish {out}, "):
        publish.main(["--model", str(out / "checkpoint-2"), "--to", "hf:me/graft"])


@pytest.mark.parametrize("drop, named", [("model.safetensors", "no weights"), ("processor_config.json", "no processor")])
def test_an_incomplete_directory_is_refused(trained, no_uploads, tmp_path, drop, named):
    model = shutil.copytree(trained[0], tmp_path / "graft", ignore=shutil.ignore_patterns("checkpoint-*", drop))
    with pytest.raises(SystemExit, match=f"not a complete standalone checkpoint: {named}"):
        publish.main(["--model", str(model), "--to", "modelscope:me/graft"])


def test_an_unreachable_site_is_refused(trained, tmp_path):
    """Through the command as typed, each library pointed at a closed local port by its own setting."""
    port = free_port()
    env = {**os.environ, "HF_TOKEN": "hf_unused", "HF_ENDPOINT": f"http://127.0.0.1:{port}",
           "MODELSCOPE_API_TOKEN": "unused", "MODELSCOPE_ENDPOINT": f"http://127.0.0.1:{port}"}
    for site in ("hf", "modelscope"):
        result = subprocess.run([sys.executable, REPO / "publish.py", "--model", trained[0], "--to", f"{site}:me/graft"],
                                capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 1
        assert f"cannot reach http://127.0.0.1:{port} " in result.stderr and "nothing was uploaded" in result.stderr


def test_a_taken_name_is_refused_without_overwrite(trained, no_uploads, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_unused")
    monkeypatch.setattr(HfApi, "whoami", lambda self, *a, **k: {"name": "me"})
    monkeypatch.setattr(HfApi, "repo_exists", lambda self, repo_id, *a, **k: repo_id == "me/graft")
    with pytest.raises(SystemExit, match="me/graft already exists on the Hugging Face Hub; --overwrite"):
        publish.main(["--model", str(trained[0]), "--to", "hf:me/graft"])


def test_upload_is_private_with_the_card_naming_the_repo(trained, tmp_path, monkeypatch, capsys):
    """The calls publish makes to huggingface_hub (its network side is not exercised: no local Hub exists)."""
    model = shutil.copytree(trained[0], tmp_path / "graft")
    calls = []
    monkeypatch.setenv("HF_TOKEN", "hf_unused")
    monkeypatch.setattr(HfApi, "whoami", lambda self, *a, **k: {"name": "me"})
    monkeypatch.setattr(HfApi, "repo_exists", lambda self, *a, **k: False)
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw))
                        or RepoUrl(f"https://huggingface.co/{repo_id}"))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw)))
    publish.main(["--model", str(model), "--to", "hf:me/graft"])
    assert calls[0] == ("create", "me/graft", {"private": True, "exist_ok": True})
    uploaded = calls[1][1]
    assert uploaded["repo_id"] == "me/graft" and uploaded["folder_path"] == str(model)
    assert "checkpoint-*/**" in uploaded["ignore_patterns"]
    assert 'from_pretrained("me/graft"' in (model / "README.md").read_text()
    assert capsys.readouterr().out.strip().endswith(f"published {model} -> https://huggingface.co/me/graft")


def test_gguf_export_into_the_model_lists_its_files_in_the_card(trained, tmp_path):
    import export_gguf
    from conftest import ASSETS

    try:
        export_gguf.llama_cpp_tools(None, None)
    except export_gguf.ExportError as error:
        pytest.skip(str(error))
    if not (ASSETS / "qwen3-0.6b" / "vocab.json").is_file():
        pytest.skip("llama.cpp's converter needs the real Qwen3 tokenizer (../shared/assets/qwen3-0.6b)")
    model = shutil.copytree(trained[0], tmp_path / "graft", ignore=shutil.ignore_patterns("checkpoint-*"))
    export_gguf.main(["--model", str(model), "--out", str(model / "gguf"), "--quant", "F16"])
    card = card_of(model)
    assert "gguf" in card.data.tags
    assert "llama-mtmd-cli -m gguf/text-F16.gguf --mmproj gguf/mmproj-F16.gguf" in card.text
