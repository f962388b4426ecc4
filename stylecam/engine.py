"""The one stylization engine behind live video, offline conversion, the trainer's previews and the bench.

A ``Stylizer`` takes an RGB uint8 HxWx3 frame and returns one of exactly the same shape. The device path is
chosen once: CUDA (TorchScript, fp16 with instance-norm statistics in fp32), then MPS, then the CPU path
(bf16 where the CPU computes it natively - elsewhere bf16 convolutions are ~10x slower - else fp32).
On the CPU the net runs through ``models.optimize``'s exact rewrite (fp32) or as a bf16 channels-last module
(native bf16) unless ``compute="eager"`` (or ``STYLECAM_COMPUTE=eager``) asks for the plain module - the
benchmark's reference path.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Optional, Union

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import weights as weights_io
from .errors import StylecamError
from .weights import StyleInfo

MIN_SIDE = 32  # below this the nets' own reflection pads run out of pixels


def pick_device(device: Optional[str] = None) -> torch.device:
    if device:
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise StylecamError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise StylecamError("--device cuda asked for, but PyTorch sees no CUDA GPU; use --device cpu")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise StylecamError("--device mps asked for, but MPS is not available here; use --device cpu")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_precision(device: torch.device, precision: Optional[str], model: Optional[nn.Module] = None) -> str:
    """``auto``: fp16 on CUDA; bf16 on a CPU that computes it natively unless the net says its fp32 CPU path
    is faster (``auto_cpu_bf16 = False``); else fp32."""
    if precision in (None, "auto"):
        if device.type == "cuda":
            return "fp16"
        if device.type == "cpu" and cpu_has_native_bf16() and getattr(model, "auto_cpu_bf16", True):
            return "bf16"
        return "fp32"
    if precision not in ("fp32", "fp16", "bf16"):
        raise StylecamError(f"unknown precision {precision!r}; use auto, fp32, fp16 or bf16")
    if precision == "fp16" and device.type == "cpu":
        raise StylecamError("fp16 is for GPUs; on the CPU use fp32 (or bf16 on CPUs with native bf16)")
    return precision


class FP32InstanceNorm(nn.Module):
    """Instance norm whose statistics are computed in fp32 whatever the activations' dtype (fp16 variance
    overflows/underflows on real frames and gives wrong colours)."""

    def __init__(self, norm: nn.InstanceNorm2d):
        super().__init__()
        self.eps = norm.eps
        self.weight = nn.Parameter(norm.weight.detach().float().clone())
        self.bias = nn.Parameter(norm.bias.detach().float().clone())

    def forward(self, x):
        y = F.instance_norm(x.float(), weight=self.weight, bias=self.bias, eps=self.eps)
        return y.to(x.dtype)


def _fp32_norms(model: nn.Module) -> nn.Module:
    for name, child in model.named_children():
        if isinstance(child, nn.InstanceNorm2d):
            setattr(model, name, FP32InstanceNorm(child))
        else:
            _fp32_norms(child)
    return model


COMPUTE_PATHS = ("auto", "eager", "optimized")


def pick_compute(device: torch.device, compute: Optional[str]) -> str:
    """``auto``/None -> $STYLECAM_COMPUTE, else ``optimized`` on the CPU and ``eager`` elsewhere."""
    compute = compute or os.environ.get("STYLECAM_COMPUTE") or "auto"
    if compute not in COMPUTE_PATHS:
        raise StylecamError(f"unknown compute path {compute!r}; use {', '.join(COMPUTE_PATHS)}")
    if compute == "auto":
        return "optimized" if device.type == "cpu" else "eager"
    return compute


def padded_size(h: int, w: int, multiple: int) -> tuple[int, int]:
    up = lambda v: max(MIN_SIDE, -(-v // multiple) * multiple)  # noqa: E731
    return up(h), up(w)


def run_padded(model: nn.Module, x: torch.Tensor, multiple: Optional[int] = None) -> torch.Tensor:
    """Run ``model`` on 1x3xHxW 0..255 of any size: reflection-pad to what the net needs, crop back."""
    multiple = multiple or getattr(model, "size_multiple", 4)
    h, w = x.shape[-2:]
    ph, pw = padded_size(h, w, multiple)
    if (ph, pw) != (h, w):
        pad = [0, pw - w, 0, ph - h]
        # Reflection needs the pad to be smaller than the side; tiny frames replicate instead.
        mode = "reflect" if (pw - w) < w and (ph - h) < h else "replicate"
        x = F.pad(x, pad, mode=mode)
    return model(x)[..., :h, :w]


@dataclass
class Options:
    strength: float = 1.0
    preserve_colors: bool = False
    scale: float = 1.0


class Stylizer:
    """A loaded style on a device. ``stylizer(frame)`` -> stylized frame, same shape and dtype (uint8 RGB)."""

    def __init__(self, model: nn.Module, info: StyleInfo, device: Optional[str] = None,
                 precision: Optional[str] = None, strength: float = 1.0, preserve_colors: bool = False,
                 scale: float = 1.0, compute: Optional[str] = None):
        self.device = pick_device(device)
        self.precision = pick_precision(self.device, precision, model)
        self.compute = pick_compute(self.device, compute)
        self.info = info
        self.multiple = getattr(model, "size_multiple", 4)
        self.strength = strength
        self.preserve_colors = preserve_colors
        self.scale = scale
        # Native bf16 on the CPU runs the whole net as a bf16 channels-last module, not under autocast
        self.bf16_module = self.device.type == "cpu" and self.compute == "optimized" and self.precision == "bf16"
        self.model = self._prepare(model)

    # -- compute path --------------------------------------------------------------------------------------
    def _prepare(self, model: nn.Module) -> nn.Module:
        model = model.eval().to(self.device)
        model.requires_grad_(False)
        if self.device.type == "cuda":
            if self.precision == "fp16":
                model = _fp32_norms(model.half())
            model = torch.jit.script(model) if _scriptable(model) else model
        elif self.device.type == "cpu":
            torch.set_flush_denormal(True)
            if self.bf16_module:
                # oneDNN's fastest layout; autocast would re-cast every weight every call. Measured here at
                # 640x480: fast 24 vs 56 ms eager fp32; output within 2-4/255 of fp32 on the shipped fast styles
                # (7/255 for gogh_classic). A copy: callers (the bench) may reuse the fp32 module.
                model = copy.deepcopy(model).to(memory_format=torch.channels_last).to(torch.bfloat16)
            elif self.compute == "optimized":
                from .models.optimize import optimize_for_cpu

                model = optimize_for_cpu(model)
        return model

    @property
    def dtype(self) -> torch.dtype:
        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.precision]

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """1x3xHxW float 0..255 on any device -> same shape, fp32, clamped 0..255, on this device."""
        x = x.to(self.device)
        if self.bf16_module:
            y = run_padded(self.model, x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last),
                           self.multiple)
        elif self.precision == "bf16":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                y = run_padded(self.model, x, self.multiple)
        else:
            y = run_padded(self.model, x.to(self.dtype), self.multiple)
        return y.float().clamp_(0, 255)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8):
            raise ValueError(f"expected an RGB uint8 HxWx3 array, got {getattr(frame, 'shape', type(frame))} "
                             f"{getattr(frame, 'dtype', '')}")
        h, w = frame.shape[:2]
        src = frame
        if self.scale != 1.0:
            sw, sh = max(1, round(w * self.scale)), max(1, round(h * self.scale))
            src = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR)
        src = np.ascontiguousarray(src) if src.flags.writeable else src.copy()  # torch wants writable memory
        x = torch.from_numpy(src).permute(2, 0, 1)[None].float()
        y = self.stylize_tensor(x)[0].permute(1, 2, 0).round().to(torch.uint8).cpu().numpy()
        if y.shape[:2] != (h, w):
            y = cv2.resize(y, (w, h), interpolation=cv2.INTER_LINEAR)
        return self.finish(frame, y)

    def finish(self, frame: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Colour preservation and strength blend, shared by every caller of the net."""
        if self.preserve_colors:
            y = preserve_colors(frame, y)
        if self.strength < 1.0:
            y = cv2.addWeighted(y, float(max(0.0, self.strength)), frame, float(1.0 - max(0.0, self.strength)), 0)
        return y


