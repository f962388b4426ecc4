"""The CPU rewrite computes the same function as the plain nets (fp32 rounding only), at awkward sizes too."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from stylecam import engine, models
from stylecam.errors import StylecamError
from stylecam.models import nhwc, winograd
from stylecam.models.johnson_cpu import CpuJohnson
from stylecam.models.optimize import SpaceToDepthConv, SubpixelUpConv, optimize_for_cpu
from stylecam.weights import StyleInfo

from conftest import SHUFFLE_OUT, tint_output

TOL = 2.0  # 0..255 scale: the acceptance bound of the issue


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """Random init with non-trivial norm affines and a visible output bias, as trained nets have."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        model.output_layer().weight.mul_(40)  # outputs spread over 0..255 rather than near the bias
    tint_output(model)
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
         ("fast", {"n_res": 5, "up_mode": "nearest"}, ODD),
         ("fast", {"channels": (8, 16, 24), "n_down": 3, "skips": True}, ODD), ("fast", SHUFFLE_OUT, ODD)]


@pytest.mark.parametrize("arch,config,size", CASES)
def test_optimized_matches_plain(arch, config, size):
    from conftest import DATA

    net = _randomize(models.build(arch, **config), seed=len(config))
    info = StyleInfo(name="t", arch=arch)
    plain = engine.Stylizer(net, info, device="cpu", precision="fp32", compute="eager")
    fast = engine.Stylizer(net, info, device="cpu", precision="fp32", compute="optimized")  # the exact rewrite
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
    monkeypatch.setenv("STYLECAM_BACKEND", "torch")  # the compute paths are the PyTorch backend's
    net = models.build("fast")
    info = StyleInfo(name="t", arch="fast")
    assert engine.Stylizer(net, info, device="cpu").compute == "optimized"
    monkeypatch.setenv("STYLECAM_COMPUTE", "eager")
    s = engine.Stylizer(net, info, device="cpu")
    assert s.compute == "eager" and s.model is net
    with pytest.raises(StylecamError):
        engine.Stylizer(net, info, device="cpu", compute="turbo")


# -- the channels-last Johnson pipeline and its parts -------------------------------------------------------------


def _nhwc_padded(x: torch.Tensor, m: int) -> torch.Tensor:
    """(1, C, h, w) -> the reflect-padded, tile-rounded (rows, cols, C) map ``winograd.conv3x3`` reads."""
    _, c, h, w = x.shape
    xp = torch.zeros(winograd.padded_shape(h, w, c, m))
    xp[:h + 2, :w + 2] = F.pad(x, [1] * 4, mode="reflect")[0].permute(1, 2, 0)
    return xp


