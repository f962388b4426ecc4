"""`stylecam convert INPUT OUTPUT --style NAME`: paint a GIF, video, image or folder of images.

Frames stream from reader to writer through the ordered worker runner (``pipeline.run_ordered``): ``workers``
frames are stylized at once (one core each, as in live mode), then stabilized and written in order, so memory
stays flat however long the input is. Outputs appear only when complete (``stylecam.atomic``). A folder is
converted image by image into a mirrored folder; an image that cannot be read is skipped with a line and the
run ends with a summary and exit status 1.
"""
from __future__ import annotations

import math
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Tuple, TypeVar, Union

import numpy as np

from . import videoio
from .atomic import AtomicOutput, WriteError, check_writable, write_error
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
    out_kind: str  # "video", "gif", "animation" (WebP/APNG), "image" or "dir"
    info: Optional[MediaInfo] = None  # None for folders
    images: Optional[list[Path]] = None  # folder inputs: the files to convert, relative to src
    not_images: list[str] = field(default_factory=list)  # folder inputs: files skipped (relative paths)


@dataclass
class FolderResult:
    """What a folder conversion did: converted files and (relative path, why) for the skipped ones."""

    dst: Path
    converted: list[Path]
    failed: list[tuple[str, str]]


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_stability(value: Optional[float]) -> None:
    """``--stability`` must be a number in [0, 1) for every input, stills included."""
    if value is not None and not (math.isfinite(value) and 0 <= value < 1):
        raise StylecamError(f"--stability must be at least 0 and below 1 (0 = off), got {value}")


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
    check_writable(dst.absolute().parent)
    info = videoio.probe(src)
    many = (info.n_frames or 2) > 1
    if out_kind == "image" and many:
        if info.kind != "animation" or not videoio.can_animate(dst):
            raise StylecamError(f"input {src} has {info.n_frames or 'many'} frames but {dst.name} is a still "
                                f"image; write a .gif or .mp4 instead")
        out_kind = "animation"
    if out_kind == "video" and info.kind == "image":
        raise StylecamError(f"input {src} is a still image; write it as {', '.join(videoio.IMAGE_FORMATS)} or .gif")
    return Plan(src, dst, out_kind, info)


def _plan_folder(src: Path, dst: Path) -> Plan:
    if dst.exists() and not dst.is_dir():
        raise StylecamError(f"input {src} is a folder, so the output must be a folder too, but {dst} is a file")
    if not dst.exists() and dst.suffix.lower() in videoio.OUTPUT_EXTS:
        raise StylecamError(f"input {src} is a folder of images, so the output is a folder too; {dst.name!r} "
                            f"looks like a file name: give a folder name such as {dst.with_suffix('')}")
    if dst.is_dir() and any(dst.iterdir()):
        raise StylecamError(f"output folder {dst} already has files in it; choose a new or empty folder")
    check_writable(dst.absolute().parent)
    images, skipped = [], []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # hidden folders (.git, ...) stay out
        here = Path(root)
        for name in sorted(files):
            rel = (here / name).relative_to(src)
            if name.startswith("."):
                continue
            kind = videoio.image_format(here / name)
            if kind in videoio.STILL_FORMATS or kind == "GIF" or rel.suffix.lower() in videoio.IMAGE_EXTS:
                images.append(rel)
            else:
                skipped.append(str(rel))
    if not images:
        raise StylecamError(f"input folder {src} holds no images (png, jpg, webp, bmp, tiff, gif) to convert")
    return Plan(src, dst, "dir", images=images, not_images=skipped)


def painted(items: Iterable[T], rgb: Callable[[T], np.ndarray], stylizer: FrameFn,
            stability: Optional[float] = None, workers: int = 1) -> Iterator[Tuple[T, np.ndarray]]:
    """``(item, painted frame)`` in input order through the ordered runner: ``workers`` frames are stylized
    at once, each with the optical-flow stabilizer's flow to its predecessor (``stability`` > 0); the blend
    with the previous output then runs in order. The stabilizer is built per sequence so no motion state
    leaks from one file into the next."""
    from .pipeline import run_ordered, with_previous

    workers = max(1, workers)
    if not stability:
        yield from run_ordered(items, lambda item: stylizer(rgb(item)), workers=workers)
        return
    from .stabilize import Stabilizer

    stab = Stabilizer.offline(stability)

    def stylize(pair):
        previous, item = pair
        x = rgb(item)
        return stab.prepare(None if previous is None else rgb(previous), x, stylizer(x))

    for (_, item), y in run_ordered(with_previous(items), stylize, lambda _, p: stab.apply(p), workers=workers):
        yield item, y


def _progress(total: Optional[int], desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True, leave=False,
                disable=not (enabled and sys.stderr.isatty()))


