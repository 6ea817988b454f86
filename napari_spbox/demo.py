"""``python -m napari_spbox.demo``: segment two bundled samples with the shipped weights; one PNG.

An easy case first (one click on a fluorescent nucleus, the microscopy weights), then a harder
one (the natural weights): the coffee cup of ``skimage.data.coffee()`` from a click on the cup,
a negative just outside it and a positive on the part the first mask misses.
"""

from __future__ import annotations

import argparse
import sys

from .predictors import add_weights_options

#: (row, col, positive) in the 400x600 coffee image: the cup, a negative just outside its lower
#: right (the box), then a positive on the cup's red wall, which the first mask misses.
DEMO_CLICKS = [(150, 290, True), (290, 418, False), (215, 215, True)]
#: One positive click in the nuclei sample (256x256): the nucleus nuclei-dev marks as 8a26b134_29.
EASY_CLICKS = [(102, 61, True)]


def _samples():
    from skimage import data

    from .io import read_image
    from .napari._sample_data import NUCLEI_FILE

    return [
        ("nuclei", read_image(NUCLEI_FILE), EASY_CLICKS, "microscopy", "a nucleus, 1 click"),
        ("coffee", data.coffee(), DEMO_CLICKS, "natural", "coffee cup, 3 clicks"),
    ]


def main(argv=None) -> int:
    from .cli import _writable
    from .core.postprocess import keep_clicked_components
    from .core.protocol import Session
    from .predictors import PredictorSettings, make_predictor
    from .report import save_overlays

    parser = argparse.ArgumentParser(prog="python -m napari_spbox.demo", description=__doc__)
    parser.add_argument("--out", default="demo.png")
    add_weights_options(parser)
    args = parser.parse_args(argv)
    _writable(args.out, "--out")
    panels = []
    for name, image, clicks, weights, title in _samples():
        # each sample with the shipped weights for its kind of image, unless --weights says so
        settings = PredictorSettings(weights=args.weights or weights, device=args.device)
        predictor = make_predictor(settings)
        predictor.set_image(image)
        session = Session(image.shape[:2], strict=False)
        for k, (r, c, positive) in enumerate(clicks, 1):
            session.add_click(r, c, positive)
            pred = predictor.predict(session)
            sign = "+" if positive else "-"
            print(
                f"{name} click {k} ({sign} at row {r}, col {c}): {int(pred.mask.sum())} px, "
                f"{pred.elapsed_ms:.0f} ms"
            )
        mask = keep_clicked_components(pred.mask, session)  # as the napari widget shows it
        panels.append((image, mask, session, f"SPBox: {title}"))
    save_overlays(args.out, panels)
    print(f"wrote {args.out}")
    return 0


def _run(argv=None) -> int:
    """``main`` as a command: bad weights or an unwritable ``--out`` get one line, exit 2."""
    from .cli import run_command

    return run_command("napari_spbox.demo", main, argv)


if __name__ == "__main__":
    sys.exit(_run())
