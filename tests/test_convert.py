"""`stylecam convert` end to end with real weights, ffmpeg and Pillow: what survives, what is refused."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_videoio import audio_packets, ffmpeg_exe, lavfi_video

import stylecam
from stylecam import cli, videoio
from stylecam.convert import convert

ROOT = Path(__file__).resolve().parent.parent
DURATIONS = [40, 100, 70]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """ffmpeg decodes and encodes beside the net on the same two cores; a second torch thread only spins
    (measured: 40x slower per frame on a busy machine), so these tests run the net on one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_gif(path: Path, size=(64, 48)) -> tuple[Path, list[np.ndarray]]:
    """Three frames, 40/100/70 ms, loop 3, a transparent square that moves (alpha per frame)."""
    w, h = size
    frames, alphas = [], []
    for i in range(len(DURATIONS)):
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None]
        rgb[..., 1] = 60 * i
        rgb[..., 2] = np.linspace(255, 0, h, dtype=np.uint8)[:, None]
        alpha = np.full((h, w), 255, np.uint8)
        alpha[4 + 6 * i:20 + 6 * i, 5:25] = 0
        frames.append(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"))
        alphas.append(alpha)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=DURATIONS, loop=3, disposal=2)
    return path, alphas


def gif_meta(path: Path):
    with Image.open(path) as im:
        loop = im.info.get("loop")
        durations, alphas, rgbs = [], [], []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info.get("duration"))
            rgba = np.asarray(im.convert("RGBA"))
            alphas.append(rgba[..., 3].copy())
            rgbs.append(rgba[..., :3].copy())
    return loop, durations, alphas, rgbs


def ffmpeg_info(path: Path) -> str:
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True,
                          text=True, check=False).stderr


def count_frames(path: Path) -> int:
    out = subprocess.run([ffmpeg_exe(), "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy",
                          "-f", "null", "-"], capture_output=True, text=True, check=False).stderr
    return int(re.findall(r"frame=\s*(\d+)", out)[-1])


def stylecam_cli(*args: str) -> int:
    return cli.main(["convert", *args, "-q"])


def only_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- what survives ---------------------------------------------------------------------------------------------
def test_gif_keeps_durations_loop_and_transparency(styles_env, tmp_path):
    src, alphas = make_gif(tmp_path / "in.gif")
    out = tmp_path / "out.gif"
    assert stylecam_cli(str(src), str(out), "--style", "tfast") == 0
    loop, durations, out_alphas, out_rgbs = gif_meta(out)
    assert (loop, durations) == (3, DURATIONS)
    for a, b in zip(alphas, out_alphas):
        assert np.array_equal(a == 0, b == 0)
    _, _, _, in_rgbs = gif_meta(src)
    opaque = alphas[0] == 255
    assert np.abs(out_rgbs[0].astype(int) - in_rgbs[0].astype(int))[opaque].mean() > 20  # really painted
    assert only_files(tmp_path) == ["in.gif", "out.gif"]


def test_parallel_workers_write_the_same_frames_in_order(tmp_path):
    """Two workers finishing out of order (random delays) and the in-order stabilizer give the very frames
    one worker gives."""
    src = lavfi_video(tmp_path / "in.mp4", size="64x48", seconds=1.0)
    rng = np.random.default_rng(0)

    def jittery(x):
        time.sleep(float(rng.uniform(0, 0.01)))
        return (255 - x) // 2 + (x // 7) * 3  # a frame-dependent, pixel-exact mapping

    outs = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}.gif"
        convert(src, out, jittery, progress=False, stability=0.8, workers=workers)
        outs.append(gif_meta(out)[3])
    assert len(outs[0]) == len(outs[1]) == 25
    for a, b in zip(*outs):
        assert np.array_equal(a, b)


