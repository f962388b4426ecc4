"""videoio against real ffmpeg and Pillow: round trips, odd sizes, atomic writes, GIF timing and disposal."""
from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylecam import videoio
from stylecam.errors import StylecamError


def lavfi_video(path: Path, size="96x64", rate=25, seconds=1.0, audio=False) -> Path:
    """A test video made by ffmpeg itself, independent of the writer under test."""
    cmd = [videoio.ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    cmd += ["-t", str(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p"]
    cmd += ["-c:a", "aac"] if audio else []
    subprocess.run(cmd + ["-movflags", "+faststart", str(path)], check=True)
    return path


def solid_frames(n: int, h: int, w: int) -> list[np.ndarray]:
    return [np.full((h, w, 3), (20 * i % 256, 100, 200 - 10 * i), np.uint8) for i in range(n)]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_video_round_trip_keeps_frames_fps_and_colours(tmp_path):
    out = tmp_path / "v.mp4"
    frames = solid_frames(12, 48, 64)
    with videoio.VideoWriter(out, fps=30000 / 1001) as w:
        for f in frames:
            w.write(f)
    info = videoio.probe(out)
    assert (info.kind, info.width, info.height, info.fps) == ("video", 64, 48, Fraction(30000, 1001))
    back = list(videoio.VideoReader(out))
    assert len(back) == 12
    for a, b in zip(frames, back):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 4  # BT.709 tagged: colours survive the trip
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("pix_fmt,expected", [("yuv420p", (34, 22)), ("yuv444p", (33, 21))])
def test_odd_frame_sizes(tmp_path, pix_fmt, expected):
    out = tmp_path / "odd.mp4"
    with videoio.VideoWriter(out, fps=10, pix_fmt=pix_fmt) as w:
        for f in solid_frames(3, 21, 33):
            w.write(f)
    assert w.size == (33, 21) and w.encoded_size == expected
    info = videoio.probe(out)
    assert (info.width, info.height) == expected
    first = next(iter(videoio.VideoReader(out)))
    assert np.abs(first[-1].astype(int) - first[-2].astype(int)).max() < 6  # padding repeats the edge


def test_writer_abort_and_exception_leave_target_untouched(tmp_path):
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"old")
    w = videoio.VideoWriter(out, fps=10)
    w.write(solid_frames(1, 32, 32)[0])
    w.abort()
    with pytest.raises(RuntimeError), videoio.GifWriter(tmp_path / "g.gif") as g:
        g.write(solid_frames(1, 8, 8)[0])
        raise RuntimeError("boom")
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]


def test_writer_without_frames_refuses(tmp_path):
    with pytest.raises(StylecamError, match="no frames"):
        videoio.VideoWriter(tmp_path / "e.mp4", fps=10).close()
    assert list(tmp_path.iterdir()) == []


def test_audio_is_muxed_from_another_file(tmp_path):
    src = lavfi_video(tmp_path / "src.mp4", seconds=1.0, audio=True)
    assert videoio.probe(src).has_audio
    out = tmp_path / "out.mp4"
    with videoio.VideoWriter(out, fps=25, audio_from=src) as w:
        for f in videoio.VideoReader(src):
            w.write(255 - f)
    assert videoio.probe(out).has_audio
    # A silent source is fine too: the audio map is optional.
    silent = lavfi_video(tmp_path / "silent.mp4", seconds=0.2)
    with videoio.VideoWriter(tmp_path / "o2.mp4", fps=25, audio_from=silent) as w:
        w.write(solid_frames(1, 64, 96)[0])
    assert not videoio.probe(tmp_path / "o2.mp4").has_audio


def test_gif_reader_composites_partial_frames(tmp_path):
    """Pillow's writer stores later frames as changed sub-rectangles; reading must put them back together."""
    base = np.zeros((40, 50, 3), np.uint8)
    frames = []
    for i in range(4):
        f = base.copy()
        f[5 + 5 * i:15 + 5 * i, 10:20] = (255, 255, 0)
        frames.append(f)
    path = tmp_path / "p.gif"
    Image.fromarray(frames[0]).save(path, save_all=True, append_images=[Image.fromarray(f) for f in frames[1:]],
                                    duration=50, loop=0, optimize=False)
    back = list(videoio.read_gif(path))
    assert len(back) == 4
    for f, b in zip(frames, back):
        assert np.abs(f.astype(int) - b.rgb.astype(int)).max() < 8 and b.alpha is None


def test_gif_writer_keeps_running_time(tmp_path):
    out = tmp_path / "t.gif"
    with videoio.GifWriter(out, loop=None) as g:
        for f in solid_frames(30, 10, 12):
            g.write(f, None, 1000 / 30)
    with Image.open(out) as im:
        assert "loop" not in im.info  # None = play once: no NETSCAPE block
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
    assert len(durations) == 30 and set(durations) <= {30, 40} and sum(durations) == 1000


def test_probe_goes_by_content_not_name(tmp_path):
    png_named_mp4 = tmp_path / "pic.mp4"
    Image.new("RGB", (20, 10)).save(png_named_mp4, format="PNG")
    assert videoio.probe(png_named_mp4).kind == "image"
    video_named_gif = lavfi_video(tmp_path / "v.mp4", seconds=0.2).rename(tmp_path / "v.gif")
    assert videoio.probe(video_named_gif).kind == "video"


def test_image_alpha_kept_where_format_has_it(tmp_path):
    rgb = np.full((9, 7, 3), 128, np.uint8)
    alpha = np.zeros((9, 7), np.uint8)
    alpha[:, 3:] = 255
    videoio.write_image(tmp_path / "a.png", rgb, alpha)
    videoio.write_image(tmp_path / "a.jpg", rgb, alpha)
    back = videoio.read_image(tmp_path / "a.png")
    assert np.array_equal(back.alpha, alpha)
    assert videoio.read_image(tmp_path / "a.jpg").alpha is None
    assert leftovers(tmp_path) == []
