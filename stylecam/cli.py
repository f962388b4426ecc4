"""`stylecam` command line: live (default), convert, styles, train, paint, bench, export.

Every command module exposes ``register(subparsers)``; user mistakes surface as one ``error:`` line and exit 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import StylecamError

# subcommand -> module that registers it
COMMANDS = {"live": "stylecam.live", "convert": "stylecam.convert", "styles": "stylecam.cli",
            "bench": "stylecam.bench", "paint": "stylecam.training.paint", "export": "stylecam.export"}
PASSTHROUGH = {"train": "stylecam.training.train"}  # modules with their own full argument parser


def register(sub) -> None:
    p = sub.add_parser("styles", help="list the installed styles")
    p.set_defaults(func=list_styles)


def list_styles(args) -> int:
    from . import weights as weights_io

    styles = weights_io.available_styles()
    if not styles:
        print("no styles installed; train one with `stylecam train` or pass a weights file path to --style")
        return 0
    rows = []
    for name, path in styles.items():
        try:
            _, info = weights_io.load(path)
            rows.append((name, info.display_name, info.credit_line(), info.arch))
        except StylecamError as e:
            rows.append((name, "(unreadable)", str(e), "?"))
    head = ("name", "display name", "painting", "architecture")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(4)]
    for r in [head] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="stylecam", description="Paint live webcam video and files in the style "
                                     "of a painting. Without a command, runs `live`.")
    parser.add_argument("--version", action="version", version=f"stylecam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{live,convert,styles,train,paint,bench,export}")
    for mod in dict.fromkeys(COMMANDS.values()):
        importlib.import_module(mod).register(sub)
    sub.add_parser("train", help="train a new style (see `stylecam train --help`)", add_help=False)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:
        return importlib.import_module(PASSTHROUGH[argv[0]]).main(argv[1:])
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv = ["live"] + argv
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except StylecamError as e:
        print(f"stylecam: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