def test_video_keeps_size_fps_frames_and_audio(styles_env, data_dir, tmp_path):
    src = data_dir / "clips" / "openpose_street_pedestrians.avi"
    out = tmp_path / "out.mp4"
    stylizer = stylecam.load("tfast", scale=0.05)  # tiny net input keeps this fast; the output is full size
    convert(src, out, stylizer, progress=False)
    info, src_info = videoio.probe(out), videoio.probe(src)
    assert (info.width, info.height) == (src_info.width, src_info.height) == (1280, 720)
    assert info.fps == src_info.fps == 50
    assert count_frames(out) == count_frames(src)
    assert re.search(r"Stream #\d+:\d+.*Audio: aac", ffmpeg_info(out))
    assert audio_packets(out) == audio_packets(src)  # copied, not re-encoded
    assert only_files(tmp_path) == ["out.mp4"]


def test_video_to_gif_and_gif_to_video(styles_env, tmp_path):
    video = lavfi_video(tmp_path / "clip.mp4", size="64x48", rate=25, seconds=0.4)
    stylizer = stylecam.load("tfast")
    convert(video, tmp_path / "clip.gif", stylizer, progress=False, stability=0.5)  # through the stabilizer too
    loop, durations, alphas, _ = gif_meta(tmp_path / "clip.gif")
    assert (loop, durations) == (0, [40] * 10)
    assert all(a.min() == 255 for a in alphas)

    gif, _ = make_gif(tmp_path / "anim.gif")
    convert(gif, tmp_path / "anim.mp4", stylizer, progress=False)
    info = videoio.probe(tmp_path / "anim.mp4")
    assert (info.width, info.height, info.fps) == (64, 48, 50)  # 10 ms steps capped at 50 fps
    assert count_frames(tmp_path / "anim.mp4") == round(sum(DURATIONS) * 50 / 1000)  # 210 ms at 50 fps


