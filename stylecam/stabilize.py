"""Inference-time flicker removal that works with every style net, live and offline.

Per-frame nets restyle each frame from scratch, so tiny input changes (sensor noise, compression) make the
brush strokes boil. The stabilizer carries the previous *output* along the input's optical flow and blends it
into the current output where that flow can be trusted: forward-backward consistent (not occluded) and
photometrically right (the previous input, warped, matches the current input - where it does not, a moving
person would leave a ghost, so the fresh stylization is used there). The blend is recursive, so the output is
an exponential moving average along motion trajectories. A scene cut resets the state.

Only the blend needs the previous output: the flow, the weights and the fresh frame's stroke level need just
the two inputs, so the pipeline's workers compute them in parallel (``prepare``) and the in-order stage only
warps and blends (``apply``).

Two things decide how good that average is (measured on the bench clips, see docs/flicker.txt):

- Flow precision. The carried texture is as sharp as a stylization gets, so a flow error of a fraction of a
  pixel already shows as flicker. The flow runs on a grey copy of about ``FLOW_AREA`` pixels (half size at
  640x480): at a quarter of that, the old default, DIS's finest level is too coarse and the stabilized output
  kept 1.6-2.6x the input's flicker; sub-pixel rounding or snapping of the flow did not help. Offline
  (``convert``, the flicker metric) there is no frame budget, so the flow gets up to ``OFFLINE_FLOW_AREA``:
  on the 1280x720 bench clip the stabilized output kept 1.39x the input's flicker with a 320x180 flow, 1.00x
  with 640x360 and 0.58x at full size; the 640x272 clip 1.18x and, at full size, 0.92x. Live, the flow also
  runs a lighter DIS setting (``FLOW_METHOD``): a third of the flow time for ~2.5% more flicker, which is what
  let the stabilized 640x480 pipeline pass 30 fps.
- Texture. Averaging stylizations whose strokes differ frame to frame, and resampling the carried frame every
  frame, both wash the strokes out (the plain blend kept 50-85% of the detail). The blend's finest band (grey
  minus a 3x3 Gaussian) is therefore brought back up to the fresh stylization's, matched in mean absolute
  value over ``DETAIL_WINDOW`` px: a gain that follows the fresh frame cannot run away, and the strokes it
  amplifies are the stable, averaged ones. The earlier match of a 5 px box band's energy (squared, so led by
  the object edges the blend keeps) left the faint strokes between the edges lost: 56-82% kept on the 1280x720
  street clip for six styles; 85-90% for every fast style now (docs/look.md, seventh session).
  (Stabilizing at the net's processing size and upsampling after was measured worse: 1.6-2.5x the input's
  flicker at scale 0.5 - a flow error there is twice as large against the strokes.)

The rest is the net's job: a style trained with the shift/noise consistency term
(``stylecam.training.losses.ShiftConsistencyLoss``, the shipped gogh) boils about half as much before this runs.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from . import flow as fl
from .errors import StylecamError

DEFAULT_STRENGTH = 0.95  # measured on the bench clips; see docs/flicker.txt
FLOW_AREA = 320 * 240  # pixels of the grey copy the flow runs on live (half size at 640x480)
OFFLINE_FLOW_AREA = 640 * 480  # convert and the flicker metric: steadier on large frames, 4x the flow time
# Live: DIS medium lightened (flow.DIS_PRESETS; at equal cost dis_fast/ultrafast on a larger copy were no
# better, measured). Offline: medium itself.
FLOW_METHOD = "dis_live"
OFFLINE_FLOW_METHOD = "dis_medium"
# Photometric check on the 0..255 grey input: below LO the warped previous input matches (full weight), above
# HI it does not (no weight, fresh stylization): clears sensor noise, catches flow errors that would ghost.
PHOTO_LO = 6.0
PHOTO_HI = 20.0
FB_SLACK = 0.3  # consistency slack in flow-resolution px^2 (Ruder et al. use 0.5 px^2 at full size)
DETAIL_BAND = 3  # Gaussian kernel (px) whose high-pass is the stroke band the detail restoration matches
DETAIL_WINDOW = 24  # px over which its mean |detail| is compared: smaller windows follow the boiling and flicker
DETAIL_MAX_GAIN = 2.0
DETAIL_FLOOR = 0.05  # grey levels added to both sides of the ratio, so a flat region stays flat


def strength_or_default(value: Optional[float]) -> float:
    """A ``--stability`` value as given: unset (None) means the default strength, because steady video is what
    users expect without asking; 0 means off."""
    return DEFAULT_STRENGTH if value is None else float(value)


@dataclass
class Prepared:
    """One frame's stabilizer work that needs no earlier *output* (``Stabilizer.prepare``), so it can run in
    the parallel stage: the flow, the blend weight, the sampling map and the fresh frame's stroke level."""

    stylized: np.ndarray
    cut: bool = False
    map: Optional[np.ndarray] = None  # HxWx2 absolute positions in the previous output; None: no usable pair
    weight: Optional[np.ndarray] = None  # HxW float32, 0..strength
    stroke_level: Optional[np.ndarray] = None  # the fresh stylization's mean |stroke band|, on a 4x smaller grid


