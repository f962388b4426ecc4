"""The CPU rewrite computes the same function as the plain nets (fp32 rounding only), at awkward sizes too."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from stylecam import engine, models
from stylecam.errors import StylecamError
from stylecam.models.optimize import SpaceToDepthConv, SubpixelUpConv, optimize_for_cpu
from stylecam.weights import StyleInfo

TOL = 2.0  # 0..255 scale: the acceptance bound of the issue


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """Random init with non-trivial norm affines and a visible output bias, as trained nets have."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        model.output_layer().bias.copy_(torch.tensor([200.0, 80.0, 40.0]))
        model.output_layer().weight.mul_(40)  # outputs spread over 0..255 rather than near the bias
    return model.eval()


def _frame(h: int, w: int, data_root) -> np.ndarray:
    """A real photo when the shared data is present, else a structured synthetic frame."""
    import cv2

    photos = sorted((data_root / "content").glob("*.jpg")) if data_root.is_dir() else []
    if photos:
        img = cv2.cvtColor(cv2.imread(str(photos[0])), cv2.COLOR_BGR2RGB)
        return np.ascontiguousarray(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, (xx ^ yy) % 256], -1).astype(np.uint8)


ODD, TINY = (254, 338), (61, 47)
CASES = [("johnson", {}, ODD), ("johnson", {"channels": (8, 16, 32), "n_res": 2}, ODD),
         ("johnson", {"channels": (8, 16, 32), "n_res": 2}, TINY), ("fast", {}, ODD), ("fast", {}, TINY),
         ("fast", {"separable_up": False, "stem_kernel": 3, "out_kernel": 9, "up_mode": "nearest"}, ODD),
         ("fast", {"n_res": 5, "up_mode": "nearest"}, ODD)]


@pytest.mark.parametrize("arch,config,size", CASES)
def test_optimized_matches_plain(arch, config, size):
    from conftest import DATA

    net = _randomize(models.build(arch, **config), seed=len(config))
    info = StyleInfo(name="t", arch=arch)
    plain = engine.Stylizer(net, info, device="cpu", compute="eager")
    fast = engine.Stylizer(net, info, device="cpu", compute="optimized")
    frame = _frame(*size, DATA)
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    a, b = plain.stylize_tensor(x), fast.stylize_tensor(x)
    assert a.shape == b.shape == x.shape
    assert a.std() > 5  # the comparison is not between two flat images
    assert (a - b).abs().max().item() <= TOL
    assert np.abs(plain(frame).astype(int) - fast(frame).astype(int)).max() <= TOL


@pytest.mark.parametrize("k,stride,s", [(9, 1, 2), (9, 1, 4), (3, 2, 2), (5, 2, 2), (3, 1, 2)])
def test_space_to_depth_conv(k, stride, s):
    torch.manual_seed(k + stride + s)
    conv = nn.Conv2d(5, 7, k, stride)
    layer = SpaceToDepthConv(conv, k // 2, s)
    for h, w in [(32, 48), (36, 20)] + ([(33, 47)] if stride > 1 else []):
        x = torch.randn(1, 5, h, w)
        ref = conv(F.pad(x, [k // 2] * 4, mode="reflect"))
        assert torch.allclose(layer(x), ref, atol=1e-4)


@pytest.mark.parametrize("groups", [1, 6])
def test_subpixel_upsample_conv(groups):
    torch.manual_seed(groups)
    conv = nn.Conv2d(6, 6 if groups > 1 else 4, 3, groups=groups)
    layer = SubpixelUpConv(conv)
    x = torch.randn(1, 6, 9, 13)
    ref = conv(F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), [1] * 4, mode="reflect"))
    assert torch.allclose(layer(x), ref, atol=1e-4)


def test_rewrite_leaves_the_loaded_model_alone():
    net = models.build("johnson", channels=(8, 16, 32), n_res=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    optimize_for_cpu(net)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_engine_compute_choice(monkeypatch):
    net = models.build("fast")
    info = StyleInfo(name="t", arch="fast")
    assert engine.Stylizer(net, info, device="cpu").compute == "optimized"
    monkeypatch.setenv("STYLECAM_COMPUTE", "eager")
    s = engine.Stylizer(net, info, device="cpu")
    assert s.compute == "eager" and s.model is net
    with pytest.raises(StylecamError):
        engine.Stylizer(net, info, device="cpu", compute="turbo")
