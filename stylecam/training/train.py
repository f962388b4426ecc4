"""Feed-forward style training (Johnson et al. 2016) with perceptual losses.

    python -m stylecam.training.train --recipe training/recipes/gogh.toml        # reproduce a shipped style
    stylecam train --style-image IMG --dataset DIR --out weights/NAME    # train your own

Everything a run needs to continue lives in its run folder (checkpoint, loss CSV and plot, previews), written
atomically every ``--checkpoint-every`` steps and on Ctrl-C; ``--resume`` picks up where it stopped and, with
the same seed, follows the same loss curve. Under ``torchrun --nproc-per-node N`` it trains with DDP.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import platform
import shlex
import signal
import sys
import time
import tomllib
import warnings
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import parametrize

from stylecam import models
from stylecam import weights as weights_io
from stylecam.atomic import check_writable, save_file
from stylecam.engine import cpu_has_native_bf16
from stylecam.errors import StylecamError

from .data import UNREADABLE, PhotoCrops, StepBatches, find_images, holdout, load_rgb, style_tensor
from .losses import PerceptualLoss, ShiftConsistencyLoss
from .lossnets import build_loss_net
from .paintings import credit_for

ROOT = Path(__file__).resolve().parents[2]  # the repository (recipes, docs, ../shared)

# The look recipe (docs/look.md, training/recipes/*.toml): what `stylecam train` does unless told otherwise.
LOOK_FAST_CONFIG: Dict[str, Any] = {"channels": [32, 64, 128], "n_res": 6, "n_down": 3, "up_mode": "shuffle",
                                    "skips": True, "up_blur": True, "out_shuffle": True,
                                    "dilations": [1, 2, 4, 1, 2, 4]}

DEFAULTS: Dict[str, Any] = {
    "style_image": None, "dataset": None, "out": None, "name": None, "display_name": None,
    "arch": "fast", "arch_config": None, "loss_net": "vgg16", "content_layer": None, "style_layers": None,
    "loss_pooling": None, "style_scales": [1.0], "style_layer_weights": None,
    "image_size": 384, "crop_scale": [1.0, 1.4], "style_size": 384,
    "batch_size": 1, "steps": 800, "content_weight": 0.7, "style_weight": 10.0, "tv_weight": 30.0,
    "lr": 3e-3, "lr_final": 3e-4, "seed": 42, "precision": "auto", "channels_last": False, "workers": 1,
    "checkpoint_every": 100, "preview_every": 250, "holdout": 8, "run_dir": None, "resume": False, "force": False,
    "bias_init": "style-mean", "loss_jitter": True, "out_gain": 30.0,
    "temporal_weight": 500.0, "temporal_shift": 3, "temporal_noise": 4.0,
    "temporal_warp": "shift", "temporal_rotate": 1.0, "temporal_zoom": 0.02,
}

# Settings a resumed run may change without a warning: where files go, how the run is executed, the two checked
# as errors (arch, arch_config), and three the warning has never covered (holdout, bias_init, out_gain). Every
# other setting, including any added to DEFAULTS later, changes the loss curve, so resuming says so.
NOT_ON_THE_CURVE = {"out", "name", "display_name", "arch", "arch_config", "precision", "channels_last", "workers",
                    "checkpoint_every", "preview_every", "holdout", "run_dir", "resume", "force", "bias_init",
                    "out_gain"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stylecam train", description="Train a style network from a painting.")
    p.add_argument("--recipe", help="TOML file of settings (training/recipes/NAME.toml); flags override it")
    p.add_argument("--style-image", help="the painting")
    p.add_argument("--dataset", help="folder tree of photos (jpg/png/webp)")
    p.add_argument("--out", help="weights file to write: a path (e.g. weights/mystyle), or a bare name, which goes "
                                 "to your styles folder where `stylecam styles` looks (default: --name, else the "
                                 "painting's file name, there)")
    p.add_argument("--name", help="short style name (default: the --out file name)")
    p.add_argument("--display-name")
    p.add_argument("--arch", choices=models.names())
    p.add_argument("--arch-config", type=_json_object, metavar="JSON",
                   help='architecture options, e.g. \'{"channels": [16, 32, 64], "n_res": 5}\' (default for fast: '
                        f'{json.dumps(LOOK_FAST_CONFIG)}; for johnson: its own)')
    p.add_argument("--loss-net", choices=["efficientnet-lite0", "vgg16"])
    p.add_argument("--content-layer", choices=["relu2_2", "relu3_3"],
                   help="VGG16 layer the content loss compares (default relu3_3; Johnson et al. used relu2_2)")
    p.add_argument("--loss-pooling", choices=["max", "avg"],
                   help="VGG16's pooling in the loss network (default max, as trained; Gatys et al. used avg)")
    p.add_argument("--style-scales", type=float, nargs="+", metavar="S",
                   help="sizes at which the style term compares output and painting, e.g. 1 0.5 (default 1)")
    p.add_argument("--image-size", type=int,
                   help="random crop size, from photos scaled to --crop-scale times it (default 384: a smaller crop "
                        "of the painting itself is far from the whole at relu4_3, see python -m "
                        "stylecam.training.crops)")
    p.add_argument("--crop-scale", type=float, nargs=2, metavar=("LO", "HI"),
                   help="photos' short side before cropping, as multiples of --image-size (default 1 1.4: a webcam "
                        "frame's height at 384; with --image-size 192 use 2 2.8 to keep that scale)")
    p.add_argument("--style-size", type=int, help="style image short side; aspect ratio kept (default 384)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--content-weight", type=float)
    p.add_argument("--style-weight", type=float)
    p.add_argument("--tv-weight", type=float)
    p.add_argument("--temporal-weight", type=float,
                   help="weight of the shift/noise consistency term that steadies video (0 = off)")
    p.add_argument("--lr", type=float, help="Adam learning rate (cosine-decayed to --lr-final)")
    p.add_argument("--lr-final", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="auto = bf16 autocast only where the CPU has native bf16 (avx512_bf16/AMX), else fp32")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (measured slower on this CPU; off by default)")
    p.add_argument("--workers", type=int, help="data loader worker processes")
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--preview-every", type=int)
    p.add_argument("--holdout", type=int,
                   help="photos kept out of training for previews (default 8; at most 20%% of the photos)")
    p.add_argument("--run-dir", help="checkpoint/log folder (default runs/NAME)")
    p.add_argument("--resume", action="store_true", default=None, help="continue the run in --run-dir")
    p.add_argument("--force", action="store_true", default=None,
                   help="start over in a run folder that holds an earlier run (its checkpoint and log are replaced)")
    return p


def _json_object(text: str) -> Dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"n_res\": 3}'")
    return value


def resolve_config(argv=None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    cfg = dict(DEFAULTS)
    if args.recipe:
        rp = Path(args.recipe)
        if not rp.is_file():
            raise StylecamError(f"recipe {rp} does not exist")
        with open(rp, "rb") as f:
            recipe = tomllib.load(f)
        unknown = set(recipe) - set(DEFAULTS)
        if unknown:
            raise StylecamError(f"recipe {rp}: unknown settings {sorted(unknown)}")
        cfg.update(recipe)
        # Recipe paths are relative to the project root, so a recipe runs from any working directory.
        for k in ("style_image", "dataset", "out", "run_dir"):
            if cfg.get(k) and not Path(cfg[k]).is_absolute():
                cfg[k] = str((ROOT / cfg[k]).resolve())
        cfg["recipe_file"] = str(rp)
    for k, v in vars(args).items():
        if k != "recipe" and v is not None:
            cfg[k] = v
    for k in ("style_image", "dataset"):
        if not cfg.get(k):
            raise StylecamError(f"--{k.replace('_', '-')} is required (or a --recipe that sets it)")
    out = default_out(cfg["out"] or cfg["name"] or Path(cfg["style_image"]).stem)
    if out.suffix != ".safetensors":
        out = out.with_name(out.name + ".safetensors")
    cfg["out"] = str(out)
    cfg["name"] = cfg["name"] or out.stem
    cfg["run_dir"] = cfg["run_dir"] or str(Path("runs") / cfg["name"])
    if cfg["arch_config"] is None:
        cfg["arch_config"] = copy.deepcopy(LOOK_FAST_CONFIG) if cfg["arch"] == "fast" else {}
    if cfg["content_layer"] is None and cfg["loss_net"] == "vgg16":
        cfg["content_layer"] = "relu3_3"
    return cfg


def default_out(out: str) -> Path:
    """``--out``: a path as given; a bare name (no folder, no suffix) goes where `stylecam styles` looks, so
    ``--style NAME`` finds it from any working directory."""
    p = Path(out)
    if len(p.parts) == 1 and not p.suffix:
        return styles_home() / p
    return p


def styles_home() -> Path:
    """Where trained styles live by default: the user's styles folder, which `stylecam styles` lists."""
    return weights_io.user_styles_dir()