def _note(msg: str) -> None:
    print(f"stylecam: note: {msg}", file=sys.stderr)


def _thin_for_gif(frames: Iterator[Frame], fps: float) -> Iterator[Frame]:
    """Drop frames above GIF's 50 fps ceiling before they cost a stylization; the kept ones last longer."""
    step = math.ceil(fps / videoio.GIF_MAX_FPS) if fps > videoio.GIF_MAX_FPS else 1
    for i, f in enumerate(frames):
        if i % step == 0:
            f.duration_ms *= step
            yield f


def convert(input: Union[PathLike, Plan], output: Optional[PathLike] = None, stylizer: FrameFn = None,
            progress: bool = True, stability: Optional[float] = None, workers: int = 1,
            even_size: bool = False) -> Path:
    """Paint ``input`` into ``output`` with ``stylizer`` (any RGB uint8 frame -> same-shape frame).

    GIF/WebP/APNG animations keep per-frame durations, loop count and transparency; video->video keeps size,
    fps, timestamps, frame count and audio; video<->GIF, image->image and folder->folder work too. ``input``
    may be a ``Plan`` already made. Returns the output path; a folder with unreadable images raises
    ``PartialFolder`` after converting the rest.
    """
    check_stability(stability)
    p = input if isinstance(input, Plan) else plan(input, output)
    if p.out_kind == "dir":
        result = _convert_folder(p, stylizer, progress, stability, workers, even_size)
        if result.failed:
            raise PartialFolder(result)
        return p.dst
    _convert_file(p, stylizer, progress, stability, workers, even_size)
    return p.dst


class PartialFolder(StylecamError):
    """Some images of a folder could not be read; the others were converted and written."""

    def __init__(self, result: FolderResult):
        self.result = result
        n, bad = len(result.converted), len(result.failed)
        super().__init__(f"converted {n} of {n + bad} images into {result.dst}; skipped {bad} that could not be "
                         f"read (listed above)")


def _convert_file(p: Plan, stylizer: FrameFn, progress: bool, stability: Optional[float],
                  workers: int = 1, even_size: bool = False) -> None:
    info = p.info
    frames = videoio.read_frames(info)
    if p.out_kind == "image":
        f = next(frames)
        videoio.write_image(p.dst, stylizer(f.rgb), f.alpha)
        return

    def paint(items, rgb=lambda f: f.rgb):
        return painted(items, rgb, stylizer, stability, workers)

    total = info.n_frames
    if p.out_kind in ("gif", "animation"):
        if info.kind == "video":
            frames = _thin_for_gif(frames, float(info.fps))
            total = math.ceil(total / math.ceil(float(info.fps) / videoio.GIF_MAX_FPS)) if total else None
        loop = info.loop if info.kind == "animation" else 0
        writer = videoio.GifWriter if p.out_kind == "gif" else videoio.AnimationWriter
        with writer(p.dst, loop=loop) as out, _progress(total, p.src.name, progress) as bar:
            for f, y in paint(frames):
                out.write(y, f.alpha, f.duration_ms)
                bar.update()
        return
    pix_fmt = "yuv420p" if even_size else "auto"
    note = videoio.odd_size_note((info.width, info.height), pix_fmt)
    if note:
        _note(note)
    audio = str(info.path) if info.has_audio else None
    timed = info.kind == "video" and info.time_base is not None
    with videoio.VideoWriter(p.dst, info.fps, audio_from=audio, sar=info.sar, pix_fmt=pix_fmt,
                             time_base=info.time_base if timed else None) as out, \
            _progress(total, p.src.name, progress) as bar:
        if info.kind == "video":
            for f, y in paint(frames):
                out.write(y, f.time_s if timed else None)  # the input's own timestamps: VFR stays VFR
                bar.update()
        else:  # animation: hold each frame for its duration at a constant rate that fits all of them
            for (_, n), y in paint(_retimed(frames, float(info.fps), bar), rgb=lambda fn: fn[0].rgb):
                for _ in range(n):
                    out.write(y)


def _retimed(frames: Iterator[Frame], fps: float, bar) -> Iterator[Tuple[Frame, int]]:
    """Animation frames with how many video frames at ``fps`` each lasts; frames too short to show are
    skipped before they cost a stylization."""
    t_ms, shown = 0.0, 0
    for f in frames:
        t_ms += f.duration_ms if f.duration_ms > 10 else 100.0  # browsers show 0-10 ms GIF frames for 100 ms
        n = round(t_ms * fps / 1000) - shown
        bar.update()
        if n > 0:
            shown += n
            yield f, n


