"""`stylecam paint` (Gatys image optimization) through the real CLI entry point, at a tiny size."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stylecam.cli import main
from stylecam.training.data import load_rgb
from stylecam.training.losses import StyleLoss
from stylecam.training.lossnets import VGG16, EfficientNetLite0
from stylecam.training.paint import _resized, _tensor


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core CPU: spinning OpenMP threads are slower than one under load
    yield
    torch.set_num_threads(n)


@pytest.fixture
def photo(tmp_path, data_dir):
    p = tmp_path / "bear.png"
    im = Image.open(data_dir / "content" / "bsds500_test_100007.jpg").convert("RGB")
    im.thumbnail((96, 96))
    im.save(p)
    return p


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("stylecam: error:")]


def test_paint_writes_a_painted_image_of_the_asked_size(tmp_path, photo, data_dir, capsys):
    out = tmp_path / "sub" / "painted.jpg"
    assert main(["paint", str(photo), str(out), "--style-image", str(data_dir / "styles" / "starry_night.jpg"),
                 "--size", "64", "--steps", "4"]) == 0
    assert "wrote" in capsys.readouterr().out
    painted = Image.open(out)
    assert painted.format == "JPEG" and painted.mode == "RGB"
    assert max(painted.size) == 64 and painted.size == (64, 43)  # 96x64 photo, long side 64, aspect kept
    original = np.asarray(Image.open(photo).resize(painted.size, Image.BICUBIC), dtype=np.float32)
    assert np.abs(np.asarray(painted, dtype=np.float32) - original).mean() > 3.0
    assert [p.name for p in out.parent.iterdir()] == ["painted.jpg"]  # no temp file left behind


def test_adam_moves_the_photo_toward_the_painting(tmp_path, photo, data_dir):
    """Not only an image of the right size: the written pixels are measurably nearer the painting's style (the
    loss the optimizer minimizes, on the same loss net) than the photo they started from."""
    painting = data_dir / "styles" / "the_scream.jpg"
    out = tmp_path / "painted.png"
    assert main(["paint", str(photo), str(out), "--style-image", str(painting), "--size", "48", "--steps", "10",
                 "--optimizer", "adam", "--loss-net", "efficientnet-lite0"]) == 0
    painted = Image.open(out)
    assert max(painted.size) == 48
    net = EfficientNetLite0()
    with torch.no_grad():
        style = StyleLoss(net(_tensor(_resized(load_rgb(painting), 48)))[0])
        before = float(style(net(_tensor(_resized(load_rgb(photo), 48)))[0]))
        after = float(style(net(_tensor(painted.convert("RGB")))[0]))
    assert after < 0.8 * before, (before, after)


def test_lbfgs_keeps_descending_on_vgg16(tmp_path, photo, data_dir):
    """L-BFGS, one iteration per step, needs line-search evaluations: without them every step on VGG16 was
    rejected and the "painted" image was the photo (style distance unchanged after 8 steps)."""
    painting = data_dir / "styles" / "starry_night.jpg"
    out = tmp_path / "painted.png"
    assert main(["paint", str(photo), str(out), "--style-image", str(painting), "--size", "48", "--steps", "8",
                 "--loss-net", "vgg16"]) == 0
    net = VGG16()
    with torch.no_grad():
        style = StyleLoss(net(_tensor(_resized(load_rgb(painting), 48)))[0])
        before = float(style(net(_tensor(_resized(load_rgb(photo), 48)))[0]))
        after = float(style(net(_tensor(Image.open(out).convert("RGB")))[0]))
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize("case", ["missing photo", "garbage style", "bad size", "unknown type", "out under a file"])
def test_paint_bad_inputs_fail_with_one_line(tmp_path, photo, data_dir, capsys, case):
    style = data_dir / "styles" / "starry_night.jpg"
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    argv, expected = {
        "missing photo": ([str(tmp_path / "nope.jpg"), str(tmp_path / "o.png"), "--style-image", str(style)],
                          "photo"),
        "garbage style": ([str(photo), str(tmp_path / "o.png"), "--style-image", str(garbage)],
                          "is not a readable image"),
        "bad size": ([str(photo), str(tmp_path / "o.png"), "--style-image", str(style), "--size", "8"], "--size"),
        "unknown type": ([str(photo), str(tmp_path / "o.xyz"), "--style-image", str(style)], "unknown image type"),
        "out under a file": ([str(photo), str(a_file / "o.png"), "--style-image", str(style)], "not writable"),
    }[case]
    assert main(["paint", *argv, "--steps", "1"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and expected in lines[0], lines
    assert not list(tmp_path.rglob("o.*"))
