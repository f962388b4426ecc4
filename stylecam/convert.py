"""`stylecam convert INPUT OUTPUT --style NAME`: paint a GIF, video, image or folder of images.

Frames stream from reader to writer, at most ``workers`` in flight (stylized in parallel, one core each, as
in live mode; then stabilized and written in order), so memory stays flat however long the input is. Outputs
appear only when complete (temporary file or folder beside the target, renamed at the end).
"""
from __future__ import annotations

import math
import os
import secrets
import shutil
import signal
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Tuple, TypeVar, Union

import numpy as np

from . import videoio
from .errors import StylecamError
from .videoio import Frame, MediaInfo

PathLike = Union[str, os.PathLike]
FrameFn = Callable[[np.ndarray], np.ndarray]
T = TypeVar("T")


@dataclass
class Plan:
    """A checked conversion: what the input is and what kind of output to write."""

    src: Path
    dst: Path
    out_kind: str  # "video", "gif", "image" or "dir"
    info: Optional[MediaInfo] = None  # None for folders
    images: Optional[list[Path]] = None  # folder inputs: the files to convert


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def plan(input: PathLike, output: PathLike) -> Plan:
    """Check everything that can be checked before the (slow) style is loaded; raise StylecamError."""
    src, dst = Path(input), Path(output)
    if not src.exists():
        raise StylecamError(f"input {src} does not exist; check the path")
    if _same_file(src, dst):
        raise StylecamError(f"output {dst} is the input itself; choose a different output path")
    if src.is_dir():
        return _plan_folder(src, dst)
    if dst.is_dir():
        raise StylecamError(f"output {dst} is a folder; give a file name such as {dst / (src.stem + '.mp4')}")
    out_kind = videoio.output_kind(dst)
    videoio.check_writable_folder(dst)
    info = videoio.probe(src)
    if out_kind == "image" and (info.n_frames or 2) > 1:
        raise StylecamError(f"input {src} has {info.n_frames or 'many'} frames but {dst.name} is a still image; "
                            f"write a .gif or .mp4 instead")
    if out_kind == "video" and info.kind == "image":
        raise StylecamError(f"input {src} is a still image; write it as {', '.join(videoio.IMAGE_FORMATS)} or .gif")
    return Plan(src, dst, out_kind, info)


def _plan_folder(src: Path, dst: Path) -> Plan:
    if dst.exists() and not dst.is_dir():
        raise StylecamError(f"input {src} is a folder, so the output must be a folder too, but {dst} is a file")
    if dst.is_dir() and any(dst.iterdir()):
        raise StylecamError(f"output folder {dst} already has files in it; choose a new or empty folder")
    videoio.check_writable_folder(dst)
    images, skipped = [], []
    for p in sorted(src.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        kind = videoio.image_format(p)
        if kind in videoio.STILL_FORMATS or kind == "GIF":
            images.append(p)
        else:
            skipped.append(p.name)
    if not images:
        raise StylecamError(f"input folder {src} holds no images (png, jpg, webp, bmp, tiff, gif) to convert")
    if skipped:
        shown = ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        print(f"stylecam: note: skipping {len(skipped)} file(s) that are not images: {shown}", file=sys.stderr)
    return Plan(src, dst, "dir", images=images)


def painted(items: Iterable[T], rgb: Callable[[T], np.ndarray], stylizer: FrameFn,
            stability: Optional[float] = None, workers: int = 1) -> Iterator[Tuple[T, np.ndarray]]:
    """``(item, painted frame)`` in input order. ``workers`` frames are stylized at once; the optical-flow
    stabilizer (``stability`` > 0) then runs in order, built per sequence so no motion state leaks from one
    file into the next."""
    stab = None
    if stability:
        from .stabilize import Stabilizer

        stab = Stabilizer(stability)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="stylecam-convert") as pool:
        pending: deque = deque()

        def done():
            item, fut = pending.popleft()
            y = fut.result()
            return item, (stab(rgb(item), y) if stab is not None else y)

        try:
            for item in items:
                pending.append((item, pool.submit(stylizer, rgb(item))))
                if len(pending) >= max(1, workers):
                    yield done()
            while pending:
                yield done()
        finally:
            for _, fut in pending:  # interrupted: do not start what is queued
                fut.cancel()


def _progress(total: Optional[int], desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True, leave=False,
                disable=not (enabled and sys.stderr.isatty()))


def _thin_for_gif(frames: Iterator[Frame], fps: float) -> Iterator[Frame]:
    """Drop frames above GIF's 50 fps ceiling before they cost a stylization; the kept ones last longer."""
    step = math.ceil(fps / videoio.GIF_MAX_FPS) if fps > videoio.GIF_MAX_FPS else 1
    for i, f in enumerate(frames):
        if i % step == 0:
            f.duration_ms *= step
            yield f


def convert(input: PathLike, output: PathLike, stylizer: FrameFn, progress: bool = True,
            stability: Optional[float] = None, workers: int = 1) -> Path:
    """Paint ``input`` into ``output`` with ``stylizer`` (any RGB uint8 frame -> same-shape frame).

    GIF->GIF keeps per-frame durations, loop count and transparency; video->video keeps size, fps, frame
    count and audio; video<->GIF, image->image and folder->folder work too. Returns the output path.
    """
    p = plan(input, output)
    if p.out_kind == "dir":
        return _convert_folder(p, stylizer, progress, stability, workers)
    return _convert_file(p, stylizer, progress, stability, workers)


