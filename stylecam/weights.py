"""Style weights files: tensors plus provenance metadata, loaded without unpickling anything.

The native format is safetensors with one metadata entry, ``stylecam``, holding JSON:
``{"format": 1, "arch": ..., "config": {...}, "name": ..., "display_name": ..., "credit": {...},
"recipe": {...}, "training": {...}}``. pytorch/examples ``.pth``/``.model`` state dicts load too, through
``torch.load(weights_only=True)``, which refuses pickled code, and so does such a state dict saved as
``.safetensors``. Weights with NaN or infinite values are refused.

Short style names are looked up in, first to last: the folders in ``$STYLECAM_WEIGHTS`` (``os.pathsep``
separated), the user's styles folder (``$XDG_DATA_HOME/stylecam/styles``, by default
``~/.local/share/stylecam/styles``, where ``stylecam train`` puts a style given by bare name) and the styles
shipped inside the package (``stylecam/styles`` in the wheel, the repo's ``weights/`` in a source checkout).
"""
from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from . import models
from .atomic import save_file
from .errors import StylecamError

FORMAT_VERSION = 1
SUFFIXES = (".safetensors", ".pth", ".pt", ".model")
# What a painting or photo passed as --style starts with: (magic bytes, format name)
_IMAGE_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
                (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def shipped_styles_dir() -> Path:
    """The styles that come with stylecam: package data in an installed wheel (``stylecam/styles``, mapped
    from the repo's ``weights/`` at build time), the repo's ``weights/`` folder in a source checkout."""
    packaged = Path(str(resources.files("stylecam") / "styles"))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "weights"


def user_styles_dir() -> Path:
    """Where a user's own styles live: ``$XDG_DATA_HOME/stylecam/styles`` (``~/.local/share/...``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "stylecam" / "styles"


@dataclass
class StyleInfo:
    """What a weights file says about itself."""

    name: str
    arch: str
    config: Dict[str, Any] = field(default_factory=dict)
    display_name: str = ""
    credit: Dict[str, Any] = field(default_factory=dict)
    recipe: Dict[str, Any] = field(default_factory=dict)
    training: Dict[str, Any] = field(default_factory=dict)
    path: Optional[str] = None

    def credit_line(self) -> str:
        c = self.credit or {}
        parts = [p for p in (c.get("title"), c.get("artist"), str(c.get("year", "")) or None) if p]
        return ", ".join(parts)

    def to_meta(self) -> Dict[str, Any]:
        return {"format": FORMAT_VERSION, "arch": self.arch, "config": self.config, "name": self.name,
                "display_name": self.display_name or self.name, "credit": self.credit, "recipe": self.recipe,
                "training": self.training}


def weights_dirs() -> list[Path]:
    """Where short style names are looked up, first wins: $STYLECAM_WEIGHTS (os.pathsep list), the user's
    styles folder, the shipped styles."""
    extra = [Path(p).expanduser() for p in os.environ.get("STYLECAM_WEIGHTS", "").split(os.pathsep) if p]
    return extra + [user_styles_dir(), shipped_styles_dir()]


def available_styles() -> Dict[str, Path]:
    """Short name -> file, for every weights file in the lookup folders (earlier folders win)."""
    found: Dict[str, Path] = {}
    for d in weights_dirs():
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.suffix == ".safetensors" and p.stem not in found:
                found[p.stem] = p
    return found


def resolve(style: str | os.PathLike) -> Path:
    """A style name (``gogh``) or a path to a weights file -> the file."""
    p = Path(style)
    if p.suffix in SUFFIXES or os.sep in str(style) or p.exists():
        if p.is_dir():
            raise StylecamError(f"--style {p} is a folder, not a weights file; pass a .safetensors file or a name "
                                f"from `stylecam styles` (a folder of styles goes in STYLECAM_WEIGHTS)")
        if not p.is_file():
            raise StylecamError(f"weights file {p} does not exist; `stylecam styles` lists the installed styles")
        return p
    styles = available_styles()
    if str(style) in styles:
        return styles[str(style)]
    known = ", ".join(styles) or "none installed"
    raise StylecamError(f"unknown style {style!r} (known: {known}); pass a name from `stylecam styles` or a "
                        f"path to a weights file")


def save(path: str | os.PathLike, model: nn.Module, info: StyleInfo, half: bool = False) -> Path:
    """Write tensors + metadata atomically (temp file beside the target, then rename)."""
    from safetensors.torch import save_file as save_safetensors

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: (v.detach().to("cpu", torch.float16 if half and v.is_floating_point() else v.dtype)).contiguous()
          for k, v in model.state_dict().items()}
    info.arch = getattr(model, "arch_name", info.arch)
    info.config = getattr(model, "config", info.config)
    save_file(lambda tmp: save_safetensors(sd, str(tmp), metadata={"stylecam": json.dumps(info.to_meta())}),
              path)
    return path


def _read_safetensors(path: Path):
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        sd = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise StylecamError(f"weights file {path}: not a readable safetensors file ({e})") from None
    if "stylecam" not in meta:
        if "conv1.conv2d.weight" in sd:  # a pytorch/examples state dict stored as safetensors
            return _examples_state_dict(path, sd)
        raise StylecamError(f"weights file {path}: no stylecam metadata; it was not written by stylecam")
    try:
        m = json.loads(meta["stylecam"])
    except json.JSONDecodeError:
        raise StylecamError(f"weights file {path}: its stylecam metadata is not valid JSON") from None
    return sd, _checked_meta(path, m)


# The metadata fields and the JSON types they must have (a wrong type is a damaged or foreign file).
_META_TYPES = {"arch": (str,), "config": (dict,), "name": (str, type(None)), "display_name": (str, type(None)),
               "credit": (dict,), "recipe": (dict,), "training": (dict,)}


def _checked_meta(path: Path, m: Any) -> Dict[str, Any]:
    if not isinstance(m, dict):
        raise StylecamError(f"weights file {path}: its stylecam metadata is a JSON {type(m).__name__}, not an "
                            f"object; the file is damaged")
    for key, types in _META_TYPES.items():
        if key in m and not isinstance(m[key], types):
            want = " or ".join("null" if t is type(None) else {"str": "string", "dict": "object"}[t.__name__]
                               for t in types)
            raise StylecamError(f"weights file {path}: metadata field {key!r} should be a JSON {want}, not "
                                f"{json.dumps(m[key])[:60]}; the file is damaged")
    return m


def _not_weights(path: Path) -> Optional[str]:
    """Why a file is plainly not a weights file (an image, not a zip/pickle), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    fmt = next((f for magic, f in _IMAGE_MAGIC if head.startswith(magic)), None)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        fmt = "WEBP"
    if fmt:
        return (f"is a {fmt} image, not a weights file; to paint in a painting's style train one "
                f"(`stylecam train --style-image {path}`) or use `stylecam paint PHOTO OUT --style-image {path}`")
    if not zipfile.is_zipfile(path) and not head.startswith(b"\x80"):
        return "is not a weights file (neither safetensors nor a PyTorch checkpoint)"
    return None


def _read_torch(path: Path):
    """A pytorch/examples checkpoint: a plain state dict of the classic net."""
    why = _not_weights(path)
    if why:
        raise StylecamError(f"weights file {path} {why}")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if re.search(r"GLOBAL|Unsupported|unsupported", ln)), "unsupported content")
        raise StylecamError(f"weights file {path}: refused, it holds pickled objects that are not plain tensors "
                            f"({reason.rstrip('.')}); stylecam loads only state dicts of tensors") from None
    except Exception as e:  # zip/pickle corruption surfaces as many types
        raise StylecamError(f"weights file {path}: unreadable or corrupt ({type(e).__name__})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise StylecamError(f"weights file {path}: not a state dict of tensors")
    return _examples_state_dict(path, obj)


def _examples_state_dict(path: Path, obj: Dict[str, torch.Tensor]):
    """(state dict, metadata) of a pytorch/examples fast_neural_style TransformerNet."""
    # Old pytorch/examples checkpoints carry InstanceNorm running stats that the net does not use.
    sd = {k: v for k, v in obj.items() if not (k.endswith(".running_mean") or k.endswith(".running_var")
                                                or k.endswith(".num_batches_tracked"))}
    c1 = sd.get("conv1.conv2d.weight")
    c2 = sd.get("conv2.conv2d.weight")
    c3 = sd.get("conv3.conv2d.weight")
    if c1 is None or c2 is None or c3 is None:
        raise StylecamError(f"weights file {path}: not a fast_neural_style TransformerNet state dict "
                            f"(no conv1.conv2d.weight)")
    n_res = len({k.split(".")[0] for k in sd if k.startswith("res")})
    config = {"channels": [c1.shape[0], c2.shape[0], c3.shape[0]], "n_res": n_res}
    meta = {"arch": "johnson", "config": config, "name": path.stem, "display_name": path.stem,
            "credit": {}, "recipe": {}, "training": {"source": "pytorch/examples fast_neural_style checkpoint"}}
    return sd, meta


def _check_finite(path: Path, sd: Dict[str, torch.Tensor]) -> None:
    """NaN or infinite weights paint every frame black; refuse them at load instead."""
    for k, v in sd.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise StylecamError(f"weights file {path}: tensor {k!r} holds NaN or infinite values (a training run "
                                f"that diverged?); retrain or use another file")


def load(style: str | os.PathLike) -> tuple[nn.Module, StyleInfo]:
    """Style name or path -> (model in eval mode, fp32, CPU; its info). Errors are one-line StylecamErrors."""
    path = resolve(style)
    if path.suffix == ".safetensors":
        sd, meta = _read_safetensors(path)
    else:
        sd, meta = _read_torch(path)
    _check_finite(path, sd)
    arch = meta.get("arch")
    if arch not in models.names():
        raise StylecamError(f"weights file {path}: architecture {arch!r} is not one this stylecam knows "
                            f"({', '.join(models.names())})")
    config = dict(meta.get("config", {}))
    if arch == "fast" and "n_res" in config and "up_mode" not in config:
        config["up_mode"] = "nearest"  # files written before ShuffleUp became the default
    try:
        model = models.build(arch, **config)
    except (TypeError, ValueError, KeyError, IndexError) as e:
        raise StylecamError(f"weights file {path}: bad config for {arch!r}: {e}") from None
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise StylecamError(f"weights file {path}: tensors do not fit architecture {arch!r} ({first})") from None
    model.eval()
    info = StyleInfo(name=meta.get("name") or path.stem, arch=arch, config=meta.get("config", {}),
                     display_name=meta.get("display_name") or meta.get("name") or path.stem,
                     credit=meta.get("credit", {}), recipe=meta.get("recipe", {}),
                     training=meta.get("training", {}), path=str(path))
    return model, info
