"""``python -m napari_spbox.demo``: segment the coffee cup of ``skimage.data.coffee()`` with the shipped
weights from the paper's opening pair of clicks plus one corrective click, and write an overlay PNG."""

from __future__ import annotations

import argparse
import sys

#: (row, col, positive) in the 400x600 coffee image: centre of the cup, then a negative just outside
#: its lower right (the box), then a negative on the saucer inside the box.
DEMO_CLICKS = [(150, 290, True), (290, 418, False), (270, 180, False)]


def main(argv=None) -> int:
    from skimage import data

    from .predictors import make_predictor
    from .core.protocol import Session
    from .report import save_overlay

    parser = argparse.ArgumentParser(prog="python -m napari_spbox.demo", description=__doc__)
    parser.add_argument("--out", default="demo.png")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    image = data.coffee()
    predictor = make_predictor("spbox", weights=args.weights, device=args.device)
    predictor.set_image(image)
    session = Session(image.shape)
    for k, (r, c, positive) in enumerate(DEMO_CLICKS, 1):
        session.add_click(r, c, positive)
        pred = predictor.predict(session)
        print(f"click {k} ({'+' if positive else '-'} at row {r}, col {c}): {int(pred.mask.sum())} px, {pred.elapsed_ms:.0f} ms")
    save_overlay(args.out, image, pred.mask, session, title="SPBox: coffee cup, 3 clicks")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
