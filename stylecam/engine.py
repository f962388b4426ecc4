"""The one stylization engine behind live video, offline conversion, the trainer's previews and the bench.

A ``Stylizer`` takes an RGB uint8 HxWx3 frame and returns one of exactly the same shape. The device path is
chosen once: CUDA (TorchScript, fp16 with instance-norm statistics in fp32), then MPS, then the CPU.
Precision: bf16 where the CPU computes it natively and it measured faster (``cpu_bf16_pays``), else fp32.

On the CPU the default backend is OpenVINO (``backend="auto"``/``"openvino"``, ``$STYLECAM_BACKEND``): the net
goes through the same ONNX graph ``stylecam export`` writes, is compiled for each frame size it meets, and
takes uint8 frames in and out (layout, clamp and rounding run inside the graph); see ``OpenVINONet``. A net
whose exact PyTorch rewrite measured faster than OpenVINO says so (``cpu_backend = "torch"``: the classic net's
Winograd rewrite, ``models.optimize``). ``backend="torch"`` runs that rewrite (fp32) or a bf16 channels-last
module (native bf16), or with ``compute="eager"`` (``$STYLECAM_COMPUTE``) the plain module - the bench's
reference. It is also the fallback when OpenVINO is missing or fails, said in one line.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import os
import queue
import sys
import threading
from collections import OrderedDict
from typing import Dict, Optional, Union

# Idle OpenMP threads sleep instead of spinning (read once, when torch loads; a user's setting wins). Spinning
# torch threads starve OpenVINO's, the stabilizer's and other processes' on a busy 2-core machine: measured
# here with other jobs running, torch fp32 at 320x240 1358 -> 54 ms a frame and OpenVINO beside it 40 -> 14 ms.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from . import weights as weights_io
from .errors import StylecamError
from .weights import StyleInfo


def import_openvino():
    """``import openvino`` without its usage telemetry. Importing OpenVINO sends an event to Google Analytics
    (package ``openvino_telemetry``, on unless the user opted out with its ``opt_in_out`` tool) from a helper
    process it forks while our threads run. A camera app must not report home unasked, and forking a threaded
    process is unsafe. With ``openvino_telemetry`` unimportable, OpenVINO takes its own no-op stub."""
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino

    # The bindings' first numpy dtype conversion (every infer makes one) initializes a C++ static whose
    # initializer releases and retakes the GIL: two threads making it at once deadlock (the live workers' first
    # frames hung about one run in twenty under load). Made here, in one thread, before any worker runs.
    openvino.Type.u8.to_dtype()
    return openvino


MIN_SIDE = 32  # below this the nets' own reflection pads run out of pixels
_SAID: set = set()  # fallback notices already printed


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


def _why(e: BaseException) -> str:
    """An exception as one line: its type and its message's first line (library errors span pages)."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else 'no message'}"


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def cpu_has_native_bf16() -> bool:
    info = _cpuinfo()
    return "avx512_bf16" in info or "amx_bf16" in info


def cpu_bf16_pays() -> bool:
    """Where bf16 inference measured faster than fp32: AMX tiles, and AMD Zen 4's avx512_bf16 (OpenVINO 2.1x
    there). On an Intel Xeon with avx512_bf16 but no AMX exposed it measured no faster, so fp32 (exact) stays."""
    info = _cpuinfo()
    return "amx_bf16" in info or ("avx512_bf16" in info and "AuthenticAMD" in info)


def pick_precision(device: torch.device, precision: Optional[str]) -> str:
    """``auto``: fp16 on CUDA; bf16 on a CPU where it pays (``cpu_bf16_pays``); else fp32 (the exact mode)."""
    if precision in (None, "auto"):
        if device.type == "cuda":
            return "fp16"
        if device.type == "cpu" and cpu_bf16_pays():
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


BACKENDS = ("auto", "torch", "openvino")
COMPUTE_PATHS = ("auto", "eager", "optimized")


