"""Weights files: metadata round trip, pytorch/examples checkpoints, and refusal of unsafe or broken files."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import stylecam
from stylecam import models
from stylecam import weights as weights_io
from stylecam.errors import StylecamError

from conftest import make_weights


# --- the reference: pytorch/examples fast_neural_style/neural_style/transformer_net.py, verbatim layout ---------
class _ConvLayer(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(x))


class _ResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = _ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = _ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x):
        residual = x
        out = self.relu(self.in1(self.conv1(x)))
        out = self.in2(self.conv2(out))
        return out + residual


class _UpsampleConvLayer(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, upsample=None):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        if self.upsample:
            x = nn.functional.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class ReferenceTransformerNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = _ConvLayer(3, 32, kernel_size=9, stride=1)
        self.in1 = nn.InstanceNorm2d(32, affine=True)
        self.conv2 = _ConvLayer(32, 64, kernel_size=3, stride=2)
        self.in2 = nn.InstanceNorm2d(64, affine=True)
        self.conv3 = _ConvLayer(64, 128, kernel_size=3, stride=2)
        self.in3 = nn.InstanceNorm2d(128, affine=True)
        self.res1 = _ResidualBlock(128)
        self.res2 = _ResidualBlock(128)
        self.res3 = _ResidualBlock(128)
        self.res4 = _ResidualBlock(128)
        self.res5 = _ResidualBlock(128)
        self.deconv1 = _UpsampleConvLayer(128, 64, kernel_size=3, stride=1, upsample=2)
        self.in4 = nn.InstanceNorm2d(64, affine=True)
        self.deconv2 = _UpsampleConvLayer(64, 32, kernel_size=3, stride=1, upsample=2)
        self.in5 = nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = _ConvLayer(32, 3, kernel_size=9, stride=1)
        self.relu = nn.ReLU()

    def forward(self, X):
        y = self.relu(self.in1(self.conv1(X)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        y = self.res5(self.res4(self.res3(self.res2(self.res1(y)))))
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


def _reference_checkpoint(path, old_style: bool) -> ReferenceTransformerNet:
    torch.manual_seed(0)
    ref = ReferenceTransformerNet().eval()
    with torch.no_grad():  # non-trivial affine norms, so a mis-mapped key would show
        for m in ref.modules():
            if isinstance(m, nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    sd = ref.state_dict()
    if old_style:  # checkpoints saved with torch < 0.4 carry InstanceNorm running stats
        for k in [k for k in sd if k.startswith("in") or ".in" in k]:
            if k.endswith(".weight"):
                base = k[: -len(".weight")]
                sd[base + ".running_mean"] = torch.zeros_like(sd[k])
                sd[base + ".running_var"] = torch.ones_like(sd[k])
    torch.save(sd, path)
    return ref


@pytest.mark.parametrize("old_style", [False, True])
def test_pytorch_examples_checkpoint_gives_reference_output(tmp_path, old_style):
    path = tmp_path / "candy.pth"
    ref = _reference_checkpoint(path, old_style)
    model, info = weights_io.load(path)
    assert info.arch == "johnson" and info.name == "candy"
    x = torch.rand(1, 3, 96, 128) * 255
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-3)
    # Through the engine: same frame in, the reference's clamped output out (within rounding).
    frame = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    out = stylecam.load(path, device="cpu", precision="fp32")(frame)
    with torch.no_grad():
        expect = ref(torch.from_numpy(frame).permute(2, 0, 1)[None].float()).clamp(0, 255)[0]
    expect = expect.permute(1, 2, 0).round().byte().numpy()
    assert np.abs(out.astype(int) - expect.astype(int)).max() <= 2


def test_metadata_round_trip(tmp_path):
    p = make_weights(tmp_path / "mystyle.safetensors", "fast", seed=5)
    model, info = weights_io.load(p)
    assert info.name == "mystyle" and info.arch == "fast" and info.display_name == "Test mystyle"
    assert info.credit == {"title": "Test Painting", "artist": "Nobody", "year": "2026"}
    assert info.credit_line() == "Test Painting, Nobody, 2026"
    assert info.config == models.build("fast").config
    s = stylecam.load(p)
    assert s.info.display_name == "Test mystyle"


def test_half_precision_save_loads_as_fp32(tmp_path):
    torch.manual_seed(0)
    m = models.build("fast")
    p = weights_io.save(tmp_path / "h", m, weights_io.StyleInfo(name="h", arch="fast"), half=True)
    assert p.suffix == ".safetensors"
    loaded, _ = weights_io.load(p)
    for (k, a), b in zip(m.state_dict().items(), loaded.state_dict().values()):
        assert b.dtype == torch.float32
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-3), k


def test_styles_by_short_name(styles_env):
    assert {"tfast", "tfast2", "tclassic"} <= set(weights_io.available_styles())
    assert stylecam.load("tclassic").info.arch == "johnson"
    with pytest.raises(StylecamError, match="unknown style 'nope'.*stylecam styles"):
        stylecam.load("nope")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned_marker",))


def test_pickle_payload_refused_and_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    torch.save({"conv1.conv2d.weight": torch.zeros(1), "x": _Evil()}, path)
    with pytest.raises(StylecamError) as e:
        weights_io.load(path)
    msg = str(e.value)
    assert str(path) in msg and "refused" in msg and "\n" not in msg
    assert not (tmp_path / "pwned_marker").exists()


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json"])
def test_corrupt_safetensors_refused(tmp_path, content):
    p = tmp_path / "broken.safetensors"
    p.write_bytes(content)
    with pytest.raises(StylecamError, match=f"weights file {p}: ") as e:
        weights_io.load(p)
    assert "\n" not in str(e.value)


def test_truncated_file_refused(tmp_path):
    p = make_weights(tmp_path / "t.safetensors")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(StylecamError, match="weights file .*t.safetensors"):
        weights_io.load(p)


def test_file_for_another_architecture_refused(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "mismatch.safetensors"
    sd = models.build("fast").state_dict()
    meta = {"stylecam": json.dumps({"format": 1, "arch": "johnson", "config": {}, "name": "m"})}
    save_file({k: v.contiguous() for k, v in sd.items()}, str(p), metadata=meta)
    with pytest.raises(StylecamError, match="do not fit architecture 'johnson'"):
        weights_io.load(p)
    meta = {"stylecam": json.dumps({"format": 1, "arch": "resnet9000", "config": {}, "name": "m"})}
    save_file({k: v.contiguous() for k, v in sd.items()}, str(p), metadata=meta)
    with pytest.raises(StylecamError, match="architecture 'resnet9000' is not one this stylecam knows"):
        weights_io.load(p)


def test_plain_safetensors_without_metadata_refused(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "plain.safetensors"
    save_file({"a": torch.zeros(2)}, str(p))
    with pytest.raises(StylecamError, match="no stylecam metadata"):
        weights_io.load(p)


def test_missing_file(tmp_path):
    with pytest.raises(StylecamError, match="does not exist"):
        weights_io.load(tmp_path / "nothere.safetensors")


def test_fast_file_from_before_shuffle_upsampling_still_loads(tmp_path):
    """Files written before ``up_mode`` existed (no key in their config) are nearest-upsampling nets."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    torch.manual_seed(3)
    old = models.build("fast", n_res=5, up_mode="nearest").eval()
    p = weights_io.save(tmp_path / "old.safetensors", old, weights_io.StyleInfo(name="old", arch="fast"))
    with safe_open(str(p), framework="pt") as f:
        meta = json.loads(f.metadata()["stylecam"])
    del meta["config"]["up_mode"]
    save_file(load_file(str(p)), str(p), metadata={"stylecam": json.dumps(meta)})
    model, info = weights_io.load(p)
    assert model.config["up_mode"] == "nearest" and model.config["n_res"] == 5
    x = torch.rand(1, 3, 40, 48) * 255
    with torch.no_grad():
        assert torch.allclose(model(x), old(x), atol=1e-2)