class Stabilizer:
    """``stab(input_frame, stylized_frame) -> stabilized_frame`` (RGB uint8, same shape), one per video stream.

    The same in two halves for the ordered runner: ``prepare(previous_input, input, stylized)`` needs no
    earlier output and is safe to call from several workers at once; ``apply(prepared)`` blends with the
    previous output and must run in frame order. ``strength`` in [0, 1): the weight of the motion-compensated
    previous output where the flow is reliable; 0 turns it off. ``restore_detail=False`` leaves out the detail
    restoration (for comparison). :meth:`reset` forgets the previous output.
    """

    def __init__(self, strength: float = DEFAULT_STRENGTH, flow_area: int = FLOW_AREA,
                 method: str = FLOW_METHOD, fb_check: bool = False, restore_detail: bool = True):
        strength = float(strength)
        if not 0.0 <= strength < 1.0:
            raise StylecamError(f"stability must be in [0, 1) (0 = off, {DEFAULT_STRENGTH} = default), "
                                f"got {strength:g}")
        self.strength = strength
        self.flow_area = int(flow_area)
        self.method = method
        self.fb_check = fb_check
        self.restore_detail = restore_detail
        fl.FlowEstimator(method)  # an unknown method fails here, not in a worker
        self._local = threading.local()  # a DIS object keeps buffers between calls: one per thread
        self.cuts = 0  # scene cuts seen (state resets), for reports
        self.reset()

    @classmethod
    def offline(cls, strength: float) -> "Stabilizer":
        """The stabilizer for files (``convert``, the flicker metric): no frame budget, so the finer flow."""
        return cls(strength, flow_area=OFFLINE_FLOW_AREA, method=OFFLINE_FLOW_METHOD)

    def reset(self) -> None:
        self._prev_small: Optional[np.ndarray] = None  # for __call__
        self._prev_out: Optional[np.ndarray] = None
        self._buf: Optional[dict] = None

    def _on(self, frame: np.ndarray, stylized: np.ndarray) -> bool:
        """Whether there is anything to do; a stylized frame of another size is the caller's bug."""
        if frame.shape[:2] != stylized.shape[:2]:
            raise ValueError(f"input {frame.shape} and stylized {stylized.shape} sizes differ")
        return self.strength > 0.0

    def _flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        est = getattr(self._local, "flow", None)
        if est is None:
            est = self._local.flow = fl.FlowEstimator(self.method)
        return est(a, b)

    def _small(self, frame: np.ndarray) -> np.ndarray:
        g = fl.gray(frame)  # grey first: a third of the work of resizing three channels
        h, w = g.shape[:2]
        s = min(1.0, (self.flow_area / (h * w)) ** 0.5)
        if s < 1.0:
            g = cv2.resize(g, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
        return g

    def weight(self, prev_small: np.ndarray, small: np.ndarray, back: np.ndarray) -> np.ndarray:
        """Per-pixel blend weight of the warped previous output, at flow resolution, float32 0..strength.

        Reliability = the photometric check (catches occlusions and flow errors) times a flow check: by default
        coherence, ``back`` compared with itself at the matched point (it flags motion boundaries and frame
        edges for the price of one flow); with ``fb_check`` a true forward flow (twice the flow time, and on
        the clips no less flicker: the photometric check already rejects what it would)."""
        fwd = self._flow(prev_small, small) if self.fb_check else -back
        valid = fl.consistent(back, fwd, FB_SLACK)
        warped = fl.warp(prev_small, back)
        d = cv2.blur(cv2.absdiff(warped, small).astype(np.float32), (3, 3))
        w = np.clip((PHOTO_HI - d) * (1.0 / (PHOTO_HI - PHOTO_LO)), 0.0, 1.0)
        w *= valid
        # shrink and soften the trusted region: occlusion edges are where flow is least accurate
        w = cv2.erode(w, np.ones((3, 3), np.uint8))
        w = cv2.GaussianBlur(w, (5, 5), 0)
        return w * np.float32(self.strength)

    def prepare(self, previous: Optional[np.ndarray], frame: np.ndarray, stylized: np.ndarray) -> Prepared:
        """Everything but the blend, for ``frame`` (RGB) whose predecessor in the stream was ``previous``
        (None at the start). Thread-safe."""
        if not self._on(frame, stylized):
            return Prepared(stylized)
        small = self._small(frame)
        prev_small = None if previous is None or previous.shape != frame.shape else self._small(previous)
        return self._prepare(prev_small, small, stylized)

    def _prepare(self, prev_small: Optional[np.ndarray], small: np.ndarray, stylized: np.ndarray) -> Prepared:
        p = Prepared(np.ascontiguousarray(stylized))
        if prev_small is None or prev_small.shape != small.shape:
            return p
        if fl.is_cut(fl.thumbnail(prev_small), fl.thumbnail(small)):
            p.cut = True
            return p
        back = self._flow(small, prev_small)
        h, w = stylized.shape[:2]
        sh, sw = back.shape[:2]
        p.map = cv2.resize(back * np.array([w / sw, h / sh], np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        cv2.add(p.map, fl.grid(h, w), dst=p.map)
        p.weight = cv2.resize(self.weight(prev_small, small, back), (w, h), interpolation=cv2.INTER_LINEAR)
        if self.restore_detail:
            p.stroke_level = _stroke_level(p.stylized)
        return p

    def apply(self, p: Prepared) -> np.ndarray:
        """The stabilized frame: ``p.stylized`` blended with the previous output carried along the flow.
        In frame order only."""
        if self.strength <= 0.0:
            return p.stylized
        prev_out = self._prev_out
        if p.cut and prev_out is not None:
            self.cuts += 1
        if p.map is None or prev_out is None or prev_out.shape != p.stylized.shape:
            out = p.stylized
        else:
            out = self._blend(prev_out, p)
            if p.stroke_level is not None:
                out = self._restore(out, p)
        self._prev_out = out
        return out

    def _blend(self, prev_out: np.ndarray, p: Prepared) -> np.ndarray:
        """Warp the previous output and blend, in preallocated full-size buffers (allocating ~4 MB a frame
        costs as much as the arithmetic at 640x480). remap runs on a 4-channel copy: OpenCV's vectorised path
        makes that, conversions included, half the time of 3 channels."""
        h, w = p.stylized.shape[:2]
        if self._buf is None or self._buf["rgba"].shape[:2] != (h, w):
            self._buf = {"rgba": np.empty((h, w, 4), np.uint8), "warped4": np.empty((h, w, 4), np.uint8),
                         "warped": np.empty((h, w, 3), np.uint8), "w1": np.empty((h, w), np.float32),
                         "gain": np.empty((h, w), np.float32), "gain1": np.empty((h, w), np.float32)}
        b = self._buf
        cv2.cvtColor(prev_out, cv2.COLOR_RGB2RGBA, dst=b["rgba"])
        cv2.remap(b["rgba"], p.map, None, cv2.INTER_LINEAR, dst=b["warped4"], borderMode=cv2.BORDER_REPLICATE)
        cv2.cvtColor(b["warped4"], cv2.COLOR_RGBA2RGB, dst=b["warped"])
        np.subtract(np.float32(1.0), p.weight, out=b["w1"])
        return cv2.blendLinear(b["warped"], p.stylized, p.weight, b["w1"])

    def _restore(self, blend: np.ndarray, p: Prepared) -> np.ndarray:
        """Scale the blend's stroke band (blend minus its 3x3 Gaussian) so its local mean |detail| matches the
        fresh stylization's. Where the blend is the fresh frame the gain is 1, so only carried texture changes."""
        h, w = blend.shape[:2]
        gain = (p.stroke_level + DETAIL_FLOOR) / (_stroke_level(blend) + DETAIL_FLOOR)
        np.clip(gain, 1.0, DETAIL_MAX_GAIN, out=gain)
        b = self._buf
        cv2.resize(gain, (w, h), dst=b["gain"], interpolation=cv2.INTER_LINEAR)
        np.subtract(np.float32(1.0), b["gain"], out=b["gain1"])
        # blend + (gain - 1) * (blend - blur(blend)), as one saturating weighted sum
        return cv2.blendLinear(blend, _band_blur(blend), b["gain"], b["gain1"])

    def __call__(self, input_frame: np.ndarray, stylized_frame: np.ndarray) -> np.ndarray:
        """``prepare`` and ``apply`` in one, for a caller that goes frame by frame (it keeps the previous
        input's grey copy instead of recomputing it)."""
        if not self._on(input_frame, stylized_frame):
            return stylized_frame
        small = self._small(input_frame)
        p = self._prepare(self._prev_small, small, stylized_frame)
        self._prev_small = small
        return self.apply(p)


def _band_blur(img: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(img, (DETAIL_BAND, DETAIL_BAND), 0)


def _stroke_level(img: np.ndarray) -> np.ndarray:
    """Local mean |stroke band| (grey minus its ``DETAIL_BAND`` Gaussian), on a 4x smaller grid smoothed over
    ``DETAIL_WINDOW`` px: the gain is smooth anyway, and the small grid keeps it cheap. Averaged in float: the
    band is a few grey levels, and rounding the 4x4 means would move it by a third."""
    h, w = img.shape[:2]
    g = fl.gray(img)
    hp = cv2.absdiff(g, _band_blur(g))
    e = cv2.resize(hp.astype(np.float32), (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    k = max(1, DETAIL_WINDOW // 4)
    return cv2.blur(e, (k, k))