def check_inputs(cfg: Dict[str, Any]) -> None:
    """Fail before any work, one line each."""
    if cfg["steps"] < 1:
        raise StylecamError(f"--steps must be at least 1, got {cfg['steps']}")
    if cfg["batch_size"] < 1:
        raise StylecamError(f"--batch-size must be at least 1, got {cfg['batch_size']}")
    lo, hi = cfg["crop_scale"]
    if not 1 <= lo <= hi:
        raise StylecamError(f"--crop-scale needs 1 <= LO <= HI (a crop cannot be larger than the photo), got {lo} {hi}")
    si = Path(cfg["style_image"])
    if not si.is_file():
        raise StylecamError(f"style image {si} does not exist{_data_hint(si)}")
    try:
        load_rgb(si)
    except Exception as e:
        raise StylecamError(f"style image {si} is not a readable image ({type(e).__name__})") from None
    try:
        files = find_images(cfg["dataset"])
    except ValueError as e:
        raise StylecamError(f"{e}{_data_hint(Path(cfg['dataset']))}") from None
    if not any(_readable(f) for f in files):
        raise StylecamError(f"dataset folder {cfg['dataset']}: none of its {len(files)} image files is readable")
    try:
        models.build(cfg["arch"], **cfg["arch_config"])
    except (TypeError, ValueError) as e:
        raise StylecamError(f"arch config {json.dumps(cfg['arch_config'])} does not fit {cfg['arch']!r}: {e}") from None
    out = Path(cfg["out"])
    if out.is_dir():
        raise StylecamError(f"output {out} is a folder; --out names the weights file to write")
    # create a file there: catches read-only mounts even as root; an hour of training lost to a failed save is
    # the cost avoided
    check_writable(out.parent, "output folder", create=True)
    _check_earlier_run(cfg)
    check_writable(Path(cfg["run_dir"]), "run folder (--run-dir)", create=True)