@pytest.mark.parametrize("m", [2, 4, 6])
def test_winograd_transforms_compute_a_correlation(m):
    bt, g, at = winograd.matrices(m)
    torch.manual_seed(m)
    d, k = torch.randn(m + 2, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    want = torch.stack([(d[i:i + 3] * k).sum() for i in range(m)])
    assert torch.allclose(at @ ((g @ k) * (bt @ d)), want, atol=1e-12)


@pytest.mark.parametrize("m,size", [(4, (13, 22)), (4, (8, 8)), (6, (17, 10)), (2, (5, 7))])
def test_winograd_conv_matches_conv2d(m, size):
    torch.manual_seed(sum(size))
    x, w = torch.randn(1, 12, *size) * 3 + 1, torch.randn(20, 12, 3, 3) / 6
    ref = F.conv2d(F.pad(x.double(), [1] * 4, mode="reflect"), w.double())[0].permute(1, 2, 0)
    out = winograd.conv3x3(_nhwc_padded(x, m), winograd.weight_transform(w, m))[:size[0], :size[1]]
    assert (out.double() - ref).abs().max() < 1e-4 * ref.abs().max()
    centered = winograd.conv3x3(_nhwc_padded(x, m), winograd.weight_transform(w, m), center=True)[:size[0], :size[1]]
    shift = (ref - centered.double()).mean((0, 1))  # one constant per channel
    assert (centered.double() + shift - ref).abs().max() < 1e-4 * ref.abs().max()


def test_channel_stats_survive_a_large_mean():
    torch.manual_seed(0)
    x = torch.randn(37, 29, 8) * 0.5 + torch.linspace(-300, 900, 8)  # mean / spread up to 1800
    mean, var = nhwc.channel_stats(x)
    xd = x.double().view(-1, 8)
    assert torch.allclose(mean.double(), xd.mean(0), rtol=1e-6)
    assert torch.allclose(var.double(), xd.var(0, unbiased=False), rtol=1e-4)


def test_phase_stats_are_those_of_the_interleaved_map():
    torch.manual_seed(1)
    h, w, c = 9, 13, 5
    o = torch.randn(h + 1, w + 1, 4 * c) * 2 + 7
    full = torch.empty(h, 2, w, 2, c)
    for q in range(4):
        a, b = divmod(q, 2)
        full[:, a, :, b] = o[a:a + h, b:b + w, q * c:(q + 1) * c]
    mean, var = nhwc.phase_stats(o)
    fd = full.double().view(-1, c)
    assert torch.allclose(mean.double(), fd.mean(0), atol=1e-5)
    assert torch.allclose(var.double(), fd.var(0, unbiased=False), rtol=1e-5)


@pytest.mark.parametrize("p,mode", [(1, "reflect"), (4, "reflect"), (1, "replicate"), (3, "replicate")])
def test_fill_border_matches_f_pad(p, mode):
    x = torch.randn(1, 3, 11, 7)
    buf = torch.full((11 + 2 * p, 7 + 2 * p, 3), float("nan"))
    buf[p:p + 11, p:p + 7] = x[0].permute(1, 2, 0)
    nhwc.fill_border(buf, p, 11, 7, mode)
    assert torch.equal(buf, F.pad(x, [p] * 4, mode=mode)[0].permute(1, 2, 0))


def _awkward(net: nn.Module) -> nn.Module:
    """Negative and zero norm gammas: the sign flips and the constant-channel branch of the fold."""
    with torch.no_grad():
        for i, m in enumerate(x for x in net.modules() if isinstance(x, nn.InstanceNorm2d)):
            m.weight[::3] *= -1
            m.weight[1] = 0.0 if i % 2 else m.weight[1]
    return net


@pytest.mark.parametrize("size", [(64, 48), (36, 100)])
def test_cpu_johnson_with_awkward_norms(size):
    net = _awkward(_randomize(models.build("johnson", channels=(8, 16, 32), n_res=3), seed=3))
    x = torch.from_numpy(_frame(*size, Path("/nonexistent"))).permute(2, 0, 1)[None].float()
    with torch.inference_mode():
        ref, out = net(x), CpuJohnson(net)(x)
    assert ref.std() > 5
    assert (ref.clamp(0, 255) - out.clamp(0, 255)).abs().max() <= 0.05


def test_cpu_johnson_batches_and_falls_back():
    net = _randomize(models.build("johnson", channels=(8, 16, 32), n_res=1), seed=4)
    fast = CpuJohnson(net)
    with torch.inference_mode():
        x = torch.rand(2, 3, 32, 40) * 255
        assert torch.allclose(fast(x), net(x), atol=0.05)
        odd = torch.rand(1, 3, 30, 41) * 255  # not a multiple of 4: the plain net
        assert torch.equal(fast(odd), net(odd))


def test_cpu_johnson_is_safe_for_concurrent_workers():
    """Pipeline workers share one module; the reused buffers are per thread."""
    import threading

    net = _randomize(models.build("johnson", channels=(8, 16, 32), n_res=2), seed=5)
    fast = CpuJohnson(net)
    xs = [torch.rand(1, 3, 48, 64) * 255 for _ in range(2)]
    with torch.inference_mode():
        want = [fast(x) for x in xs]
    got = [[], []]

    def work(i):
        with torch.inference_mode():
            for _ in range(5):
                got[i].append(fast(xs[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(y, want[i]) for i in range(2) for y in got[i])
