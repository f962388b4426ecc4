"""Style weights files: tensors plus provenance metadata, loaded without unpickling anything.

The native format is safetensors with one metadata entry, ``stylecam``, holding JSON:
``{"format": 1, "arch": ..., "config": {...}, "name": ..., "display_name": ..., "credit": {...},
"recipe": {...}, "training": {...}}``. pytorch/examples ``.pth``/``.model`` state dicts load too, through
``torch.load(weights_only=True)``, which refuses pickled code.
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from . import models
from .errors import StylecamError

FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
SUFFIXES = (".safetensors", ".pth", ".pt", ".model")


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
    """Where short style names are looked up: $STYLECAM_WEIGHTS (os.pathsep list) first, then weights/."""
    extra = [Path(p) for p in os.environ.get("STYLECAM_WEIGHTS", "").split(os.pathsep) if p]
    return extra + [WEIGHTS_DIR]


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
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: (v.detach().to("cpu", torch.float16 if half and v.is_floating_point() else v.dtype)).contiguous()
          for k, v in model.state_dict().items()}
    info.arch = getattr(model, "arch_name", info.arch)
    info.config = getattr(model, "config", info.config)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(sd, tmp, metadata={"stylecam": json.dumps(info.to_meta())})
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; weights are shared files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _read_safetensors(path: Path):
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        sd = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise StylecamError(f"weights file {path}: not a readable safetensors file ({e})") from None
    if "stylecam" not in meta:
        raise StylecamError(f"weights file {path}: no stylecam metadata; it was not written by stylecam")
    try:
        m = json.loads(meta["stylecam"])
    except json.JSONDecodeError:
        raise StylecamError(f"weights file {path}: its stylecam metadata is not valid JSON") from None
    return sd, m


def _read_torch(path: Path):
    """A pytorch/examples checkpoint: a plain state dict of the classic net."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported content"
        raise StylecamError(f"weights file {path}: refused, it holds pickled objects that are not plain tensors "
                            f"({first[:120]})") from None
    except Exception as e:  # zip/pickle corruption surfaces as many types
        raise StylecamError(f"weights file {path}: unreadable or corrupt ({type(e).__name__})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise StylecamError(f"weights file {path}: not a state dict of tensors")
    # Old pytorch/examples checkpoints carry InstanceNorm running stats that the net does not use.
    sd = {k: v for k, v in obj.items() if not (k.endswith(".running_mean") or k.endswith(".running_var")
                                                or k.endswith(".num_batches_tracked"))}
    c1 = sd.get("conv1.conv2d.weight")
    c3 = sd.get("conv3.conv2d.weight")
    if c1 is None or c3 is None:
        raise StylecamError(f"weights file {path}: not a fast_neural_style TransformerNet state dict "
                            f"(no conv1.conv2d.weight)")
    n_res = len({k.split(".")[0] for k in sd if k.startswith("res")})
    config = {"channels": [c1.shape[0], sd["conv2.conv2d.weight"].shape[0], c3.shape[0]], "n_res": n_res}
    meta = {"arch": "johnson", "config": config, "name": path.stem, "display_name": path.stem,
            "credit": {}, "recipe": {}, "training": {"source": "pytorch/examples fast_neural_style checkpoint"}}
    return sd, meta


def load(style: str | os.PathLike) -> tuple[nn.Module, StyleInfo]:
    """Style name or path -> (model in eval mode, fp32, CPU; its info). Errors are one-line StylecamErrors."""
    path = resolve(style)
    if path.suffix == ".safetensors":
        sd, meta = _read_safetensors(path)
    else:
        sd, meta = _read_torch(path)
    arch = meta.get("arch")
    if arch not in models.names():
        raise StylecamError(f"weights file {path}: architecture {arch!r} is not one this stylecam knows "
                            f"({', '.join(models.names())})")
    config = dict(meta.get("config", {}))
    if arch == "fast" and "n_res" in config and "up_mode" not in config:
        config["up_mode"] = "nearest"  # files written before ShuffleUp became the default
    try:
        model = models.build(arch, **config)
    except TypeError as e:
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
