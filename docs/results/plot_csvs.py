"""mIoU per click from per-object CSVs (``spbox evaluate`` / ``spbox validate --csv-dir``), one
panel per set.

Usage::

    python docs/results/plot_csvs.py OUT.png --set TITLE LABEL=CSV [LABEL=CSV ...] [--set TITLE ...]

The first CSV of a set is its baseline. With a single set, a second panel shows each curve minus the
baseline's.
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from napari_spbox.report import read_csv_column


def miou(path, clicks=20):
    return np.array([read_csv_column(path, f"iou_{k}")[1].mean() for k in range(1, clicks + 1)])


def main(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("out")
    ap.add_argument(
        "--set",
        nargs="+",
        action="append",
        required=True,
        metavar="TITLE LABEL=CSV",
        help="a panel's title, then its curves",
    )
    args = ap.parse_args(argv)
    sets = [(title, [c.split("=", 1) for c in curves]) for title, *curves in args.set]
    diff = len(sets) == 1
    fig, axes = plt.subplots(
        1, len(sets) + diff, figsize=(5.5 * (len(sets) + diff), 3.8), dpi=110, squeeze=False
    )
    for ax, (title, curves) in zip(axes[0], sets):
        base = miou(curves[0][1])
        for label, path in curves:
            noc = read_csv_column(path, "noc@90")[1].mean()
            ax.plot(range(1, 21), miou(path), marker="o", ms=3, label=f"{label}, NoC@90 {noc:.2f}")
            if diff:
                axes[0][1].plot(range(1, 21), miou(path) - base, marker="o", ms=3, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0.4, 1)
    axes[0][0].set_ylabel("mIoU")
    if diff:
        axes[0][1].set_ylabel("mIoU minus the first curve's")
        axes[0][1].axhline(0, color="k", lw=0.8)
    for ax in axes[0]:
        ax.set_xlabel("clicks")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out, bbox_inches="tight")


if __name__ == "__main__":
    main()
