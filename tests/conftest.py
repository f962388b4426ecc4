"""Shared fixtures: small real weights files made on the fly, and the shared data folder."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stylecam import models
from stylecam import weights as weights_io

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def make_weights(path: Path, arch: str = "fast", seed: int = 0, **config) -> Path:
    """A real weights file of a randomly initialised net: exercises every path but the painting itself."""
    torch.manual_seed(seed)
    model = models.build(arch, **config)
    with torch.no_grad():  # a visible, non-trivial mapping: bias the output towards a colour
        model.output_layer().bias.copy_(torch.tensor([200.0, 80.0, 40.0]))
    info = weights_io.StyleInfo(name=path.stem, arch=arch, display_name=f"Test {path.stem}",
                                credit={"title": "Test Painting", "artist": "Nobody", "year": "2026"},
                                recipe={"note": "random init for tests"}, training={"steps": 0})
    return weights_io.save(path, model, info)


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("weights")
    make_weights(d / "tfast.safetensors", "fast", seed=1)
    make_weights(d / "tfast2.safetensors", "fast", seed=2)
    make_weights(d / "tclassic.safetensors", "johnson", seed=3, channels=(8, 16, 32))
    return d


@pytest.fixture
def styles_env(weights_dir, monkeypatch) -> Path:
    """Makes the test styles addressable by short name (tfast, tfast2, tclassic)."""
    monkeypatch.setenv("STYLECAM_WEIGHTS", str(weights_dir))
    return weights_dir


@pytest.fixture(scope="session")
def tiny_weights(weights_dir) -> Path:
    return weights_dir / "tfast.safetensors"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA}")
    return DATA
