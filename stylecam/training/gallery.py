"""docs/gallery.png: held-out photos through every shipped style, so users can pick a style by looking.

    python -m stylecam.training.gallery            # all of weights/, 4 photos
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
from .evaluate import DEFAULT_DATASET, ROOT, square

# Held-out photos with people, a street and a landscape read best in a gallery.
DEFAULT_PICKS = (0, 2, 5, 7)


def build(styles: list[str], photos: list[Path], tile: int = 256, label_h: int = 22) -> Image.Image:
    rows = len(styles) + 1
    cols = len(photos) + 1
    grid = Image.new("RGB", (cols * tile, rows * (tile + label_h)), (24, 24, 24))
    draw = ImageDraw.Draw(grid)
    srcs = [square(load_rgb(p), tile) for p in photos]
    draw.text((6, 4), "photo (held out)", fill=(230, 230, 230))
    for j, im in enumerate(srcs):
        grid.paste(im, ((j + 1) * tile, label_h))
    for i, name in enumerate(styles, start=1):
        s = stylecam.load(name)
        y0 = i * (tile + label_h)
        info = s.info
        draw.text((6, y0 + 4), f"{info.name}: {info.display_name} - {info.credit.get('artist', '')}"
                               f" ({info.arch})", fill=(230, 230, 230))
        painting = ROOT / info.training.get("style_image", "")
        if painting.is_file():
            grid.paste(square(load_rgb(painting), tile), (0, y0 + label_h))
        for j, im in enumerate(srcs):
            out = s(np.asarray(im))
            grid.paste(Image.fromarray(out), ((j + 1) * tile, y0 + label_h))
    return grid


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "gallery.png"))
    p.add_argument("--styles", nargs="*", help="default: every style in weights/")
    p.add_argument("--dataset", default=str(DEFAULT_DATASET))
    p.add_argument("--tile", type=int, default=256)
    args = p.parse_args(argv)
    styles = args.styles or sorted(weights_io.available_styles())
    hold = holdout(find_images(args.dataset), 8)
    photos = [hold[i] for i in DEFAULT_PICKS if i < len(hold)]
    img = build(styles, photos, args.tile)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    img.save(args.out, optimize=True)
    print(f"wrote {args.out} ({len(styles)} styles x {len(photos)} photos)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
