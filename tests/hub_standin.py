"""A stand-in for the `hf` CLI's `download` that serves dataset repos from a local mirror folder
($HF_MIRROR/<repo type>s/<repo id>/, e.g. datasets/lmms-lab-encoder/MMBench, in the hub's layout): the real command's arguments and flags, its --include and
--exclude filtering through huggingface_hub's own filter_repo_objects (fnmatch, a trailing "/" meaning
the folder), files copied to --local-dir under their repo paths. Each call's argv is appended to
$STUB_LOG when set; with $HF_STANDIN_FAIL_AT naming a repo path, the download stops there as a dropped
connection stops the real one: the files before it copied, an error, exit status 1. Tests put it first on
PATH as `hf` (see install())."""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path


def install(bin_dir):
    """Writes an executable `hf` into bin_dir that runs this module with the tests' interpreter."""
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    hf = bin_dir / "hf"
    hf.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} \"$@\"\n")
    hf.chmod(0o755)
    return bin_dir


def main(argv):
    from huggingface_hub.utils import filter_repo_objects

    if os.environ.get("STUB_LOG"):
        with open(os.environ["STUB_LOG"], "a") as log:
            log.write(json.dumps(["hf", *argv]) + "\n")
    if argv[:1] != ["download"]:
        sys.exit(f"hub stand-in: only `hf download` is served, not {argv[:1]}")
    parser = argparse.ArgumentParser(prog="hf download")
    parser.add_argument("repo_id")
    parser.add_argument("filenames", nargs="*")
    parser.add_argument("--repo-type", choices=["model", "dataset", "space"], default="model")
    parser.add_argument("--revision")
    parser.add_argument("--include", action="append")
    parser.add_argument("--exclude", action="append")
    parser.add_argument("--local-dir")
    parser.add_argument("--cache-dir")
    parser.add_argument("--token")
    parser.add_argument("--max-workers", type=int)
    parser.add_argument("--force-download", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv[1:])
    repo = Path(os.environ["HF_MIRROR"]) / f"{args.repo_type}s" / args.repo_id
    if not repo.is_dir():
        sys.exit(f"Repository Not Found for url: https://huggingface.co/api/{args.repo_type}s/{args.repo_id}")
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
    wanted = args.filenames or list(filter_repo_objects(files, allow_patterns=args.include,
                                                        ignore_patterns=args.exclude))
    out = Path(args.local_dir or ".")
    for name in wanted:
        if name == os.environ.get("HF_STANDIN_FAIL_AT"):
            sys.exit(f"ConnectionError: connection to the hub dropped while downloading {name}")
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(repo / name, out / name)
    print(out.resolve())


if __name__ == "__main__":
    main(sys.argv[1:])
