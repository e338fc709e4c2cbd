"""The package's type hints hold: Debian's mypy (python3-mypy) checks yololoss with the
settings of pyproject.toml ([tool.mypy]; torch and aiohttp are not followed, their stubs
alone take a minute)."""

import os
import subprocess
import sys

import pytest

from conftest import HERE

PKG = os.path.normpath(os.path.join(HERE, ".."))


def test_mypy_finds_no_error(tmp_path):
    pytest.importorskip("mypy", reason="mypy is not installed (Debian: apt-get install "
                        "python3-mypy)")
    p = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental",
                        "--cache-dir", str(tmp_path / "cache"), "--config-file",
                        os.path.join(PKG, "pyproject.toml"), "yololoss"],
                       cwd=PKG, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Success" in p.stdout
