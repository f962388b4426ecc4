"""`stylecam paint` (Gatys image optimization) through the real CLI entry point, at a tiny size."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stylecam.cli import main


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


def test_adam_optimizer_runs(tmp_path, photo, data_dir):
    out = tmp_path / "painted.png"
    assert main(["paint", str(photo), str(out), "--style-image", str(data_dir / "styles" / "the_scream.jpg"),
                 "--size", "48", "--steps", "3", "--optimizer", "adam"]) == 0
    assert max(Image.open(out).size) == 48


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