def test_image_to_image_keeps_size_and_alpha(styles_env, tmp_path):
    rgba = np.zeros((37, 51, 4), np.uint8)
    rgba[..., :3] = 90
    rgba[..., 3] = 255
    rgba[:10, :10, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(rgba[..., :3]).save(tmp_path / "b.jpg")
    assert stylecam_cli(str(tmp_path / "a.png"), str(tmp_path / "a_out.png"), "--style", "tfast") == 0
    assert stylecam_cli(str(tmp_path / "b.jpg"), str(tmp_path / "b_out.webp"), "--style", "tclassic") == 0
    with Image.open(tmp_path / "a_out.png") as im:
        assert im.size == (51, 37) and im.mode == "RGBA"
        assert np.array_equal(np.asarray(im)[..., 3], rgba[..., 3])
    with Image.open(tmp_path / "b_out.webp") as im:
        assert im.size == (51, 37)


def test_folder_to_folder(styles_env, tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(src / "one.png")
    Image.new("RGB", (33, 21), (200, 10, 30)).save(src / "two.jpg")
    (src / "notes.txt").write_text("not an image")
    dst = tmp_path / "painted"
    assert stylecam_cli(str(src), str(dst), "--style", "tfast") == 0
    assert only_files(dst) == ["one.png", "two.jpg"]
    with Image.open(dst / "two.jpg") as im:
        assert im.size == (33, 21)
    assert only_files(tmp_path) == ["painted", "photos"]


# -- what is refused -------------------------------------------------------------------------------------------
def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    gif, _ = make_gif(tmp / "ok.gif")
    (tmp / "empty.gif").write_bytes(b"")
    (tmp / "text.mp4").write_text("hello, I am not a video\n" * 20)
    full = lavfi_video(tmp / "full.mp4", size="96x64", seconds=2)
    data = full.read_bytes()
    (tmp / "cut.mp4").write_bytes(data[: len(data) // 2])  # faststart: header intact, frames missing
    full.unlink()
    (tmp / "link.gif").symlink_to(gif)
    return {
        "missing": ([str(tmp / "nope.gif"), str(tmp / "o.gif")], "does not exist"),
        "empty": ([str(tmp / "empty.gif"), str(tmp / "o.gif")], "empty"),
        "text as mp4": ([str(tmp / "text.mp4"), str(tmp / "o.mp4")], "not an image, GIF or video"),
        "truncated": ([str(tmp / "cut.mp4"), str(tmp / "o.mp4")], "truncated"),
        "same path": ([str(gif), str(tmp / "sub" / ".." / "ok.gif")], "is the input itself"),
        "same via symlink": ([str(gif), str(tmp / "link.gif")], "is the input itself"),
        "unsupported output": ([str(gif), str(tmp / "o.avi")], "unsupported output type"),
        "no output folder": ([str(gif), str(tmp / "nowhere" / "o.gif")], "does not exist; create it"),
        "animation as still image": ([str(gif), str(tmp / "o.jpg")], "write a .gif or .mp4"),
        "unknown style": ([str(gif), str(tmp / "o.gif"), "--style", "no_such_style"], "unknown style"),
    }


def test_bad_inputs_one_line_each_and_no_output(styles_env, tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    cases = _bad_inputs(tmp_path)
    before = only_files(tmp_path)
    for name, (args, expected) in cases.items():
        if "--style" not in args:
            args = args + ["--style", "tfast"]
        rc = stylecam_cli(*args)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, name
        assert len(err) == 1 and err[0].startswith("stylecam: error: ") and expected in err[0], (name, err)
    assert only_files(tmp_path) == before  # nothing written, no temporary files
    assert (tmp_path / "ok.gif").stat().st_size > 0


def run_cli(*args: str, env: dict, **kw) -> subprocess.Popen:
    env = {**env, "OMP_NUM_THREADS": "1"}
    # A runner started in the background (CI, nohup ... &) passes SIGINT down as ignored, and Python then never
    # raises KeyboardInterrupt; give the child the default disposition a terminal user's Ctrl-C would meet.
    return subprocess.Popen([sys.executable, "-m", "stylecam", "convert", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw)


@pytest.mark.parametrize("case", ["truncated"])  # fails mid-decode: the temporary file must go too
def test_real_cli_bad_input(styles_env, tmp_path, case):
    (tmp_path / "sub").mkdir()
    args, expected = _bad_inputs(tmp_path)[case]
    before = only_files(tmp_path)
    if "--style" not in args:
        args = args + ["--style", "tfast"]
    p = run_cli(*args, env=dict(os.environ))
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stylecam: error: ") and expected in lines[0]
    assert only_files(tmp_path) == before


def start_long_convert(tmp_path: Path) -> subprocess.Popen:
    """A 20 s clip converting into tmp_path/out.mp4, returned once its temporary output exists."""
    src = lavfi_video(tmp_path / "long.mp4", size="320x240", rate=25, seconds=20)
    p = run_cli(str(src), str(tmp_path / "out.mp4"), "--style", "tclassic", env=dict(os.environ))
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".out.mp4.*")):
        assert p.poll() is None, p.communicate()
        time.sleep(0.05)
    assert list(tmp_path.glob(".out.mp4.*")), "conversion never started writing"
    return p


def test_ctrl_c_leaves_no_partial_file(styles_env, tmp_path):
    p = start_long_convert(tmp_path)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=180)  # generous: a loaded CI machine is slow to unwind
    assert p.returncode == 130, err
    assert "interrupted" in err
    assert only_files(tmp_path) == ["long.mp4"]


def test_cli_stabilizes_by_default(tmp_path):
    """`stylecam convert` without --stability is steadier than with --stability 0: a still picture with sensor
    noise makes the net's output boil, and the default stabilizer calms it."""
    import cv2

    from stylecam.flicker import FlickerMeter, read_frames

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128]
    still = np.stack([xx * 2, yy * 2, (xx + yy)], -1).astype(np.float32)
    src = tmp_path / "noisy.avi"
    vw = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (128, 96))
    for _ in range(20):
        vw.write(np.clip(still + rng.normal(0, 6, still.shape), 0, 255).astype(np.uint8))
    vw.release()
    errors = {}
    for name, extra in (("default", []), ("off", ["--stability", "0"])):
        out = tmp_path / f"{name}.mp4"
        assert cli.main(["convert", str(src), str(out), "--style", "gogh", "--quiet", *extra]) == 0
        meter = FlickerMeter()
        for x, y in zip(read_frames(src), read_frames(out)):
            meter.update(x, {"out": y})
        errors[name] = meter.errors()["out"]
    assert errors["default"] < 0.6 * errors["off"], errors


# -- issue 13: nothing lost, no tracebacks, no silent surprises -----------------------------------------------
def noise_image(path: Path, size=(160, 120), seed=0) -> Path:
    """Noise compresses badly, so a few of these exceed a small file-size limit."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_folder_with_a_bad_image_keeps_the_rest(styles_env, tmp_path, capsys):
    """#3: one damaged photo no longer throws the others away; subfolders are mirrored; the "skipping" note
    for non-images prints once (#13)."""
    src = tmp_path / "photos"
    (src / "sub" / "deeper").mkdir(parents=True)
    noise_image(src / "a.png")
    good = noise_image(src / "b.jpg").read_bytes()
    (src / "bad.jpg").write_bytes(good[: len(good) // 3])  # truncated JPEG
    noise_image(src / "sub" / "c.png")
    noise_image(src / "sub" / "deeper" / "d.jpg")
    (src / "notes.txt").write_text("not an image")
    dst = tmp_path / "painted"
    assert stylecam_cli(str(src), str(dst), "--style", "tfast") == 1
    err = capsys.readouterr().err
    files = sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file())
    assert files == ["a.png", "b.jpg", "sub/c.png", "sub/deeper/d.jpg"]
    assert re.search(r"^stylecam: skipped bad.jpg: .*truncated", err, re.M)
    assert "converted 4 of 5 images" in err and err.count("skipping 1 file(s) that are not images") == 1
    assert only_files(tmp_path) == ["painted", "photos"]


@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """Files in this process capped at ``nbytes``: a real failing write (EFBIG), like a full disk. Python
    ignores SIGXFSZ, so the write returns the error instead of killing the process."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.mark.parametrize("out", ["o.gif", "o.jpg", "o.mp4", "folder_out", "/proc/o.gif"])
def test_failing_write_is_one_line_and_leaves_nothing(styles_env, tmp_path, out, capsys):
    """#5: a full disk (here: a file-size limit) or an unwritable place gives one line and exit 2."""
    work = tmp_path / "w"
    work.mkdir()
    if out == "o.gif":
        frames = [Image.open(noise_image(tmp_path / f"f{i}.png", seed=i)) for i in range(3)]
        frames[0].save(work / "in.gif", save_all=True, append_images=frames[1:], duration=50)
        src = work / "in.gif"
    elif out == "o.mp4":
        src = work / "in.mp4"
        subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-vf",
                        "noise=alls=100:allf=t", "-t", "0.5", "-c:v", "libx264", "-crf", "10", str(src)], check=True)
    elif out == "folder_out":
        src = work / "in"
        src.mkdir()
        for i in range(3):
            noise_image(src / f"{i}.png", seed=i)
    else:
        src = noise_image(work / "in.png", size=(320, 240))
    before = only_files(work)
    target = out if out.startswith("/") else str(work / out)
    stylecam.load("tfast")  # (imports done before the limit)
    with file_size_limit(12000):  # half-strength keeps the noise, so every output is larger than this
        rc = stylecam_cli(str(src), target, "--style", "tfast", "--strength", "0.5")
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("stylecam: error: "), lines
    assert "File too large" in lines[0] or out.startswith("/proc"), lines
    assert only_files(work) == before


def test_animated_webp_and_apng_convert_animated(styles_env, tmp_path):
    """#7: 3 frames in, 3 frames out, with their durations and loop count (was: one still, exit 0)."""
    frames = [Image.open(noise_image(tmp_path / f"f{i}.png", size=(40, 30), seed=i)) for i in range(3)]
    frames[0].save(tmp_path / "in.webp", save_all=True, append_images=frames[1:], duration=[40, 100, 70], loop=2)
    frames[0].save(tmp_path / "in.png", save_all=True, append_images=frames[1:], duration=[40, 100, 70], loop=2)
    for src, dst in (("in.webp", "out.webp"), ("in.png", "out.png"), ("in.png", "out.gif")):
        # half strength keeps the frames distinct (WebP merges identical frames into one)
        assert stylecam_cli(str(tmp_path / src), str(tmp_path / dst), "--style", "tfast", "--strength", "0.5") == 0
    for name in ("out.webp", "out.png", "out.gif"):
        with Image.open(tmp_path / name) as im:
            durations = []
            for i in range(im.n_frames):
                im.seek(i)
                im.load()  # WebP: the duration is known once the frame is decoded
                durations.append(im.info["duration"])
            assert (im.n_frames, durations, im.info.get("loop")) == (3, [40, 100, 70], 2), name


def test_odd_sized_video_keeps_its_size_and_says_how(styles_env, tmp_path, capsys):
    """#8: 337x251 stays 337x251 (4:4:4), with one line saying so; --even-size pads to 4:2:0 338x252."""
    src = lavfi_video(tmp_path / "odd.mp4", size="337x251", seconds=0.2, pix_fmt="yuv444p")
    assert stylecam_cli(str(src), str(tmp_path / "out.mp4"), "--style", "tfast", "--stability", "0") == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "337x251 is odd-sized" in err[0] and "4:4:4" in err[0]
    assert stylecam_cli(str(src), str(tmp_path / "even.mp4"), "--style", "tfast", "--stability", "0",
                        "--even-size") == 0
    assert "padded to 338x252" in capsys.readouterr().err
    sizes = [(i.width, i.height) for i in map(videoio.probe, (tmp_path / "out.mp4", tmp_path / "even.mp4"))]
    assert sizes == [(337, 251), (338, 252)]


def test_killed_run_leftovers_are_cleaned_by_the_next_run(styles_env, tmp_path):
    """#9: kill -9 mid-convert leaves a hidden temporary; the next run of the same output removes it."""
    p = start_long_convert(tmp_path)
    p.kill()
    p.communicate()
    assert list(tmp_path.glob(".out.mp4.*")), "the killed run left nothing to clean"
    short = lavfi_video(tmp_path / "short.mp4", size="64x48", seconds=0.2)
    assert stylecam_cli(str(short), str(tmp_path / "out.mp4"), "--style", "tfast") == 0
    assert only_files(tmp_path) == ["long.mp4", "out.mp4", "short.mp4"]


def test_small_convert_surprises(styles_env, tmp_path, capsys):
    """#13: folder -> x.mp4 is refused (was: a folder named x.mp4); stills refuse --stability 1 and nan;
    replacing an existing output says so."""
    photos = tmp_path / "photos"
    photos.mkdir()
    noise_image(photos / "a.png", size=(20, 16))
    assert stylecam_cli(str(photos), str(tmp_path / "x.mp4"), "--style", "tfast") == 2
    assert "looks like a file name" in capsys.readouterr().err and not (tmp_path / "x.mp4").exists()
    for k in ("1", "nan", "-0.5"):
        assert stylecam_cli(str(photos / "a.png"), str(tmp_path / "o.png"), "--style", "tfast", "--stability", k) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--stability must be at least 0 and below 1" in err[0], k
    assert stylecam_cli(str(photos / "a.png"), str(tmp_path / "o.png"), "--style", "tfast") == 0
    assert "replaced" not in capsys.readouterr().err
    assert stylecam_cli(str(photos / "a.png"), str(tmp_path / "o.png"), "--style", "tfast") == 0
    assert f"replaced the earlier {tmp_path / 'o.png'}" in capsys.readouterr().err
