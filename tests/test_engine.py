"""The engine: exact output sizes, the knobs (strength, colours, scale), the backends (OpenVINO, PyTorch) and
the device paths (TorchScript + fp16 for CUDA, checked on the CPU)."""
from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch

import stylecam
from stylecam import engine, models
from stylecam.engine import padded_size, preserve_colors, run_padded
from stylecam.errors import StylecamError

from conftest import SHUFFLE_OUT, make_weights, tint_output


def _frame(h, w, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("style", ["tfast", "tclassic"])
@pytest.mark.parametrize("shape", [(338, 338), (240, 320), (17, 31), (1, 1), (181, 243)])
def test_any_size_comes_back_exactly(styles_env, style, shape):
    s = stylecam.load(style)
    out = s(_frame(*shape))
    assert out.shape == shape + (3,) and out.dtype == np.uint8


@pytest.mark.parametrize("backend", ["openvino", "torch"])
def test_a_dilated_net_takes_frames_smaller_than_its_pads(tmp_path, backend):
    """Dilation 4 pads 4 pixels on the 1/8 map: a 32 px frame (a 4 px map) is padded up to 40 first."""
    s = stylecam.load(make_weights(tmp_path / "dil.safetensors", "fast", seed=4, **SHUFFLE_OUT, dilations=[1, 4]),
                      backend=backend)
    assert engine.min_side(s.model) == 40 and padded_size(17, 31, 8, 40) == (40, 40)
    for shape in [(32, 32), (17, 31), (1, 1), (41, 60)]:
        out = s(_frame(*shape))
        assert out.shape == shape + (3,) and out.dtype == np.uint8


def test_output_is_stylized_not_the_input(styles_env):
    f = _frame(120, 160)
    out = stylecam.load("tfast")(f)
    assert np.abs(out.astype(int) - f.astype(int)).mean() > 10


def test_padding_is_cropped_back_not_resized():
    """Pixels of the result correspond one to one with the input's: an identity net returns the input."""

    class Identity(torch.nn.Module):
        size_multiple = 8

        def forward(self, x):
            assert x.shape[-1] % 8 == 0 and x.shape[-2] % 8 == 0
            return x

    x = torch.rand(1, 3, 37, 53) * 255
    assert torch.equal(run_padded(Identity(), x), x)
    assert padded_size(338, 1080, 4) == (340, 1080)


def test_strength_blends_with_input(styles_env):
    f = _frame(64, 96)
    full = stylecam.load("tfast")(f).astype(int)
    half = stylecam.load("tfast", strength=0.5)(f).astype(int)
    none = stylecam.load("tfast", strength=0.0)(f)
    assert np.array_equal(none, f)
    assert np.abs(half - (full + f.astype(int)) / 2).max() <= 1.5


def test_preserve_colors_keeps_input_chroma(styles_env):
    import cv2

    f = _frame(64, 96)
    out = stylecam.load("tfast", preserve_colors=True)(f)
    cr_in = cv2.cvtColor(f, cv2.COLOR_RGB2YCrCb)[..., 1:].astype(int)
    cr_out = cv2.cvtColor(out, cv2.COLOR_RGB2YCrCb)[..., 1:].astype(int)
    plain = stylecam.load("tfast")(f)
    cr_plain = cv2.cvtColor(plain, cv2.COLOR_RGB2YCrCb)[..., 1:].astype(int)
    assert np.abs(cr_out - cr_in).mean() < np.abs(cr_plain - cr_in).mean() / 3
    assert preserve_colors(f, f).shape == f.shape


@pytest.mark.parametrize("backend", ["openvino", "torch"])
def test_scale_processes_smaller_and_returns_full_size(styles_env, backend):
    f = _frame(240, 320)
    s = stylecam.load("tfast", scale=0.5, backend=backend)
    seen = []
    orig = s.stylize_frame
    s.stylize_frame = lambda x: (seen.append(x.shape), orig(x))[1]
    out = s(f)
    assert out.shape == f.shape and seen == [(120, 160, 3)]


def test_rejects_bad_frames_and_options(styles_env):
    s = stylecam.load("tfast")
    with pytest.raises(ValueError, match="RGB uint8"):
        s(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        s(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(StylecamError, match="strength"):
        stylecam.load("tfast", strength=2)
    with pytest.raises(StylecamError, match="fp16 is for GPUs"):
        stylecam.load("tfast", device="cpu", precision="fp16")


@pytest.mark.parametrize("bf16_pays", [False, True])
def test_cpu_defaults_openvino_for_fast_exact_rewrite_for_classic(styles_env, monkeypatch, bf16_pays):
    """The fast net runs on OpenVINO in native precision. The classic net: in fp32 (where bf16 does not pay) its
    exact PyTorch rewrite (measured at least level with OpenVINO fp32); where bf16 pays, OpenVINO bf16."""
    monkeypatch.delenv("STYLECAM_BACKEND", raising=False)
    monkeypatch.setattr(engine, "cpu_bf16_pays", lambda: bf16_pays)
    s = stylecam.load("tfast", device="cpu")
    assert s.backend == "openvino" and s.ov is not None
    assert s.precision == ("bf16" if bf16_pays else "fp32")
    c = stylecam.load("tclassic", device="cpu")
    if bf16_pays:
        assert (c.backend, c.precision) == ("openvino", "bf16") and c.ov is not None
    else:
        assert (c.backend, c.precision, c.compute, c.ov) == ("torch", "fp32", "optimized", None)
    assert stylecam.load("tclassic", precision="fp32").backend == "torch"
    assert stylecam.load("tclassic", backend="openvino").backend == "openvino"
    assert stylecam.load("tfast", backend="torch").backend == "torch"
    monkeypatch.setenv("STYLECAM_BACKEND", "torch")
    assert stylecam.load("tfast").backend == "torch"
    with pytest.raises(StylecamError, match="unknown backend"):
        stylecam.load("tfast", backend="tensorrt")
    with pytest.raises(StylecamError, match="runs on the CPU"):
        engine.pick_backend(torch.device("cuda"), "openvino")
    assert engine.pick_backend(torch.device("cuda"), "auto") == "torch"


def test_auto_falls_back_to_torch_in_one_line(styles_env, monkeypatch, capsys):
    """OpenVINO missing (or failing on a net): ``auto`` says why in one line and runs PyTorch; asking for
    ``openvino`` explicitly is an error naming the way out."""
    def missing(model, precision):
        raise ImportError("No module named 'openvino'")

    monkeypatch.setattr(engine.OpenVINONet, "get", missing)
    monkeypatch.setattr(engine, "_SAID", set())
    f = _frame(48, 64)
    s = stylecam.load("tfast", backend="auto")
    assert s.backend == "torch" and s.ov is None and s(f).shape == f.shape
    assert stylecam.load("tfast2").backend == "torch"  # a second style: no second notice
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "OpenVINO unavailable" in err and "No module named 'openvino'" in err
    with pytest.raises(StylecamError, match="--backend openvino: cannot run this net.*--backend torch"):
        stylecam.load("tfast", backend="openvino")


@pytest.mark.parametrize("style", ["tfast", "tfast2", "tclassic"])
def test_openvino_fp32_matches_torch(styles_env, style):
    """OpenVINO f32 is the exact mode: the same function as the PyTorch net, at an odd size (padding), through
    both the uint8 frame graph and the float tensor graph."""
    f = _frame(181, 243, seed=3)
    ov = stylecam.load(style, precision="fp32", backend="openvino")
    pt = stylecam.load(style, precision="fp32", backend="torch")
    assert np.abs(ov(f).astype(int) - pt(f).astype(int)).max() <= 1  # rounding of values ~0.5 apart
    x = torch.from_numpy(f).permute(2, 0, 1)[None].float()
    assert (ov.stylize_tensor(x) - pt.stylize_tensor(x)).abs().max() <= 2 / 255


def test_openvino_is_safe_from_two_threads(styles_env):
    """The live pipeline calls one Stylizer from two workers at once: each call gets its own infer request,
    so results equal the one-at-a-time results, at two different sizes (dynamic shapes) together."""
    s = stylecam.load("tfast", backend="openvino")
    frames = [_frame(96, 128, seed=i) if i % 2 else _frame(120, 72, seed=i) for i in range(8)]
    want = [s(f) for f in frames]
    got = [None] * len(frames)
    barrier = threading.Barrier(2)

    def work(k):
        barrier.wait()
        for i in range(k, len(frames), 2):
            got[i] = s(frames[i])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_openvino_compiles_per_size_and_keeps_the_latest(styles_env, monkeypatch):
    """Each frame size gets a static-shape compile (faster than dynamic H/W); only the last SIZES_KEPT stay, and
    a size compiled again gives the same frame."""
    from collections import OrderedDict

    monkeypatch.setattr(engine.OpenVINONet, "SIZES_KEPT", 2)
    monkeypatch.setattr(engine.OpenVINONet, "_cache", OrderedDict())  # a net of its own, no sizes compiled yet
    s = stylecam.load("tfast", backend="openvino")
    frames = {hw: _frame(*hw, seed=1) for hw in [(64, 80), (96, 128), (120, 72)]}
    first = {hw: s(f) for hw, f in frames.items()}

    def sizes():
        return [k[2][1:3] for k in s.ov._compiled if k[2] is not None]

    assert sizes() == [(96, 128), (120, 72)]
    assert np.array_equal(s(frames[(64, 80)]), first[(64, 80)])
    assert sizes() == [(120, 72), (64, 80)]


@pytest.mark.parametrize("how", ["stylecam", "plain import"])
def test_openvino_runs_without_its_usage_telemetry(styles_env, tmp_path, how):
    """Importing OpenVINO sends a usage event to Google Analytics from a forked helper process, and keeps its
    counters in ~/intel, unless the user opted out. A style running on OpenVINO through stylecam leaves no such
    trace in a fresh HOME; a plain ``import openvino`` there does (the control: the check can see it)."""
    import os
    import subprocess
    import sys

    code = {"stylecam": "import numpy as np, stylecam; s = stylecam.load('tfast', backend='openvino'); "
                        "s(np.zeros((32, 32, 3), np.uint8)); import sys; print(sys.modules['openvino_telemetry'])",
            "plain import": "import openvino, sys; print(sys.modules['openvino_telemetry'])"}[how]
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}  # its CI opt-out
    env.update(HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "data"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    traces = sorted(p.name for p in (tmp_path / "intel").glob("*"))
    if how == "stylecam":
        assert out.stdout.strip() == "None" and traces == []
    else:
        assert "openvino_telemetry" in out.stdout and traces  # e.g. openvino_ga_cid, stats


def test_openvino_takes_readonly_and_strided_frames(styles_env):
    f = _frame(64, 80)
    view = f[:, ::-1]  # a mirrored camera frame: negative strides
    view.flags.writeable = False
    s = stylecam.load("tfast", backend="openvino")
    assert np.array_equal(s(view), s(np.ascontiguousarray(view)))


@pytest.mark.skipif(not engine.cpu_has_native_bf16(), reason="needs native bf16")
@pytest.mark.parametrize("backend", ["openvino", "torch"])
@pytest.mark.parametrize("style", ["gogh", "gogh_classic"])
def test_native_bf16_stays_close_to_fp32_on_shipped_weights(data_dir, style, backend):
    """bf16 on both backends stays within the tolerance the README states (mean under 1/255, 99.9% of values
    within 3/255) of PyTorch fp32 on a real photo, and OpenVINO f32 (the exact mode) within 2/255."""
    import cv2

    photo = sorted((data_dir / "content").glob("*.jpg"))[-1]
    img = cv2.resize(cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB), (320, 240))
    fp32 = stylecam.load(style, precision="fp32", backend="torch")
    bf16 = stylecam.load(style, precision="bf16", backend=backend)
    d = np.abs(bf16(img).astype(int) - fp32(img).astype(int))
    assert d.mean() < 1.0 and np.percentile(d, 99.9) <= 3, (d.mean(), d.max())
    assert d.max() > 0  # it really ran in bf16
    if backend == "openvino":
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
        exact = stylecam.load(style, precision="fp32", backend="openvino")
        assert (exact.stylize_tensor(x) - fp32.stylize_tensor(x)).abs().max() <= 2 / 255


ARCHS = [("johnson", {"channels": (8, 16, 32), "n_res": 2}), ("johnson", {}), ("fast", {}),
         ("fast", {"up_mode": "nearest", "n_down": 3, "separable_up": False, "out_kernel": 9}),
         ("fast", {"channels": (8, 16, 24), "n_res": 2, "n_down": 3, "skips": True}), ("fast", SHUFFLE_OUT)]


def _net(arch, config):
    torch.manual_seed(0)
    net = models.build(arch, **config).eval().requires_grad_(False)
    with torch.no_grad():
        for m in net.modules():  # non-trivial norm affines, as trained nets have
            if isinstance(m, torch.nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        net.output_layer().weight.mul_(40)
    tint_output(net)
    return net


def test_every_architecture_is_covered_by_the_scripting_test():
    assert {a for a, _ in ARCHS} == set(models.names())


@pytest.mark.parametrize("arch,config", ARCHS)
def test_torchscript_equals_eager(arch, config, capsys):
    """CUDA scripts the net: every registered architecture must script (no silent eager fallback) and compute
    the same function. Scripting needs no GPU."""
    net = _net(arch, config)
    scripted = engine.script_or_eager(net)
    assert isinstance(scripted, torch.jit.ScriptModule), capsys.readouterr().err
    x = torch.rand(1, 3, 56, 72) * 255  # sides a multiple of 8: the engine pads every frame to the net's multiple
    with torch.inference_mode():
        assert torch.allclose(scripted(x), net(x), atol=1e-3)


def test_script_or_eager_falls_back_with_one_line(capsys):
    class Unscriptable(torch.nn.Module):
        def forward(self, x):
            return getattr(self, f"l{len(x)}", x)  # a computed attribute name: TorchScript refuses it

    m = Unscriptable()
    assert engine.script_or_eager(m) is m
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "running it eagerly" in err


@pytest.mark.parametrize("arch,config", ARCHS[:1] + ARCHS[2:3])
def test_fp16_module_with_fp32_norms_on_cpu(arch, config):
    """The CUDA fp16 module (half weights, instance-norm statistics in fp32), run on the CPU as far as its fp16
    kernels go: close to fp32, the norms really compute in fp32, and it scripts to the same function."""
    net = _net(arch, config)
    half = engine._fp32_norms(copy.deepcopy(net).half())
    norms = [m for m in half.modules() if isinstance(m, engine.FP32InstanceNorm)]
    assert norms and all(m.weight.dtype == torch.float32 for m in norms)
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in half.modules())
    x = torch.rand(1, 3, 48, 64) * 255
    with torch.inference_mode():
        try:
            y = half(x.half())
        except RuntimeError as e:  # a CPU build without fp16 convolutions
            pytest.skip(f"no fp16 convolutions on this CPU build: {e}")
        ref = net(x)
        assert y.dtype == torch.float16
        d = (y.float() - ref).abs()
        assert d.mean() < 2 and d.max() < 16, (d.mean(), d.max())
        # statistics in fp32: a variance that overflows fp16 (activations ~1e3, squares ~1e6 > 65504)
        big = torch.randn(1, norms[0].weight.numel(), 8, 8) * 1000
        assert torch.isfinite(norms[0](big.half())).all()
        assert torch.equal(engine.script_or_eager(half)(x.half()), y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp16_matches_fp32(styles_env):
    f = _frame(240, 320)
    ref = stylecam.load("tclassic", device="cpu", precision="fp32", backend="torch")(f).astype(int)
    out = stylecam.load("tclassic", device="cuda", precision="fp16")(f).astype(int)
    assert np.abs(out - ref).mean() < 2 and np.percentile(np.abs(out - ref), 99) <= 8


def test_api_refuses_out_of_range_options_and_empty_frames(styles_env):
    """Issue 13: `s.strength = 5` was accepted and an empty frame hit a raw OpenCV assertion."""
    s = stylecam.load("tfast", device="cpu")
    for bad in (5, -0.1, float("nan")):
        with pytest.raises(StylecamError, match="strength must be between 0 and 1"):
            s.strength = bad
    with pytest.raises(StylecamError, match="scale must be between"):
        s.scale = 0
    with pytest.raises(StylecamError, match="strength must be between 0 and 1"):
        s(np.zeros((32, 32, 3), np.uint8), strength=2)
    with pytest.raises(ValueError, match="empty frame"):
        s(np.zeros((0, 10, 3), np.uint8))
    s.strength = 0.5
    assert s.strength == 0.5 and s(np.zeros((32, 32, 3), np.uint8)).shape == (32, 32, 3)
