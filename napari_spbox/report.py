"""What people look at: overlay PNGs, per-object CSVs, mIoU-vs-clicks plots (matplotlib)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def save_overlay(
    path, image: np.ndarray, mask: np.ndarray, session=None, title: str | None = None
) -> Path:
    """Write the image with the mask tinted, its outline, the box and the clicks (green +,
    red -)."""
    return save_overlays(path, [(image, mask, session, title)])


def save_overlays(path, panels) -> Path:
    """Several overlays side by side in one PNG; ``panels`` holds ``(image, mask, session, title)``
    tuples. A ``path`` without a suffix gets ``.png``; returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aspects = [p[1].shape[1] / p[1].shape[0] for p in panels]
    height = 8 / max(1.0, max(aspects)) if len(panels) == 1 else 5.0
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(height * sum(aspects), height),
        dpi=100,
        gridspec_kw={"width_ratios": aspects},
        squeeze=False,
    )
    for ax, (image, mask, session, title) in zip(axes[0], panels):
        _draw_overlay(ax, image, mask, session, title)
    path = Path(path)
    if not path.suffix:  # matplotlib would add it; the caller reports the file it is given back
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", pad_inches=0.02)
    plt.close(fig)
    return path


def _draw_overlay(ax, image, mask, session, title) -> None:
    from matplotlib.patches import Rectangle

    from .core.image import to_rgb_float

    over = to_rgb_float(image).copy()
    over[mask] = 0.55 * over[mask] + 0.45 * np.array([0.1, 0.5, 1.0])
    ax.imshow(over)
    if mask.any():
        ax.contour(mask.astype(float), levels=[0.5], colors=["yellow"], linewidths=1.2)
    if session is not None:
        if session.box is not None:
            b = session.box
            ax.add_patch(
                Rectangle(
                    (b.left - 0.5, b.top - 0.5),
                    b.width,
                    b.height,
                    fill=False,
                    ec="orange",
                    lw=1.5,
                    ls="--",
                )
            )
        for c in session.clicks:
            ax.plot(c.col, c.row, "o", ms=9, mec="white", mfc="lime" if c.positive else "red")
    ax.set_axis_off()
    if title:
        ax.set_title(title)


def write_csv(path, per_object: list, max_clicks: int = 20) -> Path:
    """One row per object: name, NoC@85, NoC@90, then IoU after each click.

    Every row is complete: an object the robot stopped early keeps its last IoU for the remaining
    clicks (:func:`~napari_spbox.evaluation.metrics.padded_ious`, as
    :func:`~napari_spbox.evaluation.metrics.summarise`).
    """
    from .evaluation.metrics import noc, padded_ious

    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "noc@85", "noc@90"] + [f"iou_{k + 1}" for k in range(max_clicks)])
        for o in per_object:
            w.writerow(
                [
                    o.get("name", ""),
                    noc(o["ious"], 0.85, max_clicks),
                    noc(o["ious"], 0.90, max_clicks),
                ]
                + [f"{v:.4f}" for v in padded_ious(o["ious"], max_clicks)]
            )
    return path


def read_csv_column(path, column: str) -> tuple[list, np.ndarray]:
    """Object names and one numeric column of a per-object CSV written by :func:`write_csv`."""
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or column not in rows[0]:
        raise ValueError(
            f"{path}: no column {column!r} (columns: {', '.join(rows[0]) if rows else 'none'})"
        )
    return [r["name"] for r in rows], np.array([float(r[column]) for r in rows])


def plot_miou(path, summaries: list) -> Path:
    """mIoU after each click for one or several evaluation summaries, on one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for s in summaries:
        m = s["miou_per_click"]
        raw = (
            ", raw network"
            if s.get("click_consistency") is False
            else ", no edge refinement"
            if s.get("refine") is False
            else ""
        )
        label = (
            f"{s.get('label') or s.get('method', '?')} ({s.get('protocol', 'standard')}{raw}) "
            f"NoC@90={s['noc@90']:.2f}"
        )
        ax.plot(range(1, len(m) + 1), m, marker="o", ms=3, label=label)
    ax.set_xlabel("clicks")
    ax.set_ylabel("mIoU")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    name = Path(summaries[0].get("dataset", "")).name if summaries else ""
    ax.set_title(f"mIoU vs clicks {name}".strip())
    ax.legend(fontsize=8, loc="lower right")
    path = Path(path)
    if not path.suffix:  # matplotlib would add it; the caller reports the file it is given back
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _validated_epochs(logs) -> tuple[list[int], list[dict]]:
    """The validated rows of successive ``log.csv`` files, each run's epochs after the previous
    run's last."""
    rows, epochs, offset = [], [], 0
    for log in logs:
        with Path(log).open() as f:
            every = list(csv.DictReader(f))
        for r in every:
            if r.get("val_noc90"):
                rows.append(r)
                epochs.append(int(r["epoch"]) + offset)
        offset += max((int(r["epoch"]) for r in every if r.get("epoch")), default=0)
    if not rows:
        raise ValueError(
            f"{', '.join(map(str, logs))}: no validated epochs (is it a spbox train log.csv?)"
        )
    return epochs, rows


def plot_training(path, logs: dict, references: dict | None = None) -> Path:
    """Validation NoC@90 and mIoU after 5 clicks per epoch, for one or several ``spbox train`` runs.

    ``logs`` maps a label to a run's ``log.csv``, or to a list of them: the successive runs of one
    line of training (each ``--init`` from the previous one's end, e.g. warm restarts), drawn as one
    curve whose epochs continue after the previous run's last logged epoch. ``references`` maps a
    label to ``(noc90, miou5)`` of a model measured on the same check (drawn as dashed lines, e.g.
    the shipped weights a fine-tune must beat). The training loss is left out on purpose: BCE and
    focal losses are on different scales, while the validation figures compare any two runs.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    for label, log in logs.items():
        epochs, rows = _validated_epochs([log] if isinstance(log, (str, Path)) else list(log))
        best = min(
            range(len(rows)),
            key=lambda i: (float(rows[i]["val_noc90"]), float(rows[i]["val_noc85"])),
        )
        a.plot(
            epochs,
            [float(r["val_noc90"]) for r in rows],
            marker="o",
            ms=3,
            label=f"{label} (best {float(rows[best]['val_noc90']):.2f}, epoch {epochs[best]})",
        )
        b.plot(epochs, [float(r["val_miou5"]) for r in rows], marker="o", ms=3, label=label)
    for k, (label, (noc90, miou5)) in enumerate((references or {}).items()):
        style = {"color": "0.4", "linestyle": ("--", ":", "-.")[k % 3], "linewidth": 1}
        a.axhline(noc90, label=f"{label} ({noc90:.2f})", **style)
        b.axhline(miou5, label=label, **style)
    a.set_ylabel("validation NoC@90 (lower is better)")
    b.set_ylabel("validation mIoU after 5 clicks")
    for ax in (a, b):
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        # below: curves stay visible
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
