"""Flicker as a number: the temporal warping error of a video (Lai et al. 2018; Ruder et al. 2016).

Optical flow is computed between consecutive *input* frames, the previous *output* frame is warped onto the
current one, and |warped - current| is averaged (0..1 RGB) over the pixels whose flow is forward-backward
consistent. A still input whose stylization boils scores high; a stylization that moves with its content
scores as low as the input itself. Pairs across a scene cut have no valid flow and are skipped (and counted).

``stylecam bench --flicker CLIP`` reports it through :func:`bench_flicker`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional

import cv2
import numpy as np

from . import flow as fl
from .capture import read_frames  # noqa: F401  (flicker.read_frames: the clips the metric reads)
from .errors import StylecamError
from .pipeline import run_ordered, with_previous
from .stabilize import Stabilizer, strength_or_default

DEFAULT_FLOW = "dis_medium"
MIN_VALID_FRACTION = 0.05  # a pair with fewer reliable pixels than this says nothing about flicker


@dataclass
class PairFlow:
    """What the metric needs about one input pair: the backward flow and where it can be trusted."""

    back: np.ndarray  # HxWx2, cur(x) ~= prev(x + back(x))
    valid: np.ndarray  # HxW bool
    cut: bool


class InputFlow:
    """Feeds on input frames one at a time and yields the flow of each consecutive pair (None for the first)."""

    def __init__(self, method: str = DEFAULT_FLOW):
        self.estimate = fl.FlowEstimator(method)
        self._prev_gray: Optional[np.ndarray] = None
        self._prev_thumb: Optional[np.ndarray] = None

    def __call__(self, frame: np.ndarray) -> Optional[PairFlow]:
        g = fl.gray(frame)
        thumb = fl.thumbnail(g)
        prev, prev_thumb = self._prev_gray, self._prev_thumb
        self._prev_gray, self._prev_thumb = g, thumb
        if prev is None or prev.shape != g.shape:
            return None
        if fl.is_cut(prev_thumb, thumb):
            return PairFlow(back=np.zeros(g.shape + (2,), np.float32), valid=np.zeros(g.shape, bool), cut=True)
        back = self.estimate(g, prev)
        fwd = self.estimate(prev, g)
        return PairFlow(back=back, valid=fl.consistent(back, fwd), cut=False)


def pair_error(prev_out: np.ndarray, cur_out: np.ndarray, pf: PairFlow) -> float:
    """Mean |warp(prev_out) - cur_out| over the valid pixels, in 0..1 units (averaged over channels)."""
    warped = fl.warp(prev_out, pf.back)
    diff = cv2.absdiff(warped, cur_out)
    if diff.ndim == 3:
        diff = diff.mean(axis=2)
    return float(diff[pf.valid].mean()) / 255.0


@dataclass
class FlickerMeter:
    """Streaming warping error of several output videos of the same input (memory flat in clip length).

    ``meter.update(input_frame, {"stylized": y, "stabilized": z})`` per frame; ``meter.errors()`` at the end.
    """

    method: str = DEFAULT_FLOW
    pairs: int = 0
    cuts: int = 0
    unreliable: int = 0  # pairs skipped because almost no pixel had a trustworthy flow
    valid_fraction_sum: float = 0.0
    _sums: Dict[str, float] = field(default_factory=dict)
    _prev: Dict[str, np.ndarray] = field(default_factory=dict)
    _flow: Optional[InputFlow] = None

    def update(self, input_frame: np.ndarray, outputs: Mapping[str, np.ndarray]) -> None:
        if self._flow is None:
            self._flow = InputFlow(self.method)
        pf = self._flow(input_frame)
        if pf is not None:
            frac = float(pf.valid.mean())
            if pf.cut:
                self.cuts += 1
            elif frac < MIN_VALID_FRACTION:
                self.unreliable += 1
            else:
                self.pairs += 1
                self.valid_fraction_sum += frac
                for name, out in outputs.items():
                    if name not in self._prev:
                        raise ValueError(f"output {name!r} appeared after the first frame")
                    self._sums[name] = self._sums.get(name, 0.0) + pair_error(self._prev[name], out, pf)
        for name, out in outputs.items():
            if out.shape[:2] != input_frame.shape[:2]:
                raise ValueError(f"output {name!r} is {out.shape[:2]}, its input {input_frame.shape[:2]}")
            self._prev[name] = out

    def errors(self) -> Dict[str, float]:
        """Mean warping error per output over the measured pairs (NaN when no pair could be measured)."""
        return {k: (self._sums.get(k, 0.0) / self.pairs if self.pairs else float("nan")) for k in self._prev}

    @property
    def mean_valid_fraction(self) -> float:
        return self.valid_fraction_sum / self.pairs if self.pairs else 0.0


def warping_error(inputs: Iterable[np.ndarray], outputs: Optional[Iterable[np.ndarray]] = None,
                  method: str = DEFAULT_FLOW) -> float:
    """Temporal warping error of ``outputs`` (RGB uint8 frames) guided by the flow of ``inputs``;
    without ``outputs``, the input video's own error (its baseline: noise, lighting, flow failures)."""
    return warping_report(inputs, outputs, method).errors()["out"]


