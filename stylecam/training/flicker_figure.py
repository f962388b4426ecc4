"""docs/flicker_before_after.png: the same two consecutive frames, plain per-frame stylization vs stabilized.

Each row shows frame t and the flicker map |frame t - frame t-1 warped onto it| (the metric of
``stylecam bench --flicker``, before averaging; brighter = more boiling). Moving people should stay sharp
in the stabilized frame (no ghost) while the static background's map goes dark.

    python -m stylecam.training.flicker_figure          # webcam and pedestrian clips, shipped gogh, default stability
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

import stylecam
from stylecam import flicker, flow as fl
from stylecam.stabilize import DEFAULT_STRENGTH, Stabilizer

from .evaluate import ROOT

CLIPS = ROOT.parent / "shared" / "data" / "clips"
# a person sitting still (boiling strokes) and a street of walking people (where ghosts would show)
DEFAULT_CLIPS = (CLIPS / "vidstab_webcam_person.gif", CLIPS / "openpose_street_pedestrians.avi")
WIDTH = 480


def frames_pair(clip: Path, style: str, scale: float, stability: float, frame: int):
    """(input t-1, input t, plain t-1, plain t, stabilized t-1, stabilized t), the stabilizer run from frame 0."""
    if frame < 1:
        raise SystemExit("--frame must be at least 1: the flicker map compares a frame with the one before")
    st = stylecam.load(style, scale=scale)
    stab = Stabilizer(stability)
    prev = prev_x = None
    for i, x in enumerate(flicker.read_frames(clip, frame + 1)):
        y = st(x)
        z = stab(x, y)
        if i == frame:
            return prev_x, x, prev[0], y, prev[1], z
        prev, prev_x = (y, z), x
    raise SystemExit(f"{clip} has fewer than {frame + 1} frames")


def flicker_map(prev_in, cur_in, prev_out, cur_out) -> np.ndarray:
    pf = flicker.InputFlow()
    pf(prev_in)
    pair = pf(cur_in)
    d = cv2.absdiff(fl.warp(prev_out, pair.back), cur_out).mean(axis=2)
    d[~pair.valid] = 0
    heat = np.clip(d * 4, 0, 255).astype(np.uint8)  # x4: a 64/255 change is white
    return cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB), float(d[pair.valid].mean())


def build(clips: list[Path], style: str, scale: float, stability: float, frame: int) -> Image.Image:
    tiles = []
    for clip in clips:
        x0, x1, y0, y1, z0, z1 = frames_pair(clip, style, scale, stability, frame)
        for name, a, b in (("plain per-frame", y0, y1), (f"stabilized ({stability:g})", z0, z1)):
            heat, err = flicker_map(x0, x1, a, b)
            tiles.append((f"{clip.stem}, {name}: frame {frame}", b, f"flicker map, mean |change| {err:.2f}/255",
                          heat))
    label = 22
    size = lambda im: (WIDTH, round(im.shape[0] * WIDTH / im.shape[1]))  # noqa: E731
    height = sum(size(t[1])[1] + label for t in tiles)
    grid = Image.new("RGB", (2 * WIDTH, height), (24, 24, 24))
    draw = ImageDraw.Draw(grid)
    top = 0
    for text, img, text2, heat in tiles:
        wh = size(img)
        draw.text((6, top + 4), text, fill=(230, 230, 230))
        draw.text((WIDTH + 6, top + 4), text2, fill=(230, 230, 230))
        grid.paste(Image.fromarray(img).resize(wh, Image.LANCZOS), (0, top + label))
        grid.paste(Image.fromarray(heat).resize(wh, Image.LANCZOS), (WIDTH, top + label))
        top += wh[1] + label
    return grid


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", nargs="+", default=[str(c) for c in DEFAULT_CLIPS])
    ap.add_argument("--style", default="gogh")
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--stability", type=float, default=DEFAULT_STRENGTH)
    ap.add_argument("--frame", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "docs" / "flicker_before_after.png"))
    args = ap.parse_args(argv)
    img = build([Path(c) for c in args.clips], args.style, args.scale, args.stability, args.frame)
    img.save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
