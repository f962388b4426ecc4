"""docs/gallery.png: held-out photos through every shipped style, so users can pick a style by looking.

    python -m stylecam.training.gallery            # all of weights/, 4 photos
    python -m stylecam.training.gallery --frame 640x480 --styles gogh x.safetensors --out docs/x.jpg

``--frame WxH`` shows photos and painting at the size users see, painting scaled to the frame's height: at the
same scale, its strokes and the output's can be compared directly.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import stylecam
from stylecam import weights as weights_io

from .data import find_images, holdout, load_rgb
from .evaluate import DEFAULT_DATASET, ROOT, frame

# Held-out photos with people, a street and a landscape read best in a gallery.
DEFAULT_PICKS = (0, 2, 5, 7)


def build(styles: list[str], photos: list[Path], tile: tuple[int, int] = (256, 256),
          label_h: int = 22) -> Image.Image:
    rows = len(styles) + 1
    cols = len(photos) + 1
    tw, th = tile
    grid = Image.new("RGB", (cols * tw, rows * (th + label_h)), (24, 24, 24))
    draw = ImageDraw.Draw(grid)
    srcs = [frame(load_rgb(p), tile) for p in photos]
    draw.text((6, 4), "photo (held out)", fill=(230, 230, 230))
    for j, im in enumerate(srcs):
        grid.paste(im, ((j + 1) * tw, label_h))
    for i, name in enumerate(styles, start=1):
        s = stylecam.load(name)
        y0 = i * (th + label_h)
        info = s.info
        draw.text((6, y0 + 4), f"{info.name}: {info.display_name} - {info.credit.get('artist', '')}"
                               f" ({info.arch})", fill=(230, 230, 230))
        painting = ROOT / info.training.get("style_image", "")
        if painting.is_file():
            grid.paste(frame(load_rgb(painting), tile), (0, y0 + label_h))
        for j, im in enumerate(srcs):
            out = s(np.asarray(im))
            grid.paste(Image.fromarray(out), ((j + 1) * tw, y0 + label_h))
    return grid


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "gallery.png"))
    p.add_argument("--styles", nargs="*", help="default: every style in weights/")
    p.add_argument("--dataset", default=str(DEFAULT_DATASET))
    p.add_argument("--tile", type=int, default=256, help="square tiles of this side")
    p.add_argument("--frame", help="WxH tiles instead (e.g. 640x480: the size users see)")
    p.add_argument("--picks", type=int, nargs="*", default=list(DEFAULT_PICKS), help="held-out photo indices")
    args = p.parse_args(argv)
    tile = (args.tile, args.tile)
    if args.frame:
        w, _, h = args.frame.partition("x")
        tile = (int(w), int(h))
    styles = args.styles or sorted(weights_io.available_styles())
    hold = holdout(find_images(args.dataset), 8)
    photos = [hold[i] for i in args.picks if i < len(hold)]
    img = build(styles, photos, tile)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    img.save(args.out, optimize=True)
    print(f"wrote {args.out} ({len(styles)} styles x {len(photos)} photos)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
