"""Shared fixtures: small real weights files made on the fly, and the shared data folder."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stylecam import models
from stylecam import weights as weights_io

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


# the look arch's decoder: skips, a blur after every pixel shuffle, the RGB output shuffled up from half size
SHUFFLE_OUT = {"channels": (8, 16, 24), "n_res": 2, "n_down": 3, "skips": True, "up_blur": True, "out_shuffle": True}


def tint_output(model: torch.nn.Module) -> None:
    """A visible, non-trivial mapping: bias the output towards a colour (a shuffled output has each colour's
    four phases in a row)."""
    with torch.no_grad():
        bias = model.output_layer().bias
        bias.copy_(torch.tensor([200.0, 80.0, 40.0]).repeat_interleave(bias.numel() // 3))


def make_weights(path: Path, arch: str = "fast", seed: int = 0, **config) -> Path:
    """A real weights file of a randomly initialised net: exercises every path but the painting itself."""
    torch.manual_seed(seed)
    model = models.build(arch, **config)
    tint_output(model)
    info = weights_io.StyleInfo(name=path.stem, arch=arch, display_name=f"Test {path.stem}",
                                credit={"title": "Test Painting", "artist": "Nobody", "year": "2026"},
                                recipe={"note": "random init for tests"}, training={"steps": 0})
    return weights_io.save(path, model, info)


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("weights")
    make_weights(d / "tfast.safetensors", "fast", seed=1)
    make_weights(d / "tfast2.safetensors", "fast", seed=2, **SHUFFLE_OUT)
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
