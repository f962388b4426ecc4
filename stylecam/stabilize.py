"""Inference-time flicker removal that works with every style net, live and offline.

Per-frame nets restyle each frame from scratch, so tiny input changes (sensor noise, compression) make the
brush strokes boil. The stabilizer carries the previous *output* along the input's optical flow and blends it
into the current output where that flow can be trusted: forward-backward consistent (not occluded) and
photometrically right (the previous input, warped, matches the current input - where it does not, a moving
person would leave a ghost, so the fresh stylization is used there). The blend is recursive, so the output is
an exponential moving average along motion trajectories. Flow is computed on a small grey copy of the input
(a few ms at 640x480) and upsampled; a scene cut resets the state.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from . import flow as fl
from .errors import StylecamError

DEFAULT_STRENGTH = 0.9  # measured: the lowest that halves flicker on every clip; see the bench
FLOW_SIDE = 160  # long side of the frame the flow is computed on
FLOW_METHOD = "dis_medium"  # at 160 px: ~2.5 ms; ultrafast/fast flows left 1.5-2x more flicker (measured)
# Photometric check on the 0..255 grey input: below LO the warped previous input matches (full weight), above
# HI it does not (no weight, fresh stylization): clears sensor noise, catches flow errors that would ghost.
PHOTO_LO = 6.0
PHOTO_HI = 20.0
FB_SLACK = 0.3  # consistency slack in flow-resolution px^2 (Ruder et al. use 0.5 px^2 at full size)


class Stabilizer:
    """``stab(input_frame, stylized_frame) -> stabilized_frame`` (RGB uint8, same shape), one per video stream.

    ``strength`` in [0, 1): the weight of the motion-compensated previous output where the flow is reliable;
    0 turns it off. Keeps the previous input and output between calls; :meth:`reset` forgets them.
    """

    def __init__(self, strength: float = DEFAULT_STRENGTH, flow_side: int = FLOW_SIDE,
                 method: str = FLOW_METHOD, fb_check: bool = False):
        strength = float(strength)
        if not 0.0 <= strength < 1.0:
            raise StylecamError(f"stability must be in [0, 1) (0 = off, {DEFAULT_STRENGTH} = default), "
                                f"got {strength:g}")
        self.strength = strength
        self.flow_side = int(flow_side)
        self.fb_check = fb_check
        self._flow = fl.FlowEstimator(method)
        self.cuts = 0  # scene cuts seen (state resets), for reports
        self.reset()

    def reset(self) -> None:
        self._prev_small: Optional[np.ndarray] = None
        self._prev_thumb: Optional[np.ndarray] = None
        self._prev_out: Optional[np.ndarray] = None
        self.last_weight: Optional[np.ndarray] = None  # the blend weight map of the last frame (flow size)
        self._buf: Optional[dict] = None

    def _small(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        s = min(1.0, self.flow_side / max(h, w))
        if s < 1.0:
            frame = cv2.resize(frame, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
        return fl.gray(frame)

    def weight(self, small: np.ndarray, back: np.ndarray) -> np.ndarray:
        """Per-pixel blend weight of the warped previous output, at flow resolution, float32 0..strength.

        Reliability = the photometric check (catches occlusions and flow errors) times a flow check: by default
        coherence, ``back`` compared with itself at the matched point (it flags motion boundaries and frame
        edges for the price of one flow); with ``fb_check`` a true forward flow (twice the flow time, and on
        the clips no less flicker: the photometric check already rejects what it would)."""
        fwd = self._flow(self._prev_small, small) if self.fb_check else -back
        valid = fl.consistent(back, fwd, FB_SLACK)
        warped = fl.warp(self._prev_small, back)
        d = cv2.blur(cv2.absdiff(warped, small).astype(np.float32), (3, 3))
        w = np.clip((PHOTO_HI - d) * (1.0 / (PHOTO_HI - PHOTO_LO)), 0.0, 1.0)
        w *= valid
        # shrink and soften the trusted region: occlusion edges are where flow is least accurate
        w = cv2.erode(w, np.ones((3, 3), np.uint8))
        w = cv2.GaussianBlur(w, (5, 5), 0)
        return w * np.float32(self.strength)

    def _blend(self, prev_out: np.ndarray, stylized: np.ndarray, back: np.ndarray, w_small: np.ndarray) -> np.ndarray:
        """Warp the previous output by the upsampled flow and blend, in preallocated full-size buffers
        (allocating ~4 MB a frame costs as much as the arithmetic at 640x480)."""
        h, w = stylized.shape[:2]
        if self._buf is None or self._buf["map"].shape[:2] != (h, w):
            self._buf = {"map": np.empty((h, w, 2), np.float32), "warped": np.empty(stylized.shape, np.uint8),
                         "w": np.empty((h, w), np.float32), "w1": np.empty((h, w), np.float32)}
        b = self._buf
        cv2.resize(back, (w, h), dst=b["map"], interpolation=cv2.INTER_LINEAR)
        sh, sw = back.shape[:2]
        np.multiply(b["map"], np.array([w / sw, h / sh], np.float32), out=b["map"])
        np.add(b["map"], fl.grid(h, w), out=b["map"])
        cv2.remap(prev_out, b["map"], None, cv2.INTER_LINEAR, dst=b["warped"], borderMode=cv2.BORDER_REPLICATE)
        cv2.resize(w_small, (w, h), dst=b["w"], interpolation=cv2.INTER_LINEAR)
        np.subtract(np.float32(1.0), b["w"], out=b["w1"])
        return cv2.blendLinear(b["warped"], np.ascontiguousarray(stylized), b["w"], b["w1"])

    def __call__(self, input_frame: np.ndarray, stylized_frame: np.ndarray) -> np.ndarray:
        if input_frame.shape[:2] != stylized_frame.shape[:2]:
            raise ValueError(f"input {input_frame.shape} and stylized {stylized_frame.shape} sizes differ")
        if self.strength <= 0.0:
            return stylized_frame
        small = self._small(input_frame)
        thumb = fl.thumbnail(small)
        prev_out = self._prev_out
        fresh = (prev_out is None or prev_out.shape != stylized_frame.shape
                 or self._prev_small.shape != small.shape)
        if not fresh and fl.is_cut(self._prev_thumb, thumb):
            self.cuts += 1
            fresh = True
        if fresh:
            out = stylized_frame
            self.last_weight = None
        else:
            back = self._flow(small, self._prev_small)
            w_small = self.weight(small, back)
            self.last_weight = w_small
            out = self._blend(prev_out, stylized_frame, back, w_small)
        self._prev_small, self._prev_thumb, self._prev_out = small, thumb, out
        return out