def pick_backend(device: torch.device, backend: Optional[str], model: Optional[nn.Module] = None,
                 precision: str = "fp32") -> str:
    """``auto``/None -> $STYLECAM_BACKEND, else on the CPU OpenVINO (PyTorch if it cannot load the net) unless the
    net's ``cpu_backend`` says its fp32 is faster in PyTorch; ``torch`` on GPUs. Returns ``auto`` while that
    fallback may still apply."""
    backend = backend or os.environ.get("STYLECAM_BACKEND") or "auto"
    if backend not in BACKENDS:
        raise StylecamError(f"unknown backend {backend!r}; use {', '.join(BACKENDS)}")
    if device.type != "cpu":
        if backend == "openvino":
            raise StylecamError(f"--backend openvino runs on the CPU, not {device.type}; use --device cpu or "
                                "--backend torch")
        return "torch"
    if backend == "auto" and precision == "fp32" and getattr(model, "cpu_backend", "openvino") == "torch":
        return "torch"
    return backend


def pick_compute(device: torch.device, compute: Optional[str]) -> str:
    """PyTorch backend: ``auto``/None -> $STYLECAM_COMPUTE, else ``optimized`` on the CPU, ``eager`` elsewhere."""
    compute = compute or os.environ.get("STYLECAM_COMPUTE") or "auto"
    if compute not in COMPUTE_PATHS:
        raise StylecamError(f"unknown compute path {compute!r}; use {', '.join(COMPUTE_PATHS)}")
    if compute == "auto":
        return "optimized" if device.type == "cpu" else "eager"
    return compute


def min_side(model) -> int:
    """The smallest side ``model`` takes: MIN_SIDE, or more where its dilated pads reach further (FastNet)."""
    return max(MIN_SIDE, getattr(model, "min_side", 0))