def warping_report(inputs: Iterable[np.ndarray], outputs: Optional[Iterable[np.ndarray]] = None,
                   method: str = DEFAULT_FLOW) -> FlickerMeter:
    """Like :func:`warping_error` but returns the meter: the error plus pairs measured and cuts skipped."""
    meter = FlickerMeter(method=method)
    if outputs is None:
        for x in inputs:
            meter.update(x, {"out": x})
        return meter
    sentinel = object()
    out_it = iter(outputs)
    for x in inputs:
        y = next(out_it, sentinel)
        if y is sentinel:
            raise ValueError("outputs ended before inputs")
        meter.update(x, {"out": y})
    if next(out_it, sentinel) is not sentinel:
        raise ValueError("outputs has more frames than inputs")
    return meter


# -- the bench ----------------------------------------------------------------------------------------------
def _default_style() -> str:
    from . import weights as weights_io

    styles = weights_io.available_styles()
    if "gogh" in styles:
        return "gogh"
    if not styles:
        raise StylecamError("no styles installed; pass --style NAME or a weights file path")
    return next(iter(styles))


def detail(frame: np.ndarray) -> float:
    """Mean |Laplacian| of the grey frame: how much brush-stroke texture there is (blur lowers it)."""
    return float(np.abs(cv2.Laplacian(fl.gray(frame), cv2.CV_32F)).mean())


def measure_clip(clip: str | Path, style: str, stability: Optional[float] = None, scale: float = 1.0,
                 device: Optional[str] = None, precision: Optional[str] = None, method: str = DEFAULT_FLOW,
                 max_frames: Optional[int] = None, live: bool = False) -> dict:
    """Stylize ``clip`` once, stabilize that same stylization (as ``stylecam convert`` does, or with ``live``
    as ``stylecam live`` does: a smaller, lighter flow), and measure everything in one pass."""
    from . import engine

    strength = strength_or_default(stability)
    stylizer = engine.load(style, device=device, precision=precision, scale=scale)
    stabilizer = Stabilizer(strength) if live else Stabilizer.offline(strength)
    meter = FlickerMeter(method=method)
    t_style = t_stab = 0.0
    n = 0
    det = {"stylized": 0.0, "stabilized": 0.0}
    size = None

    def stylize(pair):  # timed per stage, on the one frame path (one worker: per-frame cost, not throughput)
        previous, x = pair
        t0 = time.perf_counter()
        y = stylizer(x)
        t1 = time.perf_counter()
        return stabilizer.prepare(previous, x, y), t1 - t0, time.perf_counter() - t1

    def finish(pair, s):
        t = time.perf_counter()
        return s[0].stylized, stabilizer.apply(s[0]), s[1], s[2] + time.perf_counter() - t

    for (_, x), (y, z, dt_style, dt_stab) in run_ordered(with_previous(read_frames(clip, max_frames)), stylize,
                                                          finish):
        if n > 0:  # the first frame warms up both
            t_style += dt_style
            t_stab += dt_stab
        if n % 10 == 0:
            det["stylized"] += detail(y)
            det["stabilized"] += detail(z)
        meter.update(x, {"input": x, "stylized": y, "stabilized": z})
        size = (x.shape[1], x.shape[0])
        n += 1
    err = meter.errors()
    timed = max(1, n - 1)
    ratio = lambda a, b: (a / b) if b > 0 else float("nan")
    return {
        "clip": str(clip), "frames": n, "size": list(size or (0, 0)), "style": stylizer.info.name,
        "stability": strength, "flow": method, "flow_area": stabilizer.flow_area,
        "stabilizer_flow": stabilizer.method, "live": live, "pairs_measured": meter.pairs,
        "cuts_skipped": meter.cuts,
        "unreliable_skipped": meter.unreliable, "valid_fraction": round(meter.mean_valid_fraction, 4),
        "error": {"input": err["input"], "stylized": err["stylized"], "stabilized": err["stabilized"]},
        "ratio": {"stylized_to_input": ratio(err["stylized"], err["input"]),
                  "stabilized_to_input": ratio(err["stabilized"], err["input"]),
                  "stabilized_to_stylized": ratio(err["stabilized"], err["stylized"])},
        "fps": {"stylize": timed / t_style if t_style else float("nan"),
                "stylize_stabilize": timed / (t_style + t_stab) if t_style else float("nan")},
        "stabilize_ms": 1000.0 * t_stab / timed,
        "detail_retained": ratio(det["stabilized"], det["stylized"]),
    }