def test_shuffle_upsampling_starts_checkerboard_free():
    """ICNR init: the four sub-pixel phases of a fresh ShuffleUp are equal (nearest upsampling of one conv)."""
    from stylecam.models.fast import ShuffleUp

    torch.manual_seed(0)
    up = ShuffleUp(8, 4)
    y = up(torch.randn(1, 8, 10, 12))
    assert y.shape == (1, 4, 20, 24) and y.std() > 0.1
    for a, b in [(0, 1), (1, 0), (1, 1)]:
        assert torch.allclose(y[..., ::2, ::2], y[..., a::2, b::2])


# --- issue 13 #10, #6, #11: what a user can pass as --style ------------------------------------------------
def test_nan_weights_refused_at_load(tmp_path):
    """A diverged training run's NaNs paint every frame black with exit 0; refuse the file instead."""
    torch.manual_seed(0)
    m = models.build("fast")
    with torch.no_grad():
        next(iter(m.parameters()))[0].fill_(float("nan"))
    p = weights_io.save(tmp_path / "diverged", m, weights_io.StyleInfo(name="diverged", arch="fast"))
    with pytest.raises(StylecamError, match="NaN or infinite") as e:
        weights_io.load(p)
    assert "\n" not in str(e.value)


def test_painting_random_pth_and_folder_as_style_say_what_they_are(tmp_path):
    """Each gets one whole line saying what the thing is (was: 'pickled objects...' cut mid-word, or 'does
    not exist' for a folder)."""
    from PIL import Image

    painting = tmp_path / "painting.jpg"
    Image.new("RGB", (16, 16), (200, 100, 0)).save(painting)
    with pytest.raises(StylecamError) as e:
        weights_io.load(painting)
    assert "is a JPEG image, not a weights file" in str(e.value) and str(e.value).endswith(f"--style-image {painting}`")
    rand = tmp_path / "random.pth"
    rand.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()[1:])
    with pytest.raises(StylecamError, match=r"random.pth is not a weights file \(neither safetensors nor a "
                                            r"PyTorch checkpoint\)$"):
        weights_io.load(rand)
    with pytest.raises(StylecamError, match="is a folder, not a weights file"):
        weights_io.load(tmp_path)


