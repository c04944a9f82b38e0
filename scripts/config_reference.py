"""The README's configuration reference, generated from train_config's argument dataclasses (their
defaults and help texts), so that it cannot drift from the code.

    python scripts/config_reference.py            # rewrite the table in README.md
    python scripts/config_reference.py --check    # exit 1 when README.md's table is stale
"""

import argparse
import dataclasses
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import train_config  # noqa: E402

README = REPO / "README.md"
BEGIN, END = "<!-- config-reference: begin (scripts/config_reference.py) -->", "<!-- config-reference: end -->"


def default_of(field):
    if field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        value = field.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return ", ".join(f"`{item}`" for item in value)
    return f"`{value}`"


def table():
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for arguments in train_config.ARGUMENT_CLASSES[:-1]:  # the last is transformers' TrainingArguments
        for field in dataclasses.fields(arguments):
            rows.append(f"| `{field.name}` | {default_of(field)} | {field.metadata['help']} |")
    return "\n".join(rows)


def with_table(readme_text):
    head, _, rest = readme_text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    if not rest or not tail:
        raise SystemExit(f"{README} lacks the markers {BEGIN} ... {END}")
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that README.md is up to date")
    args = parser.parse_args(argv)
    current = README.read_text()
    wanted = with_table(current)
    if current == wanted:
        return
    if args.check:
        raise SystemExit("README.md's configuration reference is stale: run python scripts/config_reference.py")
    README.write_text(wanted)
    print(f"updated the configuration reference in {README}")


if __name__ == "__main__":
    main()
