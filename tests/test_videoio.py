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


def ffmpeg_exe() -> str:
    """The ffmpeg command line (imageio-ffmpeg, a test dependency) makes inputs and checks outputs
    independently of the PyAV code under test."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def lavfi_video(path: Path, size="96x64", rate=25, seconds=1.0, audio=False, pix_fmt="yuv420p") -> Path:
    """A test video made by ffmpeg itself, independent of the writer under test."""
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    cmd += ["-t", str(seconds), "-c:v", "libx264", "-pix_fmt", pix_fmt]
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
    back = list(videoio.read_animation(path))
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


# -- PyAV specifics: audio copy, timestamps, rotation, the simple reading API ---------------------------------
def audio_packets(path: Path) -> tuple[str, list[bytes]]:
    import av

    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        return a.codec_context.name, [bytes(p) for p in c.demux(a) if p.size]


def test_audio_is_copied_bit_exact_when_the_container_takes_it(tmp_path):
    """AAC into MP4: the very packets, not a re-encode (which would lose quality each time)."""
    src = lavfi_video(tmp_path / "src.mp4", seconds=1.0, audio=True)
    out = tmp_path / "out.mp4"
    with videoio.VideoWriter(out, fps=25, audio_from=src) as w:
        for f in videoio.VideoReader(src):
            w.write(f)
    assert audio_packets(out) == audio_packets(src)


def test_audio_the_container_cannot_hold_is_reencoded_to_aac(tmp_path):
    src = tmp_path / "pcm.mkv"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-f", "lavfi",
                    "-i", "sine=frequency=440:sample_rate=44100", "-t", "1", "-c:v", "libx264", "-c:a", "pcm_s16le",
                    str(src)], check=True)
    assert videoio.probe(src).audio_codec == "pcm_s16le"
    out = tmp_path / "out.mp4"
    with videoio.VideoWriter(out, fps=25, audio_from=src) as w:
        for f in videoio.VideoReader(src):
            w.write(f)
    codec, packets = audio_packets(out)
    assert codec == "aac" and len(packets) > 40  # ~1 s of 1024-sample frames at 44.1 kHz
    with videoio.VideoWriter(tmp_path / "out.mkv", fps=25, audio_from=src) as w:  # MKV takes PCM as it is
        w.write(solid_frames(1, 48, 64)[0])
    assert audio_packets(tmp_path / "out.mkv")[0] == "pcm_s16le"


def test_variable_frame_rate_timestamps_survive(tmp_path):
    """Frames written at their input times come back at the same times (a VFR clip keeps its timing)."""
    times = [0.0, 0.04, 0.2, 0.24, 0.5, 0.52, 1.0]
    out = tmp_path / "vfr.mp4"
    with videoio.VideoWriter(out, fps=25, time_base=Fraction(1, 1000)) as w:
        for t, f in zip(times, solid_frames(len(times), 48, 64)):
            w.write(f, t)
    back = [f.time_s for f in videoio.read_frames(out)]
    assert np.allclose(back, times, atol=1e-3)


def test_rotated_phone_video_comes_out_upright(tmp_path):
    """A display matrix (phones) is applied while decoding, as players do."""
    src = lavfi_video(tmp_path / "flat.mp4", size="96x64", seconds=0.2)
    rot = tmp_path / "rot.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-display_rotation", "90", "-i", str(src), "-c", "copy",
                    str(rot)], check=True)
    info = videoio.probe(rot)
    assert (info.width, info.height, info.rotation) == (64, 96, 90)
    flat, turned = next(videoio.iter_frames(src)), next(videoio.iter_frames(rot))
    assert turned.shape == (96, 64, 3)
    assert np.abs(np.rot90(flat, 1).astype(int) - turned.astype(int)).mean() < 2  # 90 deg counterclockwise


def test_iter_frames_reads_every_kind(tmp_path):
    """One call for any input kind: video, GIF and still image, RGB uint8."""
    lavfi_video(tmp_path / "v.mp4", size="64x48", seconds=0.4)
    Image.new("RGB", (20, 10), (1, 2, 3)).save(tmp_path / "s.png")
    Image.new("RGB", (8, 6)).save(tmp_path / "a.gif", save_all=True,
                                  append_images=[Image.new("RGB", (8, 6), (9 * i, 0, 0)) for i in (1, 2)])
    shapes = {name: [f.shape for f in videoio.iter_frames(tmp_path / name)] for name in ("v.mp4", "s.png", "a.gif")}
    assert shapes == {"v.mp4": [(48, 64, 3)] * 10, "s.png": [(10, 20, 3)], "a.gif": [(6, 8, 3)] * 3}


# -- issue 13 #7, #8, #9 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".webp", ".png"])
def test_animated_webp_and_apng_round_trip(tmp_path, ext):
    """Animated WebP and APNG are animations (durations, loop, alpha), not one still."""
    frames = solid_frames(4, 20, 30)
    alpha = np.full((20, 30), 255, np.uint8)
    alpha[:5, :5] = 0
    out = tmp_path / f"anim{ext}"
    with videoio.AnimationWriter(out, loop=2) as w:
        for f, d in zip(frames, (40, 100, 70, 30)):
            w.write(f, alpha, d)
    info = videoio.probe(out)
    assert (info.kind, info.n_frames, info.loop, info.width, info.height) == ("animation", 4, 2, 30, 20)
    back = list(videoio.read_animation(out))
    assert [f.duration_ms for f in back] == [40, 100, 70, 30]
    assert all(np.array_equal(f.alpha == 0, alpha == 0) for f in back)
    assert np.abs(back[2].rgb[10:, 10:].astype(int) - frames[2][10:, 10:].astype(int)).mean() < 6
    assert leftovers(tmp_path) == []


def test_odd_size_keeps_exact_size_by_default(tmp_path):
    out = tmp_path / "odd.mp4"
    with videoio.VideoWriter(out, fps=10) as w:
        for f in solid_frames(3, 251, 337):
            w.write(f)
    assert (w.pix_fmt, w.encoded_size) == ("yuv444p", (337, 251))
    assert [f.shape for f in videoio.iter_frames(out)] == [(251, 337, 3)] * 3
    assert "4:4:4" in videoio.odd_size_note((337, 251), "auto")
    assert "padded to 338x252" in videoio.odd_size_note((337, 251), "yuv420p")
    assert videoio.odd_size_note((338, 252), "auto") is None


def test_stale_temporaries_of_the_same_output_are_cleaned(tmp_path):
    """What kill -9 leaves (hidden .part files and folders) goes on the next write of the same output; a
    live writer's temporary (locked) and other outputs' temporaries stay."""
    stale_file = tmp_path / ".o.gif.0123abcd.part.gif"
    stale_file.write_bytes(b"x" * 1000)
    stale_dir = tmp_path / ".o.gif.89abcdef.part"
    stale_dir.mkdir()
    (stale_dir / "a.png").write_bytes(b"x")
    other = tmp_path / ".p.gif.0123abcd.part.gif"
    other.write_bytes(b"x")
    live = videoio.GifWriter(tmp_path / "o.gif")  # cleans the dead ones, holds its own
    assert not stale_file.exists() and not stale_dir.exists() and other.exists()
    live2 = videoio.GifWriter(tmp_path / "o.gif")
    assert live.tmp.exists()  # locked by a live writer: kept
    for w in (live, live2):
        w.write(solid_frames(1, 8, 8)[0])
        w.close()
    assert leftovers(tmp_path) == [other.name]
