"""The configuration reference, generated from train_config's argument dataclasses (their defaults and
help texts), so that it cannot drift from the code: the full table in docs/configuration.md and the
index of key names on the README's front page.

    python scripts/config_reference.py            # rewrite both
    python scripts/config_reference.py --check    # exit 1 when either is stale
"""

import argparse
import dataclasses
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qwen3_smvl.training import grpo_config as grpo, train_config  # noqa: E402

REFERENCE, README = REPO / "docs" / "configuration.md", REPO / "README.md"
BEGIN, END = "<!-- config-reference: begin (scripts/config_reference.py) -->", "<!-- config-reference: end -->"
PROJECT_CLASSES = train_config.ARGUMENT_CLASSES[:-1]  # the last is transformers' TrainingArguments
# TRL's keys a stage adds beside TrainingArguments' (stage: dpo -> DPOConfig's), with TRL's help texts
STAGE_KEYS = {"dpo": train_config.trainer_keys(train_config.stage_trainer_config("dpo"))}


def stage_fields(stage):
    inherited = {field.name for field in dataclasses.fields(train_config.TrainingArguments)}
    return [field for field in dataclasses.fields(STAGE_KEYS[stage]) if field.name not in inherited]


def default_of(field):
    if field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        value = field.default
    if value is None:
        return "none"
    if isinstance(value, str) and value.startswith(str(REPO)):  # a file shipped with the repo
        value = Path(value).relative_to(REPO)
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return ", ".join(f"`{item}`" for item in value)
    return f"`{value}`"


def row(field, default=None):
    meaning = " ".join(field.metadata["help"].split()).replace("|", "\\|")
    return f"| `{field.name}` | {default or default_of(field)} | {meaning} |"


def grpo_fields():
    """Stage grpo's keys: the project's reward keys, then the TRL GRPOConfig keys its recipes set."""
    own = [field for field in dataclasses.fields(grpo.GRPOArguments) if field.name in grpo.GRPOArguments.__annotations__]
    trl_fields = {field.name: field for field in dataclasses.fields(grpo.GRPOArguments)}
    return own + [trl_fields[name] for name in grpo.TRL_KEYS]


def grpo_table():
    stage_defaults = train_config.STAGE_DEFAULTS["grpo"]
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for field in grpo_fields():
        default = f"`{stage_defaults[field.name]}`" if field.name in stage_defaults else None
        rows.append(row(field, default))
    return "\n".join(rows)


def table():
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for arguments in PROJECT_CLASSES:
        for field in dataclasses.fields(arguments):
            rows.append(row(field))
    grpo_intro = ("With `stage: grpo` the keys of TRL's [`GRPOConfig`](https://huggingface.co/docs/trl/grpo_trainer) "
                  "replace `TrainingArguments` (a superset of it); the project's reward keys and the TRL keys a GRPO "
                  "recipe sets most (help texts are TRL's; see [Preference and RL](preference-and-rl.md#grpo)):")
    rows += ["", grpo_intro, "", grpo_table()]
    for stage in STAGE_KEYS:
        rows += ["", f"With `stage: {stage}`, TRL's keys (their help texts are TRL's; `max_length` is the data key above):",
                 "", "| key | default | meaning |", "|---|---|---|"]
        rows += [row(field) for field in stage_fields(stage)]
    return "\n".join(rows)


def key_index():
    """One line per dataclass (model, data, run) naming its keys, for the README's front page."""
    lines = []
    for arguments in PROJECT_CLASSES:
        part = arguments.__name__.removesuffix("Arguments").lower()
        keys = " ".join(f"`{field.name}`" for field in dataclasses.fields(arguments))
        lines.append(f"- {part}: {keys}")
    lines.append("- stage grpo (TRL): " + " ".join(f"`{field.name}`" for field in grpo_fields()))
    for stage in STAGE_KEYS:
        lines.append(f"- stage {stage} (TRL): " + " ".join(f"`{field.name}`" for field in stage_fields(stage)))
    return "\n".join(lines)


def with_generated(path, text, generated):
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    if not rest or not tail:
        raise SystemExit(f"{path} lacks the markers {BEGIN} ... {END}")
    return f"{head}{BEGIN}\n{generated}\n{END}{tail}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that both pages are up to date")
    args = parser.parse_args(argv)
    stale = []
    for path, generated in ((REFERENCE, table()), (README, key_index())):
        current = path.read_text()
        wanted = with_generated(path, current, generated)
        if current == wanted:
            continue
        stale.append(path.relative_to(REPO))
        if not args.check:
            path.write_text(wanted)
            print(f"updated the configuration reference in {path.relative_to(REPO)}")
    if args.check and stale:
        raise SystemExit(f"stale configuration reference in {', '.join(map(str, stale))}: "
                         "run python scripts/config_reference.py")


if __name__ == "__main__":
    main()
