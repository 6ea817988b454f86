"""``spbox`` command line: segment | evaluate | plot | compare | plot-training | train | validate |
average | benchmark | serve-cvat.

``segment`` and :func:`main` live here; each package registers its own sub-commands on the
parser :func:`build_parser` makes: :mod:`napari_spbox.evaluation.cli` (evaluate, plot, compare),
:mod:`napari_spbox.train.cli` (plot-training, train, validate, average),
:mod:`napari_spbox.benchmark` and :mod:`napari_spbox.serve`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .predictors import METHODS, add_weights_options

_POSITIVE = ("+", "pos", "p", "1", "positive")
_NEGATIVE = ("-", "neg", "n", "0", "negative")


def _click(text: str):
    """Parse ``x,y`` (positive), ``x,y,pos`` or ``x,y,neg`` into (row, col, positive).

    Anything else is refused, so that a typo never flips a click's sign.
    """
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a click is x,y or x,y,pos or x,y,neg; got {text!r}"
        ) from None
    sign = parts[2].lower() if len(parts) == 3 else "pos"
    if sign not in _POSITIVE + _NEGATIVE:
        raise argparse.ArgumentTypeError(
            f"the third part of a click is pos or neg (or + / -); got {text!r}"
        )
    return (y, x, sign in _POSITIVE)


def _method_options(args) -> dict:
    """``--weights`` / ``--device`` as settings: they belong to the spbox method, and another method
    given with a weights file is an error (:class:`~napari_spbox.predictors.PredictorSettings` says
    so)."""
    out = {"weights": args.weights} if args.weights else {}
    if args.device != "cpu":
        out["device"] = args.device
    return out


def _writable(path: str | None, option: str, make_folder: bool = False) -> None:
    """Refuse an output path before any work is done, so a slow command does not lose its results
    at the end: a path that is a folder, or whose folder does not exist (a typo must not create
    folders), unless ``make_folder`` (commands whose results go into a new folder of runs)."""
    if path is None:
        return
    if Path(path).is_dir():
        raise IsADirectoryError(f"{option} {path} is a folder: give a file name")
    if make_folder:
        Path(path).resolve().parent.mkdir(parents=True, exist_ok=True)
    elif not Path(path).resolve().parent.is_dir():
        raise FileNotFoundError(f"{option} {path}: folder {Path(path).parent} does not exist")


def cmd_segment(args) -> int:
    from .core.protocol import Session
    from .datasets import load_image
    from .predictors import PredictorSettings, edges_from_flags, make_predictor
    from .report import save_overlay

    if not args.click and not args.box:
        raise ValueError("nothing to segment: give at least one --click x,y (or a --box)")
    _writable(args.out, "--out")
    _writable(args.mask_out, "--mask-out")
    image = load_image(args.image, channel=args.channel, plane=args.plane)
    settings = PredictorSettings(
        args.method,
        **_method_options(args),
        edges=edges_from_flags(args.no_refine, args.precise_edges),
    )
    predictor = make_predictor(settings)
    predictor.set_image(image)
    if args.box:
        x0, y0, x1, y1 = args.box
        session = Session.from_box(image.shape, (y0, x0), (y1, x1), strict=not args.non_strict)
    else:
        session = Session(image.shape, strict=not args.non_strict)
    for r, c, positive in args.click or []:
        session.add_click(r, c, positive)
    pred = predictor.predict(session)
    out = save_overlay(args.out, image, pred.mask, session)
    if args.mask_out:
        from PIL import Image

        Image.fromarray(pred.mask.astype(np.uint8) * 255).save(args.mask_out)
    print(f"{out}: {int(pred.mask.sum())} pixels in the mask, {pred.elapsed_ms:.0f} ms")
    return 0


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage is one ``--help`` away).

    Sub-commands inherit it: ``sub.add_parser`` makes parsers of its parent's class.
    """

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="spbox", description="Localized interactive instance segmentation (SPBox).")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "segment", help="segment one object of an image from clicks, write an overlay PNG"
    )
    s.add_argument(
        "image",
        help="PNG, JPEG, TIFF (8/16-bit, float), ...; other depths are scaled as napari shows them",
    )
    s.add_argument(
        "--click",
        action="append",
        type=_click,
        help="x,y (positive) or x,y,neg; repeat in order (x = column, y = row, in pixels)",
    )
    s.add_argument(
        "--channel",
        type=int,
        default=None,
        help="for an image of more than 4 channels: the one to use",
    )
    s.add_argument(
        "--plane", type=int, default=None, help="for a 3-D stack (TIFF): the plane to use"
    )
    s.add_argument(
        "--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"), help="start from a box"
    )
    s.add_argument("--method", default="spbox", choices=METHODS)
    add_weights_options(s)
    s.add_argument(
        "--no-refine",
        action="store_true",
        help="spbox: keep the network's outline (no edge refinement)",
    )
    s.add_argument(
        "--precise-edges",
        action="store_true",
        help="spbox: refine at full size, 3 GrabCut iterations (slower clicks)",
    )
    s.add_argument(
        "--non-strict", action="store_true", help="accept clicks that break the protocol"
    )
    s.add_argument("--out", default="segment.png")
    s.add_argument("--mask-out", default=None, help="also write the mask as a PNG")
    s.set_defaults(func=cmd_segment)

    from .benchmark import add_benchmark_parser
    from .evaluation.cli import add_parsers as add_evaluation_parsers
    from .serve import add_serve_parser
    from .train.cli import add_parsers as add_training_parsers

    # each package registers its own sub-commands (their cmd_* functions import lazily)
    add_evaluation_parsers(sub)  # evaluate, plot, compare
    add_training_parsers(sub)  # plot-training, train, validate, average
    add_benchmark_parser(sub)
    add_serve_parser(sub)
    return p


def run_command(prog: str, func, *args) -> int:
    """``func(*args)``, with the errors a user can fix answered in one line and exit status 2.

    A refused click, a bad path (missing, a folder, not readable), bad weights or a busy port is
    the user's to fix: say what is wrong, no traceback. ``spbox`` and the demo both run this way.
    """
    from .core.protocol import ProtocolError

    try:
        return func(*args)
    except (ProtocolError, OSError, ValueError, RuntimeError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(f"spbox {args.command}", args.func, args)


if __name__ == "__main__":
    sys.exit(main())