def _convert_folder(p: Plan, stylizer: FrameFn, progress: bool, stability: Optional[float],
                    workers: int = 1, even_size: bool = False) -> FolderResult:
    """Every image into the same relative place under a temporary folder, renamed onto the target at the end.
    An image that cannot be read is skipped with a line; a failed write (disk full) ends the run with
    nothing kept."""
    from tqdm import tqdm

    if p.not_images:
        shown = ", ".join(p.not_images[:5]) + (" ..." if len(p.not_images) > 5 else "")
        _note(f"skipping {len(p.not_images)} file(s) that are not images: {shown}")
    converted, failed = [], []
    with AtomicOutput(p.dst, folder=True) as out:
        for rel in tqdm(p.images, desc=p.src.name, unit="image", leave=False,
                        disable=not (progress and sys.stderr.isatty())):
            src = p.src / rel
            name = rel.name if src.suffix.lower() in videoio.OUTPUT_EXTS else rel.name + _ext_for(src)
            target = out.tmp / rel.parent / name
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                _convert_file(plan(src, target), stylizer, False, stability, workers, even_size)
            except WriteError:
                raise
            except OSError as e:
                raise write_error(p.dst, e) from None
            except StylecamError as e:
                print(f"stylecam: skipped {rel}: {e}", file=sys.stderr)
                failed.append((str(rel), str(e)))
                continue
            converted.append(p.dst / rel.parent / name)
        if not converted:
            raise StylecamError(f"none of the {len(failed)} images in {p.src} could be read; nothing written")
    return FolderResult(p.dst, converted, failed)


def _ext_for(src: Path) -> str:
    """An extension for a file whose name lacks one (the folder scan knows it by its content)."""
    fmt = videoio.image_format(src)
    return ".gif" if fmt == "GIF" else next(e for e, f in videoio.IMAGE_FORMATS.items() if f == fmt)


# -- command line ----------------------------------------------------------------------------------------------
def register(sub) -> None:
    ap = sub.add_parser("convert", help="paint a GIF, video, image or folder of images",
                        description="Paint INPUT in a style and write OUTPUT; the output type follows its "
                                    "extension (.gif, .mp4/.mov/.mkv, .png/.jpg/.webp; .webp/.png keep an "
                                    "animation animated) or is a folder for a folder of images.")
    ap.add_argument("input", metavar="INPUT", help="GIF, WebP/APNG animation, video, image, or a folder of images")
    ap.add_argument("output", metavar="OUTPUT", help="output file (type from its extension) or folder")
    ap.add_argument("--style", required=True, help="style name (see `stylecam styles`) or weights file path")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="process at this fraction of the size (faster, coarser); output keeps the input size")
    ap.add_argument("--strength", type=float, default=1.0, help="0..1 blend with the original (default 1)")
    ap.add_argument("--preserve-colors", action="store_true", help="keep the input's colours, paint the light")
    ap.add_argument("--stability", type=float, default=None, metavar="K",
                    help="flicker removal for videos and GIFs, in [0, 1) (default 0.95; 0 = off)")
    ap.add_argument("--even-size", action="store_true",
                    help="video: pad an odd width/height by one edge pixel and write 4:2:0, which every player "
                         "takes (default: keep the exact size as 4:4:4)")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: best available)")
    ap.add_argument("--precision", default=None, help="auto, fp32, fp16 or bf16")
    ap.add_argument("--backend", choices=["auto", "torch", "openvino"], default=None,
                    help="CPU engine: openvino, torch, or auto (default: OpenVINO, PyTorch if it cannot run the net)")
    ap.add_argument("--workers", type=int, default=None, metavar="N",
                    help="frames stylized in parallel (default: 2 on a CPU with 2+ cores; 1 on a GPU)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no 'wrote' line")
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
    from .engine import load, pick_device
    from .pipeline import worker_threads
    from .stabilize import strength_or_default

    check_stability(args.stability)
    p = plan(args.input, args.output)  # bad paths fail before the style is loaded
    replacing = p.out_kind != "dir" and p.dst.is_file()
    previous = _stop_on_sigterm()
    status = 0
    try:
        with worker_threads(args.workers, pick_device(args.device).type) as workers:
            stylizer = load(args.style, device=args.device, precision=args.precision, backend=args.backend,
                            strength=args.strength, preserve_colors=args.preserve_colors, scale=args.scale)
            out = convert(p, stylizer=stylizer, progress=not args.quiet,
                          stability=strength_or_default(args.stability), workers=workers, even_size=args.even_size)
    except PartialFolder as e:
        print(f"stylecam: {e}", file=sys.stderr)
        out, status = p.dst, 1
    except KeyboardInterrupt:
        print("stylecam: interrupted; no output written", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if replacing:
        print(f"stylecam: replaced the earlier {out}", file=sys.stderr)
    elif not args.quiet and status == 0:
        print(f"wrote {out}", file=sys.stderr)
    return status