def preserve_colors(original: np.ndarray, stylized: np.ndarray) -> np.ndarray:
    """Luminance from the stylized frame, chroma from the original (Gatys et al. 2016, colour preservation)."""
    ys = cv2.cvtColor(stylized, cv2.COLOR_RGB2YCrCb)
    yo = cv2.cvtColor(original, cv2.COLOR_RGB2YCrCb)
    yo[..., 0] = ys[..., 0]
    return cv2.cvtColor(yo, cv2.COLOR_YCrCb2RGB)


def _scriptable(model: nn.Module) -> bool:
    return os.environ.get("STYLECAM_NO_JIT") != "1"


def load(style: Union[str, os.PathLike], device: Optional[str] = None, precision: Optional[str] = None,
         strength: float = 1.0, preserve_colors: bool = False, scale: float = 1.0,
         compute: Optional[str] = None) -> Stylizer:
    """A style name from ``weights/`` (``"gogh"``) or a weights file path -> a ready ``Stylizer``."""
    if not 0.0 <= strength <= 1.0:
        raise StylecamError(f"strength must be between 0 and 1, got {strength}")
    if not 0.05 <= scale <= 4.0:
        raise StylecamError(f"scale must be between 0.05 and 4, got {scale}")
    model, info = weights_io.load(style)
    return Stylizer(model, info, device=device, precision=precision, strength=strength,
                    preserve_colors=preserve_colors, scale=scale, compute=compute)
