"""The README's configuration reference is generated from the code and must not go stale."""

import subprocess
import sys

from conftest import REPO


def test_configuration_reference_matches_the_argument_dataclasses():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "config_reference.py"), "--check"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
