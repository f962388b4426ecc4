"""The flicker metric on clips whose right answer is known: still, translating, noisy, cut."""
from __future__ import annotations

import json
import types

import cv2
import numpy as np
import pytest

from stylecam import flicker
from stylecam.errors import StylecamError


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour texture: DIS can track it, nothing in it repeats."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 255, (h, w, 3)).astype(np.float32)
    t = cv2.GaussianBlur(t, (0, 0), 2.0)
    t = (t - t.min()) / (t.max() - t.min()) * 255
    return t.astype(np.uint8)


def translating(n: int, dx: int = 3, dy: int = 2, h: int = 96, w: int = 128, seed: int = 0) -> list[np.ndarray]:
    """Crops of a bigger canvas moving by (dx, dy) px per frame: a pure translation, new content at the edge."""
    canvas = texture(h + n * dy + 1, w + n * dx + 1, seed)
    return [np.ascontiguousarray(canvas[k * dy:k * dy + h, k * dx:k * dx + w]) for k in range(n)]


def test_static_clip_scores_zero():
    frames = [texture(96, 128)] * 6
    assert flicker.warping_error(frames) < 1e-4


def test_translation_warps_back_to_zero():
    frames = translating(6)
    report = flicker.warping_report(frames)
    assert report.pairs == 5 and report.cuts == 0
    assert report.errors()["out"] < 0.01  # warped along (3, 2) px: matches; entering border masked
    # the same output held still while its input moves is far from zero: the flow was used, not ignored
    held = [frames[0]] * 6
    assert flicker.warping_error(frames, held) > 5 * report.errors()["out"] + 0.02


def test_per_frame_noise_scores_high():
    rng = np.random.default_rng(1)
    frames = [texture(96, 128)] * 6
    noisy = [np.clip(f.astype(np.int16) + rng.normal(0, 20, f.shape), 0, 255).astype(np.uint8) for f in frames]
    e = flicker.warping_error(frames, noisy)
    assert e > 0.05  # E|N(0,20)-N(0,20)| / 255 ~ 0.089
    assert e > 100 * flicker.warping_error(frames)


def test_scene_cut_pairs_are_skipped():
    a, b = translating(4, seed=1), translating(4, seed=2)
    b = [255 - f for f in b]  # a different scene: other content, other histogram
    report = flicker.warping_report(a + b)
    assert report.cuts == 1
    assert report.pairs == 6
    assert report.errors()["out"] < 0.01  # the cut pair (a huge difference) did not count


def test_meter_tracks_several_outputs_at_once():
    frames = translating(5)
    rng = np.random.default_rng(2)
    meter = flicker.FlickerMeter()
    for f in frames:
        noisy = np.clip(f.astype(np.int16) + rng.normal(0, 10, f.shape), 0, 255).astype(np.uint8)
        meter.update(f, {"clean": f, "noisy": noisy})
    e = meter.errors()
    assert e["clean"] < 0.01 < e["noisy"]
    assert 0.5 < meter.mean_valid_fraction <= 1.0


def test_mismatched_lengths_are_refused():
    frames = [texture(64, 64)] * 3
    with pytest.raises(ValueError):
        flicker.warping_error(frames, frames[:2])
    with pytest.raises(ValueError):
        flicker.warping_error(frames[:2], frames)


def test_farneback_agrees_on_translation():
    frames = translating(5)
    assert flicker.warping_error(frames, method="farneback") < 0.015
    with pytest.raises(StylecamError):
        flicker.warping_error(frames, method="nope")


@pytest.mark.slow  # runs a real stylizer: seconds alone, a minute on a loaded 2-core machine
def test_bench_flicker_json(styles_env, tmp_path, capsys):
    import imageio.v3 as iio

    clip = tmp_path / "clip.gif"
    iio.imwrite(clip, np.stack(translating(6, h=64, w=80)), duration=50, loop=0)
    args = types.SimpleNamespace(flicker=str(clip), style="tfast", stability=None, json=True, scale=1.0,
                                 device="cpu", precision="fp32")
    assert flicker.bench_flicker(args) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["frames"] == 6 and r["size"] == [80, 64] and r["cuts_skipped"] == 0
    assert r["error"]["input"] < 0.03  # GIF palette dithering is the only change along the flow
    for k in ("stylized", "stabilized"):
        assert np.isfinite(r["error"][k])
    assert r["fps"]["stylize"] > 0 and r["fps"]["stylize_stabilize"] > 0


def test_bench_flicker_missing_clip(styles_env):
    args = types.SimpleNamespace(flicker="/nonexistent/clip.mp4", style="tfast")
    with pytest.raises(StylecamError, match="does not exist"):
        flicker.bench_flicker(args)