def padded_size(h: int, w: int, multiple: int, least: int = MIN_SIDE) -> tuple[int, int]:
    least = -(-least // multiple) * multiple
    up = lambda v: max(least, -(-v // multiple) * multiple)  # noqa: E731
    return up(h), up(w)


def run_padded(model: nn.Module, x: torch.Tensor, multiple: Optional[int] = None) -> torch.Tensor:
    """Run ``model`` on 1x3xHxW 0..255 of any size: reflection-pad to what the net needs, crop back."""
    multiple = multiple or getattr(model, "size_multiple", 4)
    h, w = x.shape[-2:]
    ph, pw = padded_size(h, w, multiple, min_side(model))
    if (ph, pw) != (h, w):
        pad = [0, pw - w, 0, ph - h]
        # Reflection needs the pad to be smaller than the side; tiny frames replicate instead.
        mode = "reflect" if (pw - w) < w and (ph - h) < h else "replicate"
        x = F.pad(x, pad, mode=mode)
    return model(x)[..., :h, :w]


def pad_frame(frame: np.ndarray, multiple: int, least: int = MIN_SIDE) -> np.ndarray:
    """HxWxC uint8 -> reflection-padded (as ``run_padded``, i.e. torch's ``reflect``) to the net's multiple."""
    h, w = frame.shape[:2]
    ph, pw = padded_size(h, w, multiple, least)
    if (ph, pw) == (h, w):
        return frame
    mode = cv2.BORDER_REFLECT_101 if (pw - w) < w and (ph - h) < h else cv2.BORDER_REPLICATE
    return cv2.copyMakeBorder(frame, 0, ph - h, 0, pw - w, mode)


class OpenVINONet:
    """A net compiled by OpenVINO for this CPU, callable from several threads at once.

    Fast ``gogh`` at 640x480: 1.8-2.4x PyTorch eager fp32 in CPU time per frame on this session's 2-core Xeon
    (avx512_bf16, no AMX; bf16 and f32 alike there), 4.4x the old default in bf16 on the issue's Zen 4. Each input
    size gets its own static-shape compile (on Zen 4 a frame ran ~10% faster than with dynamic height/width, and a
    compile takes about a tenth of a second, once per size ``--scale auto`` visits; the last ``SIZES_KEPT`` are
    kept). Each concurrent caller takes its own infer request from a
    pool; the model gets one stream per caller the cores allow: ``torch.get_num_threads()`` threads per call,
    read at the first frame (``pipeline.worker_threads`` sets 1 for its two workers: two streams of one thread, 14 vs
    10 fps bf16 and 13 vs 9 fp32 against two requests on one 2-thread stream; OpenVINO's own AsyncInferQueue
    matched our two workers, 20 vs 19 fps). Two graphs, compiled on first use: uint8 NHWC in/out with clamp and
    rounding inside (frames) and float NCHW (``stylize_tensor``). Pixel shuffles run depth-first
    (``export.depth_first_shuffles``: the same function, a few per cent faster here).
    """

    _cache: "OrderedDict[tuple, OpenVINONet]" = OrderedDict()
    _cache_lock = threading.Lock()
    CACHE_SIZE = 12  # live cycles through up to 9 styles with its number keys
    SIZES_KEPT = 8  # static-shape compiles per net

    @classmethod
    def get(cls, model: nn.Module, precision: str) -> "OpenVINONet":
        """Shared per weights and precision within the process: the ONNX conversion costs ~0.5-2 s a net
        (live style switches back and forth, tests load the same style many times); compiled models and their
        request pools are safe to share."""
        digest = hashlib.blake2b(type(model).__name__.encode(), digest_size=20)
        for name, t in model.state_dict().items():
            digest.update(name.encode())
            digest.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        key = (digest.hexdigest(), precision)
        with cls._cache_lock:
            if key in cls._cache:
                cls._cache.move_to_end(key)
                return cls._cache[key]
        net = cls(model, precision)
        with cls._cache_lock:
            cls._cache[key] = net
            while len(cls._cache) > cls.CACHE_SIZE:
                cls._cache.popitem(last=False)
        return net

    def __init__(self, model: nn.Module, precision: str):
        from .export import depth_first_shuffles, onnx_bytes

        ov = import_openvino()

        self.ov, self.precision = ov, precision
        self.core = ov.Core()
        graph = depth_first_shuffles(onnx_bytes(copy.deepcopy(model).float().cpu()))
        self.model = self.core.read_model(graph, b"")
        self.multiple = getattr(model, "size_multiple", 4)
        self.min_side = min_side(model)
        self._compiled: Dict[tuple, tuple] = {}  # (kind, threads, input shape) -> (compiled model, request pool)
        self._lock = threading.Lock()
        self.compile("u8")  # fail here, where the fallback to torch can still happen, not on the first frame

    def _graph(self, kind: str):
        if kind == "f32":
            return self.model
        import openvino.opset13 as ops
        from openvino.preprocess import PrePostProcessor

        ppp = PrePostProcessor(self.model.clone())
        ppp.input().tensor().set_element_type(self.ov.Type.u8).set_layout(self.ov.Layout("NHWC"))
        ppp.input().model().set_layout(self.ov.Layout("NCHW"))
        ppp.input().preprocess().convert_element_type(self.ov.Type.f32)
        ppp.output().model().set_layout(self.ov.Layout("NCHW"))
        ppp.output().tensor().set_layout(self.ov.Layout("NHWC")).set_element_type(self.ov.Type.u8)
        # round half to even, as torch.round on the PyTorch path
        ppp.output().postprocess().custom(lambda y: ops.round(ops.clamp(y, 0.0, 255.0), "half_to_even").output(0))
        return ppp.build()

    def compile(self, kind: str, shape: Optional[tuple] = None):
        """The compiled model and its request pool for ``kind`` at input ``shape`` (None: dynamic H/W)."""
        threads = max(1, torch.get_num_threads())
        key = (kind, threads, shape)
        with self._lock:
            if key not in self._compiled:
                graph = self._graph(kind)
                if shape is not None:
                    graph = graph.clone()
                    graph.reshape(list(shape))
                streams = max(1, (os.cpu_count() or 1) // threads)
                self._compiled[key] = (self.core.compile_model(graph, "CPU", {
                    "INFERENCE_PRECISION_HINT": {"bf16": "bf16", "fp32": "f32"}[self.precision],
                    "NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": streams * threads}), queue.SimpleQueue())
                static = [k for k in self._compiled if k[2] is not None]
                for old in static[:max(0, len(static) - self.SIZES_KEPT)]:
                    del self._compiled[old]  # requests in use keep their model alive
            self._compiled[key] = self._compiled.pop(key)  # most recently used last
            return self._compiled[key]

    def infer(self, kind: str, x: np.ndarray) -> np.ndarray:
        """One input array (padded to the multiple) -> a copy of the output, on a request no other thread uses."""
        compiled, pool = self.compile(kind, tuple(x.shape))
        try:
            req = pool.get_nowait()
        except queue.Empty:
            req = compiled.create_infer_request()
        try:
            req.infer({0: x}, share_inputs=True)
            return req.get_output_tensor(0).data.copy()
        finally:
            pool.put(req)

    def frame(self, src: np.ndarray) -> np.ndarray:
        """uint8 RGB HxWx3 -> stylized uint8 HxWx3."""
        h, w = src.shape[:2]
        y = self.infer("u8", np.ascontiguousarray(pad_frame(src, self.multiple, self.min_side))[None])[0]
        return y if y.shape[:2] == (h, w) else np.ascontiguousarray(y[:h, :w])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """1x3xHxW float 0..255 (padded) -> unclamped output, as the torch module (for ``run_padded``)."""
        return torch.from_numpy(self.infer("f32", np.ascontiguousarray(x.float().numpy())))


def check_strength(value: float) -> float:
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise StylecamError(f"strength must be between 0 and 1, got {value}")
    return float(value)


def check_scale(value: float) -> float:
    if not 0.05 <= value <= 4.0:
        raise StylecamError(f"scale must be between 0.05 and 4, got {value}")
    return float(value)


class Stylizer:
    """A loaded style on a device. ``stylizer(frame)`` -> stylized frame, same shape and dtype (uint8 RGB)."""

    def __init__(self, model: nn.Module, info: StyleInfo, device: Optional[str] = None,
                 precision: Optional[str] = None, strength: float = 1.0, preserve_colors: bool = False,
                 scale: float = 1.0, backend: Optional[str] = None, compute: Optional[str] = None):
        self.device = pick_device(device)
        self.precision = pick_precision(self.device, precision)
        self.compute = pick_compute(self.device, compute)
        self.info = info
        self.multiple = getattr(model, "size_multiple", 4)
        self.strength = strength
        self.preserve_colors = preserve_colors
        self.scale = scale
        self.ov: Optional[OpenVINONet] = None
        self.backend = self._open_openvino(model, pick_backend(self.device, backend, model, self.precision))
        # Native bf16 on the PyTorch CPU path runs the whole net as a bf16 channels-last module, not under autocast
        self.bf16_module = (self.backend == "torch" and self.device.type == "cpu" and self.compute == "optimized"
                            and self.precision == "bf16")
        self.model = model if self.ov is not None else self._prepare(model)

    # -- compute path --------------------------------------------------------------------------------------
    def _open_openvino(self, model: nn.Module, backend: str) -> str:
        """``openvino``/``auto`` on the CPU -> an ``OpenVINONet``; ``auto`` says in one line why it fell back."""
        if backend == "torch":
            return "torch"
        try:
            self.ov = OpenVINONet.get(model, self.precision)
            return "openvino"
        except Exception as e:  # ImportError, a conversion or compile failure: all mean "use torch"
            why = _why(e)
            if backend == "openvino":
                raise StylecamError(f"--backend openvino: cannot run this net ({why}); use --backend torch") from None
            line = f"stylecam: OpenVINO unavailable ({why[:200]}); using the PyTorch CPU path"
            if line not in _SAID:  # once per process, not once per style loaded
                _SAID.add(line)
                print(line, file=sys.stderr)
            return "torch"

    def _prepare(self, model: nn.Module) -> nn.Module:
        model = model.eval().to(self.device)
        model.requires_grad_(False)
        if self.device.type == "cuda":
            if self.precision == "fp16":
                model = _fp32_norms(copy.deepcopy(model).half())
            model = script_or_eager(model)
        elif self.device.type == "cpu":
            torch.set_flush_denormal(True)
            if self.bf16_module:
                # oneDNN's fastest layout; autocast would re-cast every weight every call. Output within 2-4/255
                # of fp32 on the shipped fast styles (7/255 for gogh_classic). A copy: callers (the bench) may
                # reuse the fp32 module.
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
        if self.ov is not None:
            y = run_padded(self.ov, x.cpu(), self.multiple)
        elif self.bf16_module:
            y = run_padded(self.model, x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last),
                           self.multiple)
        elif self.precision == "bf16":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                y = run_padded(self.model, x, self.multiple)
        else:
            y = run_padded(self.model, x.to(self.dtype), self.multiple)
        return y.float().clamp_(0, 255)

    def stylize_frame(self, src: np.ndarray) -> np.ndarray:
        """The net alone on an RGB uint8 HxWx3 frame (no scale, strength or colours) -> uint8, same shape."""
        if self.ov is not None:
            return self.ov.frame(src)
        src = np.ascontiguousarray(src) if src.flags.writeable else src.copy()  # torch wants writable memory
        x = torch.from_numpy(src).permute(2, 0, 1)[None].float()
        return self.stylize_tensor(x)[0].permute(1, 2, 0).round().to(torch.uint8).cpu().numpy()

    # Checked on assignment: a strength of 5 or a NaN scale would otherwise paint garbage without a word.
    @property
    def strength(self) -> float:
        return self._strength

    @strength.setter
    def strength(self, value: float) -> None:
        self._strength = check_strength(value)

    @property
    def scale(self) -> float:
        return self._scale

    @scale.setter
    def scale(self, value: float) -> None:
        self._scale = check_scale(value)

    def __call__(self, frame: np.ndarray, *, strength: Optional[float] = None,
                 preserve_colors: Optional[bool] = None, scale: Optional[float] = None) -> np.ndarray:
        """Keyword options override this stylizer's own for one call (live passes each frame's settings, so
        two pipeline workers never share mutable options)."""
        scale = self.scale if scale is None else check_scale(scale)
        strength = None if strength is None else check_strength(strength)
        if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8):
            raise ValueError(f"expected an RGB uint8 HxWx3 array, got {getattr(frame, 'shape', type(frame))} "
                             f"{getattr(frame, 'dtype', '')}")
        if frame.size == 0:
            raise ValueError(f"empty frame ({frame.shape[0]}x{frame.shape[1]}): nothing to paint")
        h, w = frame.shape[:2]
        src = frame
        if scale != 1.0:
            sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
            src = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        y = self.stylize_frame(src)
        if y.shape[:2] != (h, w):
            y = cv2.resize(y, (w, h), interpolation=cv2.INTER_LINEAR)
        return self.finish(frame, y, strength=strength, preserve_colors=preserve_colors)

    def finish(self, frame: np.ndarray, y: np.ndarray, *, strength: Optional[float] = None,
               preserve_colors: Optional[bool] = None) -> np.ndarray:
        """Colour preservation and strength blend, shared by every caller of the net."""
        strength = self.strength if strength is None else strength
        if self.preserve_colors if preserve_colors is None else preserve_colors:
            y = _keep_colors(frame, y)
        if strength < 1.0:
            y = cv2.addWeighted(y, float(max(0.0, strength)), frame, float(1.0 - max(0.0, strength)), 0)
        return y


def preserve_colors(original: np.ndarray, stylized: np.ndarray) -> np.ndarray:
    """Luminance from the stylized frame, chroma from the original (Gatys et al. 2016, colour preservation)."""
    ys = cv2.cvtColor(stylized, cv2.COLOR_RGB2YCrCb)
    yo = cv2.cvtColor(original, cv2.COLOR_RGB2YCrCb)
    yo[..., 0] = ys[..., 0]
    return cv2.cvtColor(yo, cv2.COLOR_YCrCb2RGB)


_keep_colors = preserve_colors  # Stylizer.finish's keyword of the same name shadows the function


def script_or_eager(model: nn.Module) -> nn.Module:
    """TorchScript where it compiles (CUDA: fewer kernel launches), else the eager module, so an architecture
    TorchScript cannot take still runs. ``STYLECAM_NO_JIT=1`` skips scripting."""
    if os.environ.get("STYLECAM_NO_JIT") == "1":
        return model
    try:
        return torch.jit.script(model)
    except Exception as e:  # TorchScript frontend errors have no common base class
        print(f"stylecam: TorchScript cannot compile {type(model).__name__} ({_why(e)[:160]}); running it eagerly",
              file=sys.stderr)
        return model


def load(style: Union[str, os.PathLike], device: Optional[str] = None, precision: Optional[str] = None,
         strength: float = 1.0, preserve_colors: bool = False, scale: float = 1.0,
         backend: Optional[str] = None, compute: Optional[str] = None) -> Stylizer:
    """A style name from ``weights/`` (``"gogh"``) or a weights file path -> a ready ``Stylizer``."""
    check_strength(strength), check_scale(scale)
    model, info = weights_io.load(style)
    return Stylizer(model, info, device=device, precision=precision, strength=strength,
                    preserve_colors=preserve_colors, scale=scale, backend=backend, compute=compute)