RUN_FILES = ("checkpoint.pt", "loss.csv")


def _check_earlier_run(cfg: Dict[str, Any]) -> None:
    """A new run never silently replaces an earlier run's checkpoint and log."""
    run_dir = Path(cfg["run_dir"])
    found = [f for f in RUN_FILES if (run_dir / f).is_file()]
    if found and not cfg["resume"] and not cfg["force"]:
        raise StylecamError(f"run folder {run_dir} holds an earlier run ({', '.join(found)}): continue it with "
                            f"--resume, give this run a fresh --out/--name (or --run-dir), or start over with --force")


_SHARED_DATA = ROOT.parent / "shared" / "data"


def _data_hint(path: Path) -> str:
    """The recipes' data lives beside the repository, not in it: say where it comes from."""
    try:
        Path(path).resolve().relative_to(_SHARED_DATA.resolve())
    except ValueError:
        return ""
    return (f"; the recipes expect the project's data beside the repository ({_SHARED_DATA}: styles/ holds "
            f"public-domain paintings, content/ the training photos), which a fresh clone lacks: see "
            f"training/recipes/README.md for where they come from, or pass --style-image and --dataset")


def _readable(path: Path) -> bool:
    try:
        load_rgb(path)
        return True
    except UNREADABLE:
        return False