def format_table(r: dict) -> str:
    e, q, f = r["error"], r["ratio"], r["fps"]
    lines = [
        f"flicker: {r['clip']}  {r['size'][0]}x{r['size'][1]}, {r['frames']} frames, style {r['style']}, "
        f"stability {r['stability']:g}, flow {r['flow']}",
        f"  the stabilizer's flow: {r['stabilizer_flow']} on up to {r['flow_area']} px (as `stylecam "
        f"{'live' if r['live'] else 'convert'}`)",
        f"  pairs measured {r['pairs_measured']}, scene cuts skipped {r['cuts_skipped']}, unreliable skipped "
        f"{r['unreliable_skipped']}, reliable pixels {100 * r['valid_fraction']:.0f}%",
        f"  {'video':<22}{'warping error':>14}{'/ input':>10}",
        f"  {'input':<22}{e['input']:>14.4f}{1.0:>10.2f}",
        f"  {'stylized':<22}{e['stylized']:>14.4f}{q['stylized_to_input']:>10.2f}",
        f"  {'stylized + stabilized':<22}{e['stabilized']:>14.4f}{q['stabilized_to_input']:>10.2f}",
        f"  stabilized / stylized {q['stabilized_to_stylized']:.2f}; texture detail kept "
        f"{100 * r['detail_retained']:.0f}%",
        f"  fps: stylize {f['stylize']:.1f}, stylize+stabilize {f['stylize_stabilize']:.1f} "
        f"(stabilizer {r['stabilize_ms']:.1f} ms/frame)",
    ]
    return "\n".join(lines)


def bench_flicker(args) -> int:
    """Entry point of ``stylecam bench --flicker CLIP [--style NAME] [--stability K ...] [--json]``."""
    clips = args.flicker
    clips = clips if isinstance(clips, (list, tuple)) else [clips]
    style = getattr(args, "style", None) or _default_style()
    stabilities = getattr(args, "stability", None)
    stabilities = stabilities if isinstance(stabilities, (list, tuple)) else [stabilities]
    scale = getattr(args, "scale", None)
    scale = 1.0 if scale in (None, "auto") else float(scale)
    results = [measure_clip(c, style, s, scale=scale, device=getattr(args, "device", None),
                            precision=getattr(args, "precision", None),
                            method=getattr(args, "flow", None) or DEFAULT_FLOW,
                            max_frames=getattr(args, "max_frames", None),
                            live=bool(getattr(args, "live_flow", False)))
               for c in clips for s in stabilities]
    if getattr(args, "json", False):
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    else:
        print("\n\n".join(format_table(r) for r in results))
    return 0
