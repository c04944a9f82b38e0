"""Publishing a trained model to the Hugging Face Hub or ModelScope: the checks, then the upload with
each site's own client (huggingface_hub's HfApi, ModelScope's HubApi). The command is publish.py:

    python publish.py --model model/freeze_llm_vlm_cocoqa --to hf:USER/NAME [--public] [--overwrite]
    python publish.py --model model/freeze_llm_vlm_cocoqa --to modelscope:USER/NAME

Everything that can refuse is checked before the first byte goes up, in this order: the directory (a
complete standalone checkpoint, not a checkpoint-N folder, with a model card or the run summary to
write one from), the token, the site (reachable, the token accepted), and the name (taken: refused
without --overwrite). The card is rendered again with the repo's id, so its usage snippet names it.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from qwen3_smvl import model_card

SITES = {"hf": "the Hugging Face Hub", "modelscope": "ModelScope"}
TARGET = re.compile(r"(hf|modelscope):([A-Za-z0-9][\w.-]*/[\w.-]+)")
CHECKPOINT_FOLDER = re.compile(r"(incomplete-)?checkpoint-\d+")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# Left out of the upload: training state and logs that are not part of the model.
IGNORED = ["checkpoint-*", "checkpoint-*/**", "incomplete-checkpoint-*/**", "runs/**", "swanlog/**", "adapter/**",
           "training_args.bin", ".cache/**", "**/.ipynb_checkpoints/**"]
HF_LOGIN = "run `hf auth login` (or set HF_TOKEN) with a token that can write: https://huggingface.co/settings/tokens"
MS_LOGIN = ("set MODELSCOPE_API_TOKEN (or run `modelscope login --token TOKEN`) with your SDK token: "
            "https://modelscope.cn/my/myaccesstoken")


class PublishError(ValueError):
    """The model cannot be published as asked; nothing was uploaded."""


@dataclass
class Target:
    site: str  # "hf" or "modelscope"
    repo_id: str

    @classmethod
    def parse(cls, text):
        found = TARGET.fullmatch(text or "")
        if not found:
            raise PublishError(f"--to {text!r}: expected hf:USER/NAME or modelscope:USER/NAME")
        return cls(*found.groups())


def check_model_dir(model_dir):
    """Refuses what is not a complete standalone checkpoint that plain transformers loads with its
    processor and chat template, naming what is missing and how to get it."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise PublishError(f"--model {model_dir} is not a directory")
    if CHECKPOINT_FOLDER.fullmatch(model_dir.name):
        raise PublishError(f"{model_dir} is a training checkpoint (weights with optimizer state, saved during the run), "
                           f"not the final model: publish {model_dir.parent}, where train.py saves the standalone model "
                           "at the end (a run stopped early: run the same train.py command again to finish it)")
    missing = [what for what, names in (("config.json", ("config.json",)), ("weights", WEIGHT_FILES),
                                        ("processor", PROCESSOR_FILES), ("tokenizer", TOKENIZER_FILES))
               if not any((model_dir / name).is_file() for name in names)]
    if missing:
        raise PublishError(f"{model_dir} is not a complete standalone checkpoint: no {', no '.join(missing)} "
                           "(train.py, stitch.py and lora merges write all of them; a checkpoint-N folder or an "
                           "adapter folder is not enough)")
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(model_dir)
    except (OSError, ValueError) as error:
        raise PublishError(f"{model_dir}: its processor does not load: {error}")
    if not getattr(processor, "chat_template", None):
        raise PublishError(f"{model_dir} has no chat template (chat_template.jinja): the model would not know its "
                           "prompt format; save the processor with one (stitch.py / train.py do)")
    if not (model_dir / model_card.SUMMARY_FILE).is_file() and not (model_dir / model_card.CARD_FILE).is_file():
        raise PublishError(f"{model_dir} has no model card (README.md) and no {model_card.SUMMARY_FILE} to write one "
                           "from (train.py writes both); write a README.md first")


def hf_api():
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not token:
        raise PublishError(f"no Hugging Face token: {HF_LOGIN}")
    return HfApi(token=token)


def modelscope_api():
    # modelscope 1.40's HubApi delegates to modelscope_hub's, whose own methods (whoami, create_repo) are used here
    from modelscope_hub import HubApi, get_default_config

    if not get_default_config().token:  # what HubApi sends: MODELSCOPE_API_TOKEN, else the saved login
        raise PublishError(f"no ModelScope token: {MS_LOGIN}")
    return HubApi()


def check_site(site, api):
    """The site answers and accepts the token (one authenticated request)."""
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
    from modelscope_hub.errors import AuthenticationError, HubError

    where = api.endpoint if site == "hf" else page_root(site)
    try:
        return api.whoami()["name"] if site == "hf" else api.whoami().username
    except OfflineModeIsEnabled:
        raise PublishError("HF_HUB_OFFLINE is set: unset it to publish")
    except (HfHubHTTPError, AuthenticationError) as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        if site == "modelscope" or status in (401, 403):
            raise PublishError(f"{SITES[site]} refused the token ({error}): "
                               f"{HF_LOGIN if site == 'hf' else MS_LOGIN}")
        raise PublishError(f"{SITES[site]} answered with an error: {error}")
    except (OSError, HubError, httpx2.TransportError) as error:
        raise PublishError(f"cannot reach {where} ({type(error).__name__}: {error}); check the network "
                           "(and HTTPS_PROXY, HF_ENDPOINT / MODELSCOPE_ENDPOINT)")


def page_root(site):
    from modelscope_hub import get_default_config

    return get_default_config().endpoint


def repo_exists(target, api):
    return api.repo_exists(target.repo_id) if target.site == "hf" else api.repo_exists(target.repo_id, "model")


def plan(model_dir, to, overwrite=False):
    """(Target, the site's API client) once every check passed."""
    target = Target.parse(to)
    check_model_dir(model_dir)
    api = hf_api() if target.site == "hf" else modelscope_api()
    user = check_site(target.site, api)
    if repo_exists(target, api) and not overwrite:
        raise PublishError(f"{target.repo_id} already exists on {SITES[target.site]}; --overwrite uploads into it "
                           "(files of the same name are replaced, others kept), or choose another name")
    return target, api, user


def upload(target, api, model_dir, public=False):
    """Creates the repo (private unless public) if needed and uploads model_dir; returns the page's address."""
    message = "Upload Qwen3-SmVL model with publish.py"
    if target.site == "hf":
        url = api.create_repo(target.repo_id, private=not public, exist_ok=True)
        api.upload_folder(repo_id=target.repo_id, folder_path=str(model_dir), commit_message=message,
                          ignore_patterns=IGNORED)
        return str(url)
    from modelscope_hub.errors import AlreadyExistsError

    try:
        api.create_repo(target.repo_id, "model", visibility="public" if public else "private",
                        license=model_card.LICENSE)
    except AlreadyExistsError:
        pass  # --overwrite: checked in plan()
    api.upload_folder(target.repo_id, "model", str(model_dir), commit_message=message, ignore_patterns=IGNORED)
    return f"{page_root(target.site)}/models/{target.repo_id}"


def publish(model_dir, to, public=False, overwrite=False):
    """Checks everything, writes the card with the repo's id, uploads; returns the page's address."""
    target, api, _ = plan(model_dir, to, overwrite)
    card = model_card.refresh_card(model_dir, repo_id=target.repo_id)  # its usage snippet names the repo
    if card:
        print(f"model card: {card}")
    return upload(target, api, model_dir, public)
