"""The layout's two rules: commands import the package, never the other way; no folder shadows a package."""

import ast
import subprocess
import sys

from conftest import REPO

PACKAGE = REPO / "qwen3_smvl"
ROOT_MODULES = {path.stem for path in REPO.glob("*.py")}


def imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield node.lineno, [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, [node.module]


def test_no_package_module_imports_a_root_command():
    assert ROOT_MODULES >= {"train", "stitch", "collate", "infer"}, "the root commands moved: update this test"
    wrong = [f"{path.relative_to(REPO)}:{line} imports {name}"
             for path in sorted(PACKAGE.rglob("*.py")) for line, names in imported_modules(path)
             for name in names if name.split(".")[0] in ROOT_MODULES]
    assert not wrong, "package modules must not import root commands:\n" + "\n".join(wrong)


def test_import_accelerate_from_the_root_is_the_library():
    code = "import accelerate, sys; print(accelerate.__file__); accelerate.Accelerator"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not result.stdout.strip().startswith(str(REPO) + "/accelerate"), result.stdout


def test_download_folders_are_ignored_only_at_the_root():
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "data/x", "model/x",
                              "qwen3_smvl/data/x.py", "qwen3_smvl/model/x.py"],
                             cwd=REPO, capture_output=True, text=True).stdout.split()
    assert ignored == ["data/x", "model/x"]