def test_pickle_refusal_names_the_whole_reason(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": _Evil()}, path)
    with pytest.raises(StylecamError) as e:
        weights_io.load(path)
    msg = str(e.value)
    assert "GLOBAL posix.system whose module posix is blocked)" in msg and msg.endswith("state dicts of tensors")


def test_pytorch_examples_state_dict_as_safetensors_loads(tmp_path):
    from safetensors.torch import save_file

    ref = _reference_checkpoint(tmp_path / "candy.pth", old_style=False)
    p = tmp_path / "candy.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(p))
    model, info = weights_io.load(p)
    assert info.arch == "johnson" and info.name == "candy"
    x = torch.rand(1, 3, 64, 80) * 255
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-3)


@pytest.mark.parametrize("bad", [{"config": "abc"}, {"credit": [1, 2]}, {"name": 5}, {"arch": ["fast"]},
                                 {"config": {"n_res": "many"}}, "just a string"])
def test_metadata_with_wrong_types_is_one_line(tmp_path, bad):
    from safetensors.torch import save_file

    p = tmp_path / "wrong.safetensors"
    meta = {"format": 1, "arch": "fast", "config": {}, "name": "w"}
    meta = {**meta, **bad} if isinstance(bad, dict) else bad
    save_file({k: v.contiguous() for k, v in models.build("fast").state_dict().items()}, str(p),
              metadata={"stylecam": json.dumps(meta)})
    with pytest.raises(StylecamError, match=f"weights file {p}: ") as e:
        weights_io.load(p)
    assert "\n" not in str(e.value)


def test_user_styles_folder_is_found_and_listed(tmp_path, monkeypatch, capsys):
    """A trained style in the XDG data dir is found by name from anywhere and listed by `stylecam styles`."""
    from stylecam import cli

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("STYLECAM_WEIGHTS", raising=False)
    home = weights_io.user_styles_dir()
    assert home == tmp_path / "data" / "stylecam" / "styles"
    home.mkdir(parents=True)
    make_weights(home / "mine.safetensors", "fast", seed=9)
    monkeypatch.chdir(tmp_path)
    assert weights_io.resolve("mine") == home / "mine.safetensors"
    assert cli.main(["styles"]) == 0
    out = capsys.readouterr().out
    assert "mine" in out and "Test mine" in out and "gogh" in out  # shipped styles are listed too


# Settings added to the trainer after some styles were trained, with the value those runs used.
BEFORE_THE_SETTING = {"crop_scale": [1.0, 1.5], "content_layer": None, "style_layers": None,
                      "temporal_weight": 0.0, "temporal_shift": 3, "temporal_noise": 4.0, "style_scales": [1.0],
                      "style_layer_weights": None, "temporal_warp": "shift", "temporal_rotate": 1.0,
                      "temporal_zoom": 0.02}


def test_every_shipped_style_is_reproduced_by_its_recipe():
    """weights/NAME.safetensors was trained with exactly what `train --recipe training/recipes/NAME.toml` runs
    today (the recipe's settings, and the trainer's defaults for those it leaves out)."""
    from stylecam.training import train as trainer

    root = Path(__file__).resolve().parents[1]
    shipped = sorted((root / "weights").glob("*.safetensors"))
    assert len(shipped) >= 9
    skip = {"style_image", "dataset", "out", "name", "display_name", "run_dir", "resume", "force", "workers",
            "checkpoint_every", "preview_every", "channels_last", "precision"}
    for path in shipped:
        _, info = weights_io.load(path)
        recipe_file = root / "training" / "recipes" / f"{path.stem}.toml"
        assert recipe_file.is_file(), f"{path.name} has no recipe"
        cfg = trainer.resolve_config(["--recipe", str(recipe_file)])
        assert info.training.get("steps") == cfg["steps"], path.name
        assert info.training.get("style_image") == trainer._rel(cfg["style_image"]), path.name
        for key in set(trainer.DEFAULTS) - skip:
            recorded = info.recipe.get(key, BEFORE_THE_SETTING.get(key))
            value = cfg[key]
            if isinstance(value, float) or isinstance(recorded, float):
                assert recorded == pytest.approx(value), (path.name, key, recorded, value)
            else:
                assert recorded == value, (path.name, key, recorded, value)


def test_train_defaults_are_the_shipped_gogh_recipe():
    """README promises that a bare `stylecam train --style-image P --dataset D` runs gogh's recipe."""
    from stylecam.training import train as trainer

    root = Path(__file__).resolve().parents[1]
    bare = trainer.resolve_config(["--style-image", "p.jpg", "--dataset", "d"])
    gogh = trainer.resolve_config(["--recipe", str(root / "training" / "recipes" / "gogh.toml")])
    where = {"style_image", "dataset", "out", "name", "display_name", "run_dir", "workers"}
    differ = {k: (bare[k], gogh[k]) for k in set(trainer.DEFAULTS) - where if bare[k] != gogh[k]}
    assert not differ
