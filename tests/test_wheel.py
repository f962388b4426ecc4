"""The wheel a user installs: built from the source, installed into a fresh venv, it lists the shipped styles
(package data) and converts an image, with no help from the repo checkout."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, f"{cmd}: {r.stdout[-2000:]} {r.stderr[-2000:]}"
    return r


@pytest.mark.slow  # builds a wheel and starts torch three times: 19-48 s here, with trainings and tests beside it
def test_wheel_in_a_fresh_venv_lists_styles_and_converts(tmp_path):
    # A copy of what the sdist holds, so the build leaves nothing (build/, egg-info) in the checkout.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "weights", src / "weights")
    shutil.copytree(ROOT / "stylecam", src / "stylecam", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    # Offline: this environment's setuptools builds it, no index is asked.
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist",
          src])
    wheel = next((tmp_path / "dist").glob("stylecam-*.whl"))

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # The dependencies (torch is ~1 GB) come from this environment: its site-packages goes at the END of the new
    # venv's path, as a plain folder (its .pth files, e.g. the editable stylecam, are not run).
    (site / "_stylecam_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-index", wheel])

    env = {k: v for k, v in os.environ.items() if k not in ("STYLECAM_WEIGHTS", "PYTHONPATH")}
    env.update(XDG_DATA_HOME=str(tmp_path / "xdg"), OMP_NUM_THREADS="1")
    where = _run([py, "-c", "import stylecam, stylecam.weights as w; print(stylecam.__file__); "
                  "print(w.shipped_styles_dir())"], cwd=tmp_path, env=env).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where), where  # the wheel's package and its styles

    styles = _run([venv / "bin" / "stylecam", "styles"], cwd=tmp_path, env=env).stdout
    for name in ("gogh", "scream", "wave", "gogh_classic"):
        assert f"\n{name} " in styles, styles
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(photo)
    _run([venv / "bin" / "stylecam", "convert", photo, tmp_path / "out.jpg", "--style", "gogh", "-q"],
         cwd=tmp_path, env=env)
    with Image.open(tmp_path / "out.jpg") as im:
        assert im.size == (64, 48)
