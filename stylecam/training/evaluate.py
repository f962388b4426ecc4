"""Held-out quality numbers: how near each style's output is to its painting (style) and to the photo (content).

    python -m stylecam.training.evaluate weights/*.safetensors [--gatys 2] [--markdown]

Measured with VGG16 (Johnson et al.'s loss network, always, whatever a style was trained with) on the trainer's
held-out photos (same selection rule), each cropped to a 320x240 frame:

- style distance: mean over relu1_2, relu2_2, relu3_3, relu4_3 of ||G(out) - G(painting)||^2 / ||G(painting)||^2,
  G = F F^T / (h w), with the painting resized to the photo's short side (240);
- content distance: ||F(out) - F(photo)||^2 / ||F(photo)||^2 at relu3_3;
- hatch: on the same photos at 640x480 (the size users see), how much of the output's fine detail where the
  photo is flat (sky, walls, snow) is a regular pattern (stripes, a lattice) rather than strokes: see :func:`hatch`.

Each row also gives the unpainted photo's distances (content 0) and, with ``--gatys N``, those of direct
optimization (``stylecam paint``, L-BFGS on VGG16) on the first N photos: the optimum a feed-forward net chases.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch
from PIL import Image

from stylecam import weights as weights_io
from stylecam.engine import run_padded
from stylecam.errors import StylecamError

from .data import find_images, holdout, load_rgb, style_tensor, to_tensor
from .losses import ContentLoss, StyleLoss
from .lossnets import VGG16
from .report import stylize_pil

ROOT = Path(__file__).resolve().parents[2]  # the repository (recipes, docs, ../shared)
DEFAULT_DATASET = ROOT.parent / "shared" / "data" / "content"
FRAME = (320, 240)
CONTENT_LAYER = VGG16.layers.index("relu3_3")  # among the style features of a VGG16() with all four layers
GATYS_STEPS = 200
HATCH_FRAME = (640, 480)
HATCH_WINDOW = 64  # px: flat windows of the photo examined, on a half-overlapping grid
HATCH_FLAT = 6.0  # a window is flat when the photo's grey std in it is below this (0..255): sky, walls
HATCH_PEAKS = 8  # strongest frequency bins kept (4 +/- pairs): a stripe or lattice puts its energy there
HATCH_VISIBLE = 1.0  # grey levels (RMS) of fine detail below which a window shows no pattern at all


def frame(im: Image.Image, size: Tuple[int, int]) -> Image.Image:
    """Scale to cover ``size`` (w, h), aspect kept, and crop the middle: a webcam-shaped view of the photo."""
    w, h = size
    s = max(w / im.size[0], h / im.size[1])
    im = im.resize((max(w, round(im.size[0] * s)), max(h, round(im.size[1] * s))), Image.BICUBIC)
    x, y = (im.size[0] - w) // 2, (im.size[1] - h) // 2
    return im.crop((x, y, x + w, y + h))


class Distances:
    """VGG16 style distance to one painting and content distance to a photo, for images in 0..1 (1x3xHxW).

    The painting's Gram matrices depend on the scale it is seen at, so its target is made per short side of
    the image measured (the painting resized to that short side) and kept for the next image of that size."""

    def __init__(self, net: torch.nn.Module, painting: Image.Image):
        self.net, self.painting = net, painting
        self.targets: Dict[int, StyleLoss] = {}
        self.content = ContentLoss()

    def style_target(self, short_side: int) -> StyleLoss:
        if short_side not in self.targets:
            feats, _ = self.net(style_tensor(self.painting, short_side))
            self.targets[short_side] = StyleLoss(feats)
        return self.targets[short_side]

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, photo_feats: Sequence[torch.Tensor]) -> Dict[str, float]:
        return self.of_features(self.net(image)[0], photo_feats)

    @torch.no_grad()
    def of_features(self, feats: Sequence[torch.Tensor], photo_feats: Sequence[torch.Tensor]) -> Dict[str, float]:
        """The same from the image's VGG16 features (the painting's scale: their first layer's short side), and
        the style distance per layer (``relu1_2`` ... ``relu4_3``), whose mean it is."""
        layers = self.style_target(min(feats[0].shape[-2:])).per_layer(feats)
        return {"style": float(layers.mean()),
                "content": float(self.content(feats[CONTENT_LAYER], photo_feats[CONTENT_LAYER])),
                **{name: float(v) for name, v in zip(VGG16.layers, layers)}}


def hatch(photo: np.ndarray, out: np.ndarray) -> float | None:
    """How regular the texture is that the output puts where the photo is flat (sky, walls, snow): the share
    (0..1) of its fine-detail energy held by its ``HATCH_PEAKS`` strongest frequencies, or None if no window
    of the photo is flat.

    A net that must put the painting's texture statistics into a flat region tends to fill it with a stripe or
    lattice (a hatch, or its own grid) rather than strokes. A regular pattern puts its energy in a few peaks of
    the spectrum of the fine detail (grey minus a sigma-3 blur: periods up to ~10 px); brush strokes and noise
    spread it over many frequencies. Per flat window (Hann-windowed FFT), that share; a window where the output
    has no visible detail (RMS below ``HATCH_VISIBLE``) counts 0; the mean over windows. Measured on synthetic
    outputs: a stripe scores 0.86, a lattice 0.54, blurred random blotches 0.10, white noise 0.01."""
    g_photo = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.float32)
    g_out = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(np.float32)
    detail = g_out - cv2.GaussianBlur(g_out, (0, 0), 3.0)
    n = HATCH_WINDOW
    hann = np.outer(np.hanning(n), np.hanning(n)).astype(np.float32)
    norm = n * n * float((hann ** 2).sum())  # Parseval with the window's energy: sum of bins -> mean square
    shares = []
    for y in range(0, g_photo.shape[0] - n + 1, n // 2):
        for x in range(0, g_photo.shape[1] - n + 1, n // 2):
            if g_photo[y:y + n, x:x + n].std() >= HATCH_FLAT:
                continue
            d = detail[y:y + n, x:x + n]
            power = np.abs(np.fft.fft2((d - d.mean()) * hann)) ** 2
            total = float(power.sum())
            if total / norm < HATCH_VISIBLE ** 2:
                shares.append(0.0)
                continue
            shares.append(float(np.partition(power.ravel(), -HATCH_PEAKS)[-HATCH_PEAKS:].sum()) / total)
    return float(np.mean(shares)) if shares else None


def painting_of(info: weights_io.StyleInfo, weights: Path) -> Path:
    """The painting a weights file records in its provenance (training.style_image, relative to the repo)."""
    recorded = info.training.get("style_image") or info.recipe.get("style_image")
    path = ROOT / recorded if recorded else None
    if path is None or not path.is_file():
        raise StylecamError(f"{weights}: its painting {path or '(not recorded)'} is not available; "
                            f"pass it with --style-image")
    return path


def _mean(rows: List[Dict[str, float]]) -> Dict[str, float]:
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


def evaluate(weights: Sequence[Path], photos: Sequence[Path], size: Tuple[int, int] = FRAME, gatys: int = 0,
             gatys_steps: int = GATYS_STEPS, style_image: Path | None = None) -> Dict[str, Dict[str, object]]:
    """weights file -> {"painting", "style", "content", "photo_style", "photo_content"[, "gatys_style",
    "gatys_content", "gatys_photos"]}, averaged over ``photos``; the Gatys optimum over the first ``gatys``."""
    from .paint import paint

    styles = []
    for w in weights:  # every file and painting first: a missing one fails before minutes of work
        model, info = weights_io.load(w)
        styles.append((w, model.eval(), Path(style_image) if style_image else painting_of(info, w)))
    net = VGG16()
    images = [load_rgb(p) for p in photos]
    frames = [frame(im, size) for im in images]
    tensors = [to_tensor(im)[None] / 255.0 for im in frames]
    with torch.no_grad():
        photo_feats = [net(x)[0] for x in tensors]
    big = [frame(im, HATCH_FRAME) for im in images]
    per_painting: Dict[Path, Dict[str, float]] = {}
    results: Dict[str, Dict[str, object]] = {}
    for w, model, painting in styles:
        dist = Distances(net, load_rgb(painting))
        if painting not in per_painting:  # the references depend only on the painting: once per painting
            ref = {f"photo_{k}": v for k, v in _mean([dist.of_features(f, f) for f in photo_feats]).items()}
            if gatys:
                optimized = [paint(im, dist.painting, size=max(size), steps=gatys_steps, loss_net="vgg16", net=net,
                                   style_size=min(size), progress=False) for im in frames[:gatys]]
                opt = _mean([dist(to_tensor(o)[None] / 255.0, f) for o, f in zip(optimized, photo_feats)])
                ref.update({f"gatys_{k}": v for k, v in opt.items()}, gatys_photos=len(optimized))
            per_painting[painting] = ref
        with torch.no_grad():
            outs = [run_padded(model, x * 255.0).clamp(0, 255) / 255.0 for x in tensors]
        row = _mean([dist(o, f) for o, f in zip(outs, photo_feats)])
        row.update(_hatch(model, big))
        results[str(w)] = {"painting": painting.name, **row, **per_painting[painting]}
    return results


def _hatch(model: torch.nn.Module, photos: Sequence[Image.Image]) -> Dict[str, float]:
    """{"hatch": mean over the photos that have flat windows} (nothing if none has)."""
    scores = [hatch(np.asarray(im), np.asarray(stylize_pil(model, im))) for im in photos]
    scores = [v for v in scores if v is not None]
    return {"hatch": sum(scores) / len(scores)} if scores else {}


COLUMNS = [("style", "style"), ("content", "content"), ("hatch", "hatch"), ("photo_style", "photo style"),
           ("gatys_style", "Gatys style"), ("gatys_content", "Gatys content")]


def table(results: Dict[str, Dict[str, object]], n_photos: int, size: Tuple[int, int], markdown: bool,
          layers: bool = False) -> str:
    """The results as a text or markdown table; ``layers`` adds the style distance per VGG16 layer."""
    extra = [(name, name) for name in VGG16.layers] if layers else []
    cols = [(k, title) for k, title in COLUMNS + extra if any(k in r for r in results.values())]
    gatys_n = max((int(r.get("gatys_photos", 0)) for r in results.values()), default=0)
    gatys = f"; Gatys: direct optimization, first {gatys_n} photos" if gatys_n else ""
    note = (f"VGG16 distances on {n_photos} held-out photos at {size[0]}x{size[1]} (photo: the unpainted photo, "
            f"content 0; hatch: share of the output's fine detail that is a regular pattern, in the photos' flat "
            f"regions at {HATCH_FRAME[0]}x{HATCH_FRAME[1]}{gatys})")
    cells = [[Path(w).stem, str(r["painting"])] + [f"{r[k]:.4f}" if k in r else "-" for k, _ in cols]
             for w, r in results.items()]
    head = ["weights", "painting"] + [title for _, title in cols]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines + ["", note])
    widths = [max(len(row[i]) for row in [head] + cells) for i in range(len(head))]
    fmt = lambda row: "  ".join(c.ljust(wd) if i < 2 else c.rjust(wd)  # noqa: E731
                                for i, (c, wd) in enumerate(zip(row, widths)))
    return "\n".join([note, fmt(head)] + [fmt(c) for c in cells])


def _size(text: str) -> Tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("must be WIDTHxHEIGHT, e.g. 320x240") from None
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError("must be at least 32x32")
    return w, h


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", nargs="+")
    p.add_argument("--dataset", default=str(DEFAULT_DATASET))
    p.add_argument("--holdout", type=int, default=8, help="the trainer's --holdout (same photos; default 8)")
    p.add_argument("--size", type=_size, default=FRAME, help="frame the photos are cropped to (default 320x240)")
    p.add_argument("--gatys", type=int, default=0, metavar="N",
                   help="also optimize the first N photos directly (stylecam paint, VGG16): the reference a "
                        f"trained net chases; {GATYS_STEPS} L-BFGS steps take minutes per photo on a CPU")
    p.add_argument("--gatys-steps", type=int, default=GATYS_STEPS)
    p.add_argument("--style-image", help="the painting, for weights that do not record theirs")
    p.add_argument("--layers", action="store_true",
                   help="also the style distance per VGG16 layer (the style column is their mean): which scale of "
                        "the painting a net reproduces (--json always has them)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--markdown", action="store_true", help="a markdown table (for docs)")
    out.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        photos = holdout(find_images(args.dataset), args.holdout)
        if not photos:
            raise StylecamError(f"dataset {args.dataset}: too few photos to hold any out")
        results = evaluate([Path(w) for w in args.weights], photos, args.size, args.gatys, args.gatys_steps,
                           args.style_image)
    except (StylecamError, ValueError) as e:
        print(f"evaluate: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(table(results, len(photos), args.size, args.markdown, args.layers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
