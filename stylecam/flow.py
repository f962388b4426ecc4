"""Optical-flow primitives shared by the flicker metric and the stabilizer: flow, warping, reliability, cuts.

Conventions: frames are HxW (grey) or HxWxC arrays; a flow ``b = flow(cur, prev)`` is HxWx2 float32 with
``cur(x) ~= prev(x + b(x))``, so ``warp(prev, b)`` brings the previous frame onto the current one.
"""
from __future__ import annotations

from typing import Dict, Tuple

import cv2
import numpy as np

from .errors import StylecamError

# name -> (DIS preset, its settings changed); "farneback" is the non-DIS alternative. "dis_live" is medium with
# half the gradient-descent iterations and a sparser patch grid: a third less time, for about 2.5% more flicker
# left after the live stabilizer on the five bench clips (medium without variational refinement: 15% more).
DIS_PRESETS = {"dis_ultrafast": (cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, {}),
               "dis_fast": (cv2.DISOPTICAL_FLOW_PRESET_FAST, {}),
               "dis_medium": (cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, {}),
               "dis_live": (cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, {"GradientDescentIterations": 12, "PatchStride": 4})}
METHODS = tuple(DIS_PRESETS) + ("farneback",)


def gray(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 -> grey uint8 (flow is computed on luminance only)."""
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame


class FlowEstimator:
    """One reusable flow object (DIS keeps allocations between calls, which matters at 30 fps)."""

    def __init__(self, method: str = "dis_medium"):
        if method not in METHODS:
            raise StylecamError(f"unknown flow method {method!r}; use one of {', '.join(METHODS)}")
        self.method = method
        self._dis = None
        if method in DIS_PRESETS:
            preset, settings = DIS_PRESETS[method]
            self._dis = cv2.DISOpticalFlow_create(preset)
            for name, value in settings.items():
                getattr(self._dis, "set" + name)(value)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Flow from grey ``a`` to grey ``b``: ``a(x) ~= b(x + flow(x))``."""
        if self._dis is not None:
            return self._dis.calc(a, b, None)
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 15, 3, 5, 1.2, 0)


_GRIDS: Dict[Tuple[int, int], np.ndarray] = {}


def grid(h: int, w: int) -> np.ndarray:
    """HxWx2 pixel coordinates (x, y), cached per size: remap wants absolute positions."""
    g = _GRIDS.get((h, w))
    if g is None:
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        g = _GRIDS[(h, w)] = np.dstack([xs, ys])
    return g


def warp(img: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Sample ``img`` at ``x + flow(x)``; outside the frame the border is replicated (and masked by callers)."""
    h, w = flow.shape[:2]
    m = grid(h, w) + flow
    return cv2.remap(img, m, None, interpolation, borderMode=cv2.BORDER_REPLICATE)


def consistent(back: np.ndarray, fwd: np.ndarray, slack: float = 0.5) -> np.ndarray:
    """Forward-backward consistency (Sundaram et al. 2010; Ruder et al. 2016), on the current frame's grid.

    ``back`` = flow(cur, prev), ``fwd`` = flow(prev, cur). A pixel whose round trip does not come back,
    ``|b + f(x+b)|^2 >= 0.01(|b|^2 + |f(x+b)|^2) + slack``, is occluded or badly matched; pixels whose match
    falls outside the previous frame are dropped too. Returns a bool HxW mask of reliable pixels.
    """
    h, w = back.shape[:2]
    m = grid(h, w) + back
    fw = cv2.remap(fwd, m, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    s = back + fw
    err = s[..., 0] ** 2 + s[..., 1] ** 2
    mag = back[..., 0] ** 2 + back[..., 1] ** 2 + fw[..., 0] ** 2 + fw[..., 1] ** 2
    inside = (m[..., 0] >= 0) & (m[..., 0] <= w - 1) & (m[..., 1] >= 0) & (m[..., 1] <= h - 1)
    return (err < 0.01 * mag + slack) & inside


# -- scene cuts ---------------------------------------------------------------------------------------------
CUT_SIDE = 64  # cut detection looks at thumbnails: cheap and blind to noise and small motion


def thumbnail(g: np.ndarray, side: int = CUT_SIDE) -> np.ndarray:
    h, w = g.shape[:2]
    s = side / max(h, w)
    return cv2.resize(g, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)


def cut_score(prev_thumb: np.ndarray, cur_thumb: np.ndarray) -> float:
    """How unlike two grey thumbnails are: mean absolute difference of the contrast-normalised thumbnails,
    the best over shifts of up to 2 thumbnail pixels. Normalising makes a brightness change cheap, the shifts
    make a pan or shake cheap; on the real clips cuts score 0.75-1.06, the worst motion blur 0.51."""
    a = prev_thumb.astype(np.float32)
    b = cur_thumb.astype(np.float32)
    a = (a - a.mean()) / (a.std() + 8.0)
    b = (b - b.mean()) / (b.std() + 8.0)
    best = np.inf
    for dy in (-2, 0, 2):
        for dx in (-2, 0, 2):
            sa = a[max(0, dy):a.shape[0] + min(0, dy), max(0, dx):a.shape[1] + min(0, dx)]
            sb = b[max(0, -dy):b.shape[0] + min(0, -dy), max(0, -dx):b.shape[1] + min(0, -dx)]
            best = min(best, float(np.mean(np.abs(sa - sb))))
    return best


CUT_THRESHOLD = 0.62


def is_cut(prev_thumb: np.ndarray, cur_thumb: np.ndarray, threshold: float = CUT_THRESHOLD) -> bool:
    return cut_score(prev_thumb, cur_thumb) > threshold