def _convert_file(p: Plan, stylizer: FrameFn, progress: bool, stability: Optional[float],
                  workers: int = 1) -> Path:
    info = p.info
    frames = videoio.read_frames(info)
    if p.out_kind == "image":
        f = next(frames)
        videoio.write_image(p.dst, stylizer(f.rgb), f.alpha)
        return p.dst

    def paint(items, rgb=lambda f: f.rgb):
        return painted(items, rgb, stylizer, stability, workers)

    total = info.n_frames
    if p.out_kind == "gif":
        if info.kind == "video":
            frames = _thin_for_gif(frames, float(info.fps))
            total = math.ceil(total / math.ceil(float(info.fps) / videoio.GIF_MAX_FPS)) if total else None
        loop = info.loop if info.kind == "gif" else 0
        with videoio.GifWriter(p.dst, loop=loop) as out, _progress(total, p.src.name, progress) as bar:
            for f, y in paint(frames):
                out.write(y, f.alpha, f.duration_ms)
                bar.update()
        return p.dst
    audio = str(info.path) if info.has_audio else None
    with videoio.VideoWriter(p.dst, info.fps, audio_from=audio, sar=info.sar) as out, \
            _progress(total, p.src.name, progress) as bar:
        if info.kind == "video":
            for _, y in paint(frames):
                out.write(y)
                bar.update()
        else:  # GIF: hold each frame for its duration at a constant rate that fits all of them
            for (_, n), y in paint(_retimed(frames, float(info.fps), bar), rgb=lambda fn: fn[0].rgb):
                for _ in range(n):
                    out.write(y)
    return p.dst


def _retimed(frames: Iterator[Frame], fps: float, bar) -> Iterator[Tuple[Frame, int]]:
    """GIF frames with how many video frames at ``fps`` each lasts; frames too short to show are skipped
    before they cost a stylization."""
    t_ms, shown = 0.0, 0
    for f in frames:
        t_ms += f.duration_ms if f.duration_ms > 10 else 100.0  # browsers show 0-10 ms GIF frames for 100 ms
        n = round(t_ms * fps / 1000) - shown
        bar.update()
        if n > 0:
            shown += n
            yield f, n


def _convert_folder(p: Plan, stylizer: FrameFn, progress: bool, stability: Optional[float],
                    workers: int = 1) -> Path:
    tmp = p.dst.absolute().parent / f".{p.dst.name}.{secrets.token_hex(4)}.part"
    os.mkdir(tmp)
    try:
        from tqdm import tqdm

        for src in tqdm(p.images, desc=p.src.name, unit="image", leave=False,
                        disable=not (progress and sys.stderr.isatty())):
            name = src.name if src.suffix.lower() in videoio.OUTPUT_EXTS else src.name + _ext_for(src)
            _convert_file(plan(src, tmp / name), stylizer, False, stability, workers)
        if p.dst.is_dir():
            p.dst.rmdir()  # empty (checked in plan); rename cannot replace a folder
        os.rename(tmp, p.dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return p.dst


def _ext_for(src: Path) -> str:
    """An extension for a file whose name lacks one (the folder scan knows it by its content)."""
    fmt = videoio.image_format(src)
    return ".gif" if fmt == "GIF" else next(e for e, f in videoio.IMAGE_FORMATS.items() if f == fmt)


# -- command line ----------------------------------------------------------------------------------------------
def register(sub) -> None:
    ap = sub.add_parser("convert", help="paint a GIF, video, image or folder of images",
                        description="Paint INPUT in a style and write OUTPUT; the output type follows its "
                                    "extension (.gif, .mp4/.mov/.mkv, .png/.jpg/.webp) or is a folder for a "
                                    "folder of images.")
    ap.add_argument("input", metavar="INPUT", help="GIF, video, image, or a folder of images")
    ap.add_argument("output", metavar="OUTPUT", help="output file (type from its extension) or folder")
    ap.add_argument("--style", required=True, help="style name (see `stylecam styles`) or weights file path")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="process at this fraction of the size (faster, coarser); output keeps the input size")
    ap.add_argument("--strength", type=float, default=1.0, help="0..1 blend with the original (default 1)")
    ap.add_argument("--preserve-colors", action="store_true", help="keep the input's colours, paint the light")
    ap.add_argument("--stability", type=float, default=None, metavar="K",
                    help="flicker removal for videos and GIFs, in [0, 1) (default 0.95; 0 = off)")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: best available)")
    ap.add_argument("--precision", default=None, help="auto, fp32, fp16 or bf16")
    ap.add_argument("--workers", type=int, default=None, metavar="N",
                    help="frames stylized in parallel (default: 2 on a CPU with 2+ cores; 1 on a GPU)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ap.set_defaults(func=run)


def _stop_on_sigterm():
    """`kill` cleans up like Ctrl-C does (the default SIGTERM would leave the temporary file behind)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        return None


def run(args) -> int:
    from .engine import load
    from .live import pick_workers
    from .stabilize import strength_or_default

    plan(args.input, args.output)  # bad paths fail before the style is loaded
    stylizer = load(args.style, device=args.device, precision=args.precision, strength=args.strength,
                    preserve_colors=args.preserve_colors, scale=args.scale)
    workers = pick_workers(args.workers, stylizer.device.type)
    previous = _stop_on_sigterm()
    try:
        out = convert(args.input, args.output, stylizer, progress=not args.quiet,
                      stability=strength_or_default(args.stability), workers=workers)
    except KeyboardInterrupt:
        print("stylecam: interrupted; no output written", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if not args.quiet:
        print(f"wrote {out}", file=sys.stderr)
    return 0
