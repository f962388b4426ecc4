"""`stylecam bench`: how fast each net and compute path is here, as ratios to the classic reference.

For each registered architecture x compute path (PyTorch, OpenVINO; fp32, bf16) x size it times the network
alone (``Stylizer.stylize_tensor`` on a real frame, every path once per round so drift hits all alike:
median/p90 ms, fps) and the whole live pipeline (video file -> stylize -> headless sink, via
``pipeline.Pipeline``: fps, capture-to-output latency, drops). The reference - the classic Johnson net, plain eager
fp32 exactly as pytorch/examples defines it - runs in the same process at every size, and every result is also
given as a speedup over it, so a busy machine shifts all rows alike. ``--soak`` watches resident memory over a
long live run; ``--flicker`` hands over to ``stylecam.flicker``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np
import torch

from . import engine, models
from .capture import FrameSource, read_frames
from .errors import StylecamError
from .pipeline import LiveStages, PerFrame, Pipeline, worker_threads, workers_for
from .weights import StyleInfo

DEFAULT_SIZES = "320x240,640x480,1280x720"
CLIPS_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "clips"
REFERENCE = ("johnson", "reference")  # (arch, compute) every ratio is taken against


# -- what runs where -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ComputePath:
    """A compute path: how a ``Stylizer`` is built for it."""

    name: str
    device: str
    precision: str
    backend: str
    compute: str = "auto"  # PyTorch backend: eager (the plain module) or optimized (exact rewrite / bf16 module)


def compute_paths(arch: str) -> List[ComputePath]:
    """PyTorch eager fp32 first (``reference`` for the classic net; every max|diff| is against it), PyTorch's
    exact fp32 rewrite and bf16 module where native, OpenVINO fp32 (exact) and bf16 where installed, CUDA fp16."""
    import importlib.util

    bf16 = engine.cpu_has_native_bf16()
    paths = [ComputePath("reference" if arch == REFERENCE[0] else "torch-fp32", "cpu", "fp32", "torch", "eager"),
             ComputePath("torch-optimized", "cpu", "fp32", "torch", "optimized")]
    if bf16:
        paths.append(ComputePath("torch-bf16", "cpu", "bf16", "torch", "optimized"))
    if importlib.util.find_spec("openvino") is not None:
        paths.append(ComputePath("openvino-fp32", "cpu", "fp32", "openvino"))
        if bf16:
            paths.append(ComputePath("openvino-bf16", "cpu", "bf16", "openvino"))
    if torch.cuda.is_available():
        paths.append(ComputePath("cuda-fp16", "cuda", "fp16", "torch", "eager"))
    return paths


def parse_sizes(text: str) -> List[tuple[int, int]]:
    out = []
    for part in text.split(","):
        try:
            w, h = (int(v) for v in part.lower().strip().split("x"))
        except ValueError:
            raise StylecamError(f"bad size {part!r} in --sizes; use WIDTHxHEIGHT[,WIDTHxHEIGHT...]") from None
        if min(w, h) < engine.MIN_SIDE:
            raise StylecamError(f"size {part} is too small; both sides must be at least {engine.MIN_SIDE}")
        out.append((w, h))
    return out


def system_info() -> Dict[str, object]:
    """Device, threads, CPU model and the flags that decide the compute path, library versions."""
    model, flags = platform.processor() or "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("?", "x86_64", ""):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
    return {"device": "cuda" if torch.cuda.is_available() else "cpu", "cpu": model,
            "cpu_flags": [f for f in wanted if f in flags], "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "native_bf16": engine.cpu_has_native_bf16(),
            "torch": torch.__version__, "opencv": cv2.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


# -- the network alone -----------------------------------------------------------------------------------------
@dataclass
class NetResult:
    arch: str
    compute: str
    size: str
    n: int
    median_ms: float
    p90_ms: float
    fps: float
    max_abs_diff: Optional[float] = None  # vs the same net's plain eager fp32 output, 0..255 scale
    speedup_vs_reference: Optional[float] = None


def make_stylizer(model: torch.nn.Module, path: ComputePath, scale: float = 1.0) -> engine.Stylizer:
    info = StyleInfo(name="bench", arch=getattr(model, "arch_name", "?"))
    return engine.Stylizer(model, info, device=path.device, precision=path.precision, backend=path.backend,
                           compute=path.compute, scale=scale)


def bench_networks(cells: List[tuple], frame: np.ndarray, repeat: int, budget_s: float) -> Dict[tuple, tuple]:
    """Times ``stylize_tensor`` (padding, net, clamp) on one frame for every ``(key, model, path)`` cell in
    interleaved rounds - each round runs every cell once - so a shared machine that slows down mid-run shifts
    all rows alike and the ratios hold. One warm-up call each, then up to ``repeat`` rounds (at least 3) until
    ``budget_s`` per cell is spent. Returns key -> (times, output 0..255)."""
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    stylizers = {key: make_stylizer(model, path) for key, model, path in cells}
    out, times = {}, {key: [] for key in stylizers}

    def call(key):
        s = stylizers[key]
        out[key] = s.stylize_tensor(x)
        if s.device.type == "cuda":
            torch.cuda.synchronize()

    for key in stylizers:
        call(key)
    t_end = time.perf_counter() + budget_s * len(stylizers)
    for rounds in range(repeat):
        if rounds >= 3 and time.perf_counter() > t_end:
            break
        for key in stylizers:
            t = time.perf_counter()
            call(key)
            times[key].append(time.perf_counter() - t)
    return {key: (times[key], out[key].float().cpu()) for key in stylizers}


# -- the live pipeline -----------------------------------------------------------------------------------------
@dataclass
class PipeResult:
    arch: str
    compute: str
    size: str
    scale: float
    weights: str
    frames: int
    fps: float
    latency_ms_median: float
    latency_ms_p90: float
    dropped: int
    workers: int = 1
    speedup_vs_reference: Optional[float] = None


def source_frames(clip: Optional[Path], n: int) -> List[np.ndarray]:
    """Up to ``n`` RGB frames of the clip, or a synthetic moving scene when no clip is at hand."""
    frames: List[np.ndarray] = []
    if clip is not None and clip.exists():
        frames = list(read_frames(clip, n))
    if not frames:
        yy, xx = np.mgrid[0:240, 0:320]
        for i in range(n):
            img = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, (xx + yy) % 256], -1).astype(np.uint8)
            cv2.circle(img, (40 + 6 * i % 240, 120), 30, (250, 250, 250), -1)
            frames.append(img)
    while len(frames) < n:  # short clips: play back and forth
        frames += frames[::-1][: n - len(frames)]
    return frames


def write_clip(frames: List[np.ndarray], size: tuple[int, int], folder: Path) -> Path:
    """The frames resized to ``size`` as an MJPG AVI: decoding at the benchmarked size is part of the run."""
    path = folder / f"bench_{size[0]}x{size[1]}.avi"
    if path.exists():
        return path
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
    if not vw.isOpened():
        raise StylecamError(f"cannot write a temporary benchmark clip in {folder}")
    for f in frames:
        vw.write(cv2.cvtColor(cv2.resize(f, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR))
    vw.release()
    return path


def is_live_default(model: torch.nn.Module, path: ComputePath) -> bool:
    """Whether ``stylecam live`` would pick this compute path for this net on this machine."""
    import importlib.util

    dev = engine.pick_device(None)
    precision = engine.pick_precision(dev, None)
    backend = engine.pick_backend(dev, None, model, precision)
    if backend == "auto":
        backend = "openvino" if importlib.util.find_spec("openvino") is not None else "torch"
    return (path.device == dev.type and path.precision == precision
            and path.backend == backend and (backend == "openvino" or path.compute == engine.pick_compute(dev, None)))


def bench_pipeline(stylizer, clip: Path, frames: int, loop: bool = False, realtime: bool = False,
                   stop_after: Optional[float] = None, workers: int = 1, stabilize: bool = False,
                   auto: bool = False):
    """Runs ``pipeline.Pipeline`` (file source, headless sink) as ``stylecam live`` would, with ``workers``
    inference workers sharing the cores (with ``stabilize`` the default flicker stabilizer, as live runs by
    default; with ``auto`` the processing scale set by ``--scale auto``'s controller for 30 fps instead of the
    stylizer's), and returns its ``PipelineStats`` and the scale it ended at."""
    from .live import ScaleController
    from .sinks import NullSink
    from .stabilize import Stabilizer, strength_or_default

    source = FrameSource(str(clip), realtime=realtime, loop=loop)
    stab = Stabilizer(strength_or_default(None)) if stabilize else None
    with worker_threads(workers, stylizer.device.type) as workers:
        if auto:
            stages = LiveStages(["bench"], "bench", lambda _: stylizer, auto=ScaleController(30.0 / workers),
                                stabilizer=stab, fade_seconds=0)
        else:
            stages = PerFrame(stylizer, stab)
        pipe = Pipeline(source, stages, [NullSink()], max_frames=frames, workers=workers)
        timer = threading.Timer(stop_after, pipe.stop) if stop_after else None
        if timer:
            timer.start()
        try:
            return pipe.run(), (stages.scale if auto else stylizer.scale)
        finally:
            if timer:
                timer.cancel()


# -- the run ---------------------------------------------------------------------------------------------------
def random_net(arch: str, seed: int = 0) -> torch.nn.Module:
    """Random init with a visible output bias (as the tests do): timing does not depend on the weights."""
    torch.manual_seed(seed)
    m = models.build(arch).eval()
    with torch.no_grad():
        bias = m.output_layer().bias
        bias.copy_(torch.tensor([200.0, 80.0, 40.0]).repeat_interleave(bias.numel() // 3))
    return m


def style_nets(style: Optional[str]) -> Dict[str, tuple]:
    """arch -> (net, name) for ``--style``: the style itself, and shipped siblings named ``STYLE_*`` (gogh ->
    gogh_classic) for the other architectures, so the bf16 error column is measured on real weights."""
    from . import weights as weights_io

    out: Dict[str, tuple] = {}
    if not style:
        return out
    names = [style] + sorted(n for n in weights_io.available_styles() if n.startswith(f"{style}_"))
    for name in names:
        model, info = weights_io.load(name)
        out.setdefault(getattr(model, "arch_name", info.arch), (model, info.name))
    return out


def pipeline_net(arch: str, nets: Dict[str, tuple]):
    """The style's own net for its architecture, random init for the others."""
    return nets.get(arch) or (random_net(arch), "random init")


def run_bench(args) -> Dict[str, object]:
    sizes = parse_sizes(args.sizes)
    archs = [a.strip() for a in args.archs.split(",")] if args.archs else models.names()
    for a in archs:
        if a not in models.names():
            raise StylecamError(f"unknown architecture {a!r} in --archs (known: {', '.join(models.names())})")
    order = [REFERENCE[0]] + [a for a in archs if a != REFERENCE[0]]  # the reference is always measured
    style_model = style_nets(args.style)
    clip = Path(args.clip) if args.clip else next(iter(sorted(CLIPS_DIR.glob("*.mp4"))), None)
    n_frames = args.frames
    auto = args.scale == "auto"
    scale = 1.0 if auto else float(args.scale)
    src = source_frames(clip, n_frames)
    nets: List[NetResult] = []
    pipes: List[PipeResult] = []
    ref_net: Dict[str, float] = {}
    ref_pipe: Dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="stylecam-bench-") as tmp:
        for w, h in sizes:
            size = f"{w}x{h}"
            frame = np.ascontiguousarray(cv2.resize(src[0], (w, h), interpolation=cv2.INTER_AREA))
            clip_path = write_clip(src, (w, h), Path(tmp))
            cells = [(arch, path) for arch in order for path in compute_paths(arch)
                     if arch in archs or path.name == REFERENCE[1]]
            timed = bench_networks([((arch, path.name), pipeline_net(arch, style_model)[0], path)
                                    for arch, path in cells], frame, args.repeat, args.budget)
            ref_net[size] = float(np.median(timed[REFERENCE][0])) * 1000
            for arch, path in cells:
                times, y = timed[(arch, path.name)]
                ms = np.array(times) * 1000
                r = NetResult(arch, path.name, size, len(times), float(np.median(ms)),
                              float(np.percentile(ms, 90)), float(1000 / np.median(ms)))
                eager = compute_paths(arch)[0].name  # PyTorch eager fp32: what every other path must match
                if path.name != eager:
                    r.max_abs_diff = float((y - timed[(arch, eager)][1]).abs().max())
                r.speedup_vs_reference = ref_net[size] / r.median_ms
                nets.append(r)
                _progress(args, f"net  {arch:8s} {path.name:15s} {size:9s} {r.median_ms:8.1f} ms")
                if args.no_pipeline:
                    continue
                model, wname = pipeline_net(arch, style_model)
                frames = max(3, min(n_frames, int(args.budget * 1000 / max(r.median_ms, 1e-3))))
                st = make_stylizer(model, path, scale)
                # the reference runs as pytorch/examples would: one frame at a time
                nw = 1 if (arch, path.name) == REFERENCE else workers_for(args.workers, st.device.type)
                runs = [(False, path.name)]
                if (arch, path.name) != REFERENCE and is_live_default(model, path):
                    # what `stylecam live` runs by default: this path plus the flicker stabilizer
                    runs.append((True, path.name + "+stab"))
                for stabilize, compute in runs:
                    stats, ended = bench_pipeline(st, clip_path, frames, workers=nw, stabilize=stabilize,
                                                  auto=auto)
                    p = PipeResult(arch, compute, size, ended, wname, stats.shown, stats.fps,
                                   stats.latency_ms_median, stats.latency_ms_p90, stats.dropped, nw)
                    if (arch, compute) == REFERENCE:
                        ref_pipe[size] = p.fps
                    p.speedup_vs_reference = p.fps / ref_pipe[size] if ref_pipe.get(size) else None
                    pipes.append(p)
                    _progress(args, f"pipe {arch:8s} {compute:19s} {size:9s} {p.fps:8.2f} fps")
    return {"system": system_info(),
            "reference": {"arch": REFERENCE[0], "compute": "plain eager fp32 (pytorch/examples TransformerNet)"},
            "weights": {a: style_model[a][1] if a in style_model else "random init" for a in order},
            "clip": str(clip) if clip is not None and clip.exists() else "synthetic",
            "network": [asdict(r) for r in nets], "pipeline": [asdict(p) for p in pipes]}


def _progress(args, text: str) -> None:
    if args.verbose:
        print(text, file=sys.stderr, flush=True)


# -- soak ------------------------------------------------------------------------------------------------------
def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2 ** 20


def run_soak(args) -> Dict[str, object]:
    """The live pipeline on a looping file (paced like a camera) for ``--soak`` minutes, RSS sampled each second."""
    arch = args.archs.split(",")[0] if args.archs else "fast"
    model, wname = (None, "")
    if args.style:
        from . import weights as weights_io

        model, info = weights_io.load(args.style)
        wname = info.name
    if model is None:
        model, wname = random_net(arch), "random init"
    w, h = parse_sizes(args.sizes)[0] if args.sizes != DEFAULT_SIZES else (640, 480)
    auto = args.scale == "auto"
    stylizer = make_stylizer(model, ComputePath("default", "cpu", "auto", "auto", "auto"),
                             1.0 if auto else float(args.scale))
    clip = Path(args.clip) if args.clip else next(iter(sorted(CLIPS_DIR.glob("*.mp4"))), None)
    with tempfile.TemporaryDirectory(prefix="stylecam-soak-") as tmp:
        path = write_clip(source_frames(clip, 90), (w, h), Path(tmp))
        stylizer(np.zeros((h, w, 3), np.uint8))  # warm up before the first sample
        samples = [(0.0, rss_mb())]
        done = threading.Event()
        t0 = time.perf_counter()

        def sample():
            while not done.wait(1.0):
                samples.append((time.perf_counter() - t0, rss_mb()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        workers = workers_for(args.workers, stylizer.device.type)
        # as `stylecam live` runs by default: the flicker stabilizer after the net, in frame order
        stats, ended = bench_pipeline(stylizer, path, frames=0, loop=True, realtime=True,
                                      stop_after=args.soak * 60, workers=workers, stabilize=True, auto=auto)
        done.set()
        sampler.join()
        samples.append((time.perf_counter() - t0, rss_mb()))
    rss = [s[1] for s in samples]
    warm = [s[1] for s in samples if s[0] >= min(30.0, samples[-1][0] / 4)] or rss
    return {"system": system_info(), "soak_minutes": args.soak, "size": f"{w}x{h}", "weights": wname,
            "compute": f"{stylizer.backend} {stylizer.precision} + stabilizer", "workers": workers,
            "scale": ended, "auto_scale": auto,
            "pipeline": stats.as_dict(),
            "rss_mb": {"start": rss[0], "end": rss[-1], "peak": max(rss), "after_warmup": warm[0],
                       "growth_after_warmup": rss[-1] - warm[0], "samples": len(rss)}}


# -- output ----------------------------------------------------------------------------------------------------
def format_table(res: Dict[str, object]) -> str:
    s = res["system"]
    lines = [f"device {s['device']}  cpu {s['cpu']}  cores {s['cores']}  torch threads {s['torch_threads']}",
             f"cpu flags {' '.join(s['cpu_flags']) or '-'}  native bf16 {'yes' if s['native_bf16'] else 'no'}  "
             f"torch {s['torch']}  opencv {s['opencv']}  numpy {s['numpy']}",
             f"reference: {res['reference']['arch']} {res['reference']['compute']}; speedup = reference ms / ms "
             f"(network) or fps / reference fps (pipeline), same size, same run",
             "weights: " + ", ".join(f"{a} {n}" for a, n in res["weights"].items()) +
             " (timing does not depend on the weights; max|diff| does: it is on 0..255, vs the same net's eager "
             f"fp32 output on the clip's first frame); clip {res['clip']}", "",
             "network alone (stylize_tensor on one frame)",
             f"{'arch':8s} {'compute':19s} {'size':9s} {'n':>3s} {'median ms':>10s} {'p90 ms':>8s} {'fps':>7s} "
             f"{'speedup':>8s} {'max|diff|':>9s}"]
    for r in res["network"]:
        diff = f"{r['max_abs_diff']:.4f}" if r["max_abs_diff"] is not None else "-"
        lines.append(f"{r['arch']:8s} {r['compute']:19s} {r['size']:9s} {r['n']:3d} {r['median_ms']:10.1f} "
                     f"{r['p90_ms']:8.1f} {r['fps']:7.2f} {r['speedup_vs_reference']:7.2f}x {diff:>9s}")
    if res["pipeline"]:
        lines += ["", "live pipeline (video file -> stylize -> headless sink, every frame)",
                  f"{'arch':8s} {'compute':19s} {'size':9s} {'scale':>5s} {'wk':>2s} {'frames':>6s} {'fps':>7s} "
                  f"{'lat med':>8s} {'lat p90':>8s} {'drop':>5s} {'speedup':>8s}"]
        for p in res["pipeline"]:
            sp = f"{p['speedup_vs_reference']:7.2f}x" if p["speedup_vs_reference"] else "      -"
            lines.append(f"{p['arch']:8s} {p['compute']:19s} {p['size']:9s} {p['scale']:5.2f} "
                         f"{p.get('workers', 1):2d} {p['frames']:6d} "
                         f"{p['fps']:7.2f} {p['latency_ms_median']:8.1f} {p['latency_ms_p90']:8.1f} "
                         f"{p['dropped']:5d} {sp}")
    return "\n".join(lines)


def format_soak(res: Dict[str, object]) -> str:
    m, p = res["rss_mb"], res["pipeline"]
    scale = f"{res['scale']:.2f}" + (" (auto)" if res["auto_scale"] else "")
    return (f"soak {res['soak_minutes']} min at {res['size']}, scale {scale} ({res['weights']}, {res['compute']}): "
            f"{p['shown']} frames, {p['fps']:.1f} fps, latency {p['latency_ms_median']:.0f}/"
            f"{p['latency_ms_p90']:.0f} ms, {p['dropped']} dropped\n"
            f"RSS MB: start {m['start']:.1f}, after warm-up {m['after_warmup']:.1f}, end {m['end']:.1f}, "
            f"peak {m['peak']:.1f} (growth after warm-up {m['growth_after_warmup']:+.1f})")


# -- command line ----------------------------------------------------------------------------------------------
def register(sub) -> None:
    p = sub.add_parser("bench", help="measure nets and the live pipeline on this machine",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"WxH list (default {DEFAULT_SIZES})")
    p.add_argument("--archs", default=None, help=f"comma list of architectures (default all: "
                                                 f"{', '.join(models.names())})")
    p.add_argument("--repeat", type=int, default=10, help="timed runs per cell (default 10)")
    p.add_argument("--budget", type=float, default=20.0, help="seconds per cell before fewer runs are taken "
                                                              "(at least 3; default 20)")
    p.add_argument("--frames", type=int, default=60, help="frames per pipeline run (default 60)")
    p.add_argument("--quick", action="store_true", help="one small size, few runs (for tests and smoke checks)")
    p.add_argument("--style", default=None, help="shipped style for the nets (its own arch, STYLE_* siblings for the others; "
                   "default: random init)")
    p.add_argument("--scale", default="1.0", help="processing scale for the pipeline part (default 1.0), or auto: "
                   "each pipeline as `stylecam live --scale auto` scales it for 30 fps (the scale column is "
                   "where it ended)")
    p.add_argument("--clip", default=None, help="video file for the pipeline (default: a clip in shared data)")
    p.add_argument("--no-pipeline", action="store_true", help="time the networks only")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--workers", type=int, default=None, help="pipeline inference workers (default: as `stylecam "
                   "live` picks: 2 on a multi-core CPU); the reference pipeline always runs one")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    p.add_argument("--soak", type=float, metavar="MINUTES", default=None,
                   help="run the live pipeline on a looping file and report resident memory")
    p.add_argument("--flicker", nargs="+", metavar="CLIP", default=None,
                   help="temporal flicker of stylized clips (stylecam.flicker)")
    p.add_argument("--stability", type=float, nargs="*", default=[None], help="with --flicker")
    p.add_argument("--live-flow", action="store_true",
                   help="with --flicker: stabilize as `stylecam live` does (smaller, lighter flow), not as convert")
    p.add_argument("--device", default=None, help=argparse.SUPPRESS)
    p.add_argument("--precision", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=main)


def main(args) -> int:
    if args.threads:
        torch.set_num_threads(max(1, args.threads))
    if args.flicker:
        try:
            from . import flicker
        except ImportError as e:
            raise StylecamError(f"--flicker needs stylecam.flicker, which is not available ({e})") from None
        if not hasattr(flicker, "bench_flicker"):
            raise StylecamError("--flicker: stylecam.flicker has no bench_flicker entry point")
        return int(flicker.bench_flicker(args) or 0)
    if args.scale != "auto":
        try:
            float(args.scale)
        except ValueError:
            raise StylecamError(f"bad --scale {args.scale!r}; use a number such as 0.5 or auto") from None
    if args.soak is not None:
        if args.soak <= 0:
            raise StylecamError("--soak takes a positive number of minutes")
        res = run_soak(args)
        print(json.dumps(res, indent=2) if args.json else format_soak(res))
        return 0
    if args.quick:
        args.sizes = "64x48" if args.sizes == DEFAULT_SIZES else args.sizes.split(",")[0]
        args.repeat, args.frames, args.budget = min(args.repeat, 3), min(args.frames, 4), min(args.budget, 5.0)
    if args.repeat < 1 or args.frames < 1:
        raise StylecamError("--repeat and --frames must be at least 1")
    res = run_bench(args)
    print(json.dumps(res, indent=2) if args.json else format_table(res))
    return 0
