"""Photos for training: any folder tree, random crop + flip, sampled by (step, slot) so a resumed run sees
exactly the batches an uninterrupted one would."""
from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
#: what a broken, truncated or hostile image file raises in PIL (UnidentifiedImageError is an OSError)
UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def find_images(root: str | Path) -> List[Path]:
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTS and p.is_file())
    if not files:
        raise ValueError(f"dataset folder {root} holds no photos (.jpg, .png, .webp)")
    return files


#: at most this share of the photos is held out, so a small dataset still trains on most of its photos
HOLDOUT_SHARE = 0.2


def holdout_count(n_files: int, requested: int) -> int:
    """How many photos are held out of ``n_files`` when ``requested`` are asked for: at most 20% of them
    (8 photos and the default 8 hold out 1, not 7)."""
    return max(0, min(requested, int(n_files * HOLDOUT_SHARE)))


def holdout(files: Sequence[Path], n: int) -> List[Path]:
    """A fixed, spread-out subset kept out of training: the trainer's previews, the gallery and held-out losses.
    ``n`` is capped by :func:`holdout_count`."""
    n = holdout_count(len(files), n)
    return [files[i * len(files) // n] for i in range(n)] if n else []


def load_rgb(path: str | Path) -> Image.Image:
    """Any mode (greyscale, palette, RGBA) -> RGB; RGBA is flattened on white."""
    im = Image.open(path)
    im.load()
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    return im.convert("RGB")


def to_tensor(im: Image.Image) -> torch.Tensor:
    """HWC uint8 -> CHW float 0..255 (the transformer nets' input range)."""
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).float()


def style_tensor(painting: str | Path | Image.Image, short_side: int) -> torch.Tensor:
    """The painting (a file or an image) scaled so its short side is ``short_side``, aspect kept; 1x3xHxW 0..1."""
    im = painting if isinstance(painting, Image.Image) else load_rgb(painting)
    w, h = im.size
    s = short_side / min(w, h)
    im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
    return to_tensor(im)[None] / 255.0


class PhotoCrops(torch.utils.data.Dataset):
    """Item ``(step, slot)`` -> one random crop; the photo and the crop are drawn from a seed of
    (seed, step, slot), so data is a pure function of the step number."""

    def __init__(self, root: str | Path, size: int = 256, seed: int = 0, scale: Tuple[float, float] = (1.0, 1.5)):
        self.files = find_images(root)
        self.size = size
        self.scale = (float(scale[0]), float(scale[1]))
        self.seed = seed
        self.bad: set[int] = set()

    def __len__(self):
        return len(self.files)

    def __getitem__(self, key):
        step, slot = key
        rng = random.Random(hash((self.seed, step, slot)) & 0xFFFFFFFF)
        order = list(range(len(self.files)))
        for _ in range(len(self.files)):
            i = rng.choice(order)
            try:
                im = load_rgb(self.files[i])
            except UNREADABLE as e:
                if i not in self.bad:
                    warnings.warn(f"skipping unreadable image {self.files[i]}: {e}")
                self.bad.add(i)
                continue
            return to_tensor(self._crop(im, rng))
        raise ValueError("no readable photos in the dataset")

    def _crop(self, im: Image.Image, rng: random.Random) -> Image.Image:
        s = self.size
        w, h = im.size
        # Scale the short side to between scale[0] s and scale[1] s, then crop: varied stroke-to-object scales.
        # (1, 1.4) with s = 384 crops patches of a webcam-sized frame (short side 384-538 px): the net learns the
        # pixel statistics it meets at 640x480, where flat areas are wider than in a whole photo squeezed to s px.
        scale = s * rng.uniform(*self.scale) / min(w, h)
        im = im.resize((max(s, round(w * scale)), max(s, round(h * scale))), Image.BICUBIC)
        w, h = im.size
        x, y = rng.randint(0, w - s), rng.randint(0, h - s)
        im = im.crop((x, y, x + s, y + s))
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        return im


class StepBatches(torch.utils.data.Sampler):
    """Yields the (step, slot) keys of each batch from ``start`` on; ``rank``/``world`` split slots for DDP."""

    def __init__(self, start: int, steps: int, batch_size: int, rank: int = 0, world: int = 1):
        self.start, self.steps, self.bs, self.rank, self.world = start, steps, batch_size, rank, world

    def __iter__(self):
        for step in range(self.start, self.steps):
            yield [(step, self.rank * self.bs + j) for j in range(self.bs)]

    def __len__(self):
        return max(0, self.steps - self.start)