def lr_at(step: int, cfg) -> float:
    """Cosine decay from lr to lr_final: the late steps refine rather than jump around."""
    t = min(1.0, step / max(1, cfg["steps"]))
    return cfg["lr_final"] + 0.5 * (cfg["lr"] - cfg["lr_final"]) * (1 + math.cos(math.pi * t))


class Run:
    """One training run's state and files."""

    def __init__(self, cfg: Dict[str, Any]):
        self.cfg = cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.distributed = self.world > 1
        self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if torch.cuda.is_available() \
            else torch.device("cpu")
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.main = self.rank == 0
        self.run_dir = Path(cfg["run_dir"])
        self.ckpt_path = self.run_dir / "checkpoint.pt"

        torch.manual_seed(cfg["seed"])
        torch.set_flush_denormal(True)  # fp32 denormals cost ~20% on this CPU
        prec = cfg["precision"]
        self.bf16 = prec == "bf16" or (prec == "auto" and self.device.type == "cpu" and cpu_has_native_bf16())
        self.mem_format = torch.channels_last if cfg["channels_last"] else torch.contiguous_format

        self.model = models.build(cfg["arch"], **cfg["arch_config"]).to(self.device, memory_format=self.mem_format)
        style = style_tensor(cfg["style_image"], cfg["style_size"]).to(self.device)
        gain = float(cfg["out_gain"])
        if gain != 1.0:
            _add_output_gain(self.model.output_layer(), gain)
        if cfg["bias_init"] == "style-mean":
            # From the default init the output starts black and takes ~500 steps to brighten.
            with torch.no_grad():
                layer = self.model.output_layer()
                raw = layer.parametrizations.bias.original if gain != 1.0 else layer.bias
                # one per output channel: a shuffled output has each colour's four phases in a row
                raw.copy_((style.mean((0, 2, 3)) * 255.0 / gain).repeat_interleave(raw.numel() // 3))
        self.loss_net = build_loss_net(cfg["loss_net"], cfg["content_layer"], cfg["style_layers"],
                                       cfg["loss_pooling"])
        self.loss_net = self.loss_net.to(self.device, memory_format=self.mem_format)
        self.criterion = PerceptualLoss(self.loss_net, style, cfg["content_weight"], cfg["style_weight"],
                                        cfg["tv_weight"], cfg["style_scales"], cfg["style_layer_weights"])
        self.temporal = ShiftConsistencyLoss(cfg["temporal_shift"], cfg["temporal_noise"],
                                             multiple=getattr(self.model, "size_multiple", 4),
                                             warp=cfg["temporal_warp"], rotate=cfg["temporal_rotate"],
                                             zoom=cfg["temporal_zoom"])
        self.net = DistributedDataParallel(self.model) if self.distributed else self.model
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg["lr"])
        self.step = 0
        self.elapsed = 0.0
        self.argv: Optional[list] = None  # the command line, to print how to resume
        self.stop_requested = False

        files = find_images(cfg["dataset"])
        # Holdout: a fixed, spread-out subset never trained on, for previews and held-out losses.
        self.holdout = holdout(files, cfg["holdout"])
        if len(self.holdout) < cfg["holdout"] and self.main:
            print(f"holding out {len(self.holdout)} of {len(files)} photos for previews, not {cfg['holdout']}: "
                  f"at most 20% are kept out of training; training on the other {len(files) - len(self.holdout)}",
                  file=sys.stderr)
        self.dataset = PhotoCrops(cfg["dataset"], cfg["image_size"], cfg["seed"], cfg["crop_scale"])
        self.dataset.files = [f for f in self.dataset.files if f not in set(self.holdout)]

    # -- checkpoints -------------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        if not self.main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
                 "elapsed": self.elapsed, "cfg_json": json.dumps(self.cfg, sort_keys=True)}
        save_file(lambda tmp: torch.save(state, tmp), self.ckpt_path)

    def load_checkpoint(self) -> bool:
        if not self.ckpt_path.is_file():
            return False
        state = torch.load(self.ckpt_path, map_location=self.device, weights_only=True)
        self._check_resume_config(json.loads(state.get("cfg_json", "{}")))
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        return True

    def _check_resume_config(self, saved: Dict[str, Any]) -> None:
        """A resumed run must be the same model; other differences change the curve, so say which."""
        for k in ("arch", "arch_config"):
            if k in saved and saved[k] != self.cfg[k]:
                raise StylecamError(f"cannot resume {self.ckpt_path}: it was trained with {k}={saved[k]!r}, not "
                                    f"{self.cfg[k]!r}")
        if self.main:
            changed = [k for k in DEFAULTS if k not in NOT_ON_THE_CURVE and k in saved and saved[k] != self.cfg[k]]
            if changed:
                warnings.warn(f"resuming with changed settings {', '.join(f'{k}: {saved[k]!r} -> {self.cfg[k]!r}' for k in changed)}; "
                              f"the loss curve will differ from an uninterrupted run")

    # -- logging -----------------------------------------------------------------------------------------
    def log(self, row: Dict[str, float]) -> None:
        path = self.run_dir / "loss.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    def truncate_log(self) -> None:
        """On resume, drop log rows past the checkpoint so the CSV is one clean curve."""
        path = self.run_dir / "loss.csv"
        if not path.exists():
            return
        with open(path) as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if int(r["step"]) <= self.step]
        if rows:
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(keep)

    def plot(self) -> None:
        from .report import plot_losses
        plot_losses(self.run_dir / "loss.csv", self.run_dir / "loss.png", self.cfg["name"])

    def preview(self) -> None:
        from .report import preview_grid
        if self.holdout:
            preview_grid(self.model, self.holdout, self.run_dir / "previews" / f"step{self.step:06d}.png")

    def jitter(self, out: torch.Tensor, photo: torch.Tensor):
        """Crop output and photo by the same random 0-1 px offset before the loss net: its stride-2 stem
        otherwise rewards a texture locked to one sampling phase (the faint grid seen in the pilot)."""
        if not self.cfg["loss_jitter"]:
            return out, photo
        g = torch.Generator().manual_seed(self.cfg["seed"] * 1_000_003 + self.step)
        dy, dx = (int(v) for v in torch.randint(0, 2, (2,), generator=g))
        h, w = out.shape[-2:]
        return out[..., dy:h - 1 + dy, dx:w - 1 + dx], photo[..., dy:h - 1 + dy, dx:w - 1 + dx]

    # -- the loop ----------------------------------------------------------------------------------------
    def _on_sigint(self, signum, frame) -> None:
        """First Ctrl-C: finish the current step, then checkpoint and stop (a KeyboardInterrupt inside
        ``opt.step()`` would save a half-updated model). Second Ctrl-C: stop at once, without saving."""
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested = True
        if self.main:
            print("\nstopping after this step (Ctrl-C again to abort without saving)", file=sys.stderr)

    def _should_stop(self) -> bool:
        """Every rank must leave the loop at the same step, or the others block in DDP's all-reduce."""
        if not self.distributed:
            return self.stop_requested
        flag = torch.tensor([1.0 if self.stop_requested else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def resume_command(self) -> str:
        if self.argv is None:
            return "the same command with --resume"
        argv = [a for a in self.argv if a != "--resume"] + ["--resume"]
        return shlex.join(["stylecam", "train", *argv])

    def train(self) -> Path:
        cfg = self.cfg
        resumed = cfg["resume"] and self.load_checkpoint()
        if cfg["resume"] and not resumed and self.main:
            warnings.warn(f"--resume: no checkpoint in {self.run_dir}; starting from step 0")
        if resumed and self.main:
            print(f"resuming {cfg['name']} at step {self.step}/{cfg['steps']}", file=sys.stderr)
            self.truncate_log()
        elif self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for name in RUN_FILES:  # only reached with --force (or nothing there): check_inputs refuses otherwise
                (self.run_dir / name).unlink(missing_ok=True)
        try:
            previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread (embedded use): plain KeyboardInterrupt semantics
            previous_handler = None
        try:
            return self._train_loop()
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)

    def _train_loop(self) -> Path:
        cfg = self.cfg
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=StepBatches(self.step, cfg["steps"], cfg["batch_size"], self.rank,
                                                    self.world),
            num_workers=cfg["workers"], worker_init_fn=_worker_init, persistent_workers=False)
        from tqdm import tqdm
        bar = tqdm(total=cfg["steps"], initial=self.step, disable=not self.main, unit="step",
                   dynamic_ncols=True, mininterval=2.0)
        self.net.train()
        clean_stop = False
        t_last = time.perf_counter()
        try:
            for batch in loader:
                batch = batch.to(self.device, memory_format=self.mem_format)
                for g in self.opt.param_groups:
                    g["lr"] = lr_at(self.step, cfg)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    out = self.net(batch)
                    full_out = out
                    out, photo = self.jitter(out, batch)
                    parts = self.criterion(out / 255.0, photo / 255.0)
                    if cfg["temporal_weight"] > 0:
                        g = torch.Generator().manual_seed(cfg["seed"] * 7_000_003 + self.step)
                        parts["temporal"] = self.temporal(self.model, batch, full_out, g)
                        parts["total"] = parts["total"] + cfg["temporal_weight"] * parts["temporal"]
                self.opt.zero_grad(set_to_none=True)
                parts["total"].backward()
                self.opt.step()
                self.step += 1
                now = time.perf_counter()
                dt, t_last = now - t_last, now
                self.elapsed += dt
                if self.main:
                    # 8 significant digits: rounding to decimals lost the small TV term's precision.
                    self.log({"step": self.step, **{k: float(f"{v.item():.8g}") for k, v in parts.items()},
                              "lr": float(f"{lr_at(self.step - 1, cfg):.8g}"), "sec": round(dt, 4)})
                    bar.update(1)
                    bar.set_postfix(loss=f"{parts['total'].item():.3f}", refresh=False)
                    if cfg["checkpoint_every"] and self.step % cfg["checkpoint_every"] == 0:
                        self.save_checkpoint()
                    if cfg["preview_every"] and self.step % cfg["preview_every"] == 0:
                        self.preview()
                        self.plot()
                if self.step < cfg["steps"] and self._should_stop():
                    clean_stop = True
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            bar.close()
            if not clean_stop:
                raise  # a second Ctrl-C mid-step: the model may be half-updated; keep the last checkpoint
            self.save_checkpoint()
            if self.main:
                print(f"\ninterrupted at step {self.step}/{cfg['steps']}; checkpoint saved in {self.ckpt_path}\n"
                      f"continue with: {self.resume_command()}", file=sys.stderr)
            raise
        bar.close()
        self.save_checkpoint()
        out = Path(cfg["out"])
        if self.main:
            self.preview()
            self.plot()
            out = self.export()
        if self.distributed:
            dist.barrier()  # all ranks, after rank 0's files: nobody tears the group down while rank 0 writes
        return out

    def export(self) -> Path:
        cfg = self.cfg
        stem = Path(cfg["style_image"]).stem
        credit = credit_for(stem)
        recipe = {k: cfg[k] for k in DEFAULTS if k not in ("resume", "force", "run_dir", "out")}
        for k in ("style_image", "dataset"):
            recipe[k] = _rel(cfg[k])
        info = weights_io.StyleInfo(
            name=cfg["name"], arch=cfg["arch"], display_name=cfg["display_name"] or credit["title"],
            credit=credit, recipe=recipe,
            training={"steps": self.step, "loss_net": cfg["loss_net"], "data": _rel(cfg["dataset"]),
                      "train_photos": len(self.dataset.files), "style_image": _rel(cfg["style_image"]),
                      "recipe_file": _rel(cfg.get("recipe_file", "")) if cfg.get("recipe_file") else None,
                      "seconds": round(self.elapsed, 1), "sec_per_step": round(self.elapsed / max(1, self.step), 3),
                      "precision": "bf16" if self.bf16 else "fp32", "world_size": self.world,
                      "torch": torch.__version__, "machine": platform.machine(), "threads": torch.get_num_threads(),
                      "final_losses": _final_losses(self.run_dir / "loss.csv")})
        model = copy.deepcopy(self.model).eval()
        layer = model.output_layer()
        for name in ("weight", "bias"):  # fold the training-time gain: the file holds the plain architecture
            if parametrize.is_parametrized(layer, name):
                parametrize.remove_parametrizations(layer, name, leave_parametrized=True)
        return weights_io.save(cfg["out"], model, info, half=True)


class _Gain(nn.Module):
    def __init__(self, gain: float):
        super().__init__()
        self.gain = gain

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.gain


def _add_output_gain(layer: nn.Conv2d, gain: float) -> None:
    """Train the last conv as ``gain * raw``. Its default init gives an output std of ~0.3 on a 0..255 scale, and
    Adam's fixed step size then needs thousands of steps to reach image contrast; with the gain, content shows
    up in tens of steps (measured: content loss 0.16 vs 0.27 after 60 content-only steps). Folded on export."""
    parametrize.register_parametrization(layer, "weight", _Gain(gain))
    parametrize.register_parametrization(layer, "bias", _Gain(gain))


def _rel(p: str) -> str:
    try:
        return os.path.relpath(Path(p).resolve(), ROOT)
    except ValueError:
        return str(p)


def _final_losses(csv_path: Path, frac: float = 0.05) -> Dict[str, float]:
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    tail = rows[-max(1, int(len(rows) * frac)):]
    keys = [k for k in ("total", "content", "style", "tv", "temporal") if k in rows[-1]]
    return {k: round(sum(float(r[k]) for r in tail) / len(tail), 5) for k in keys}


def _worker_init(_):
    torch.set_num_threads(1)
    # Ctrl-C reaches the whole process group; the main process decides when to stop, and a worker that
    # died of KeyboardInterrupt would turn a clean stop into "DataLoader worker exited unexpectedly".
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = resolve_config(argv)
        check_inputs(cfg)
        run = Run(cfg)
        run.argv = argv
    except StylecamError as e:
        print(f"stylecam train: error: {e}", file=sys.stderr)
        return 2
    try:
        out = run.train()
    except KeyboardInterrupt:
        return 130
    except StylecamError as e:
        print(f"stylecam train: error: {e}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if run.main:
        print(f"wrote {out} ({run.step} steps, {run.elapsed / 60:.1f} min){_use_hint(out)}")
    return 0


def _use_hint(out: Path) -> str:
    """How to use the new style: by name if it landed where `stylecam styles` looks, else by path."""
    name = out.stem
    if weights_io.available_styles().get(name, Path()).resolve() == out.resolve():
        return f"; use it with: stylecam --style {name}"
    return (f"; use it with: stylecam --style {out} (a bare --out {name} puts it in {styles_home()}, "
            f"where --style {name} finds it)")


if __name__ == "__main__":
    sys.exit(main())
