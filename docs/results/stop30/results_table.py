"""The README's results table (markdown, printed) and plot (docs/results_miou.png), from JSONs.

    python docs/results/stop30/results_table.py

Rows whose JSON is missing are left out (an evaluation not run).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[3]
R = ROOT / "docs" / "results"
SETS = ("GrabCut", "DAVIS-dev", "nuclei-dev")
#: (label, {set: JSON}) in table order.
ROWS = [
    (
        "SPBox, natural weights (Lite0, stop 26)",
        {
            "GrabCut": R / "stop35" / "eval" / "natural_grabcut.json",
            "DAVIS-dev": R / "stop35" / "eval" / "natural_davis-dev.json",
            "nuclei-dev": R / "stop35" / "eval" / "natural_nuclei-dev.json",
        },
    ),
    (
        "SPBox, microscopy weights (ESPNetv2, stop 30; 1 px click spot, stop 34)",
        {
            "GrabCut": R / "stop35" / "eval" / "microscopy_grabcut.json",
            "DAVIS-dev": R / "stop35" / "eval" / "microscopy_davis-dev.json",
            "nuclei-dev": R / "stop35" / "eval" / "microscopy_nuclei-dev.json",
        },
    ),
    (
        "SPBox, microscopy weights as shipped in stop 30 (3 px click spot)",
        {"nuclei-dev": R / "stop30" / "candidate_nuclei-dev.json"},
    ),
    (
        "SPBox, previous weights (stop 12)",
        {"GrabCut": R / "spbox_grabcut.json", "DAVIS-dev": R / "spbox_davis-dev.json"},
    ),
    (
        "OpenCV GrabCut",
        {
            "GrabCut": R / "gc_grabcut.json",
            "DAVIS-dev": R / "gc_davis-dev.json",
            "nuclei-dev": R / "stop30" / "opencv_grabcut_nuclei-dev.json",
        },
    ),
]


def main() -> None:
    print("| method | set | objects | NoC@85 | NoC@90 | mIoU@1 | mIoU@5 | ms/click |")
    print("|---|---|---|---|---|---|---|---|")
    fig, axes = plt.subplots(1, len(SETS), figsize=(5 * len(SETS), 4), sharey=True)
    handles = {}
    for colour, (label, files) in enumerate(ROWS):
        for ax, name in zip(axes, SETS):
            path = files.get(name)
            if path is None or not path.is_file():
                continue
            d = json.loads(path.read_text())
            m = d["miou_per_click"]
            print(
                f"| {label} | {name} | {d['n_objects']} | {d['noc@85']:.2f} | {d['noc@90']:.2f} | "
                f"{m[0]:.3f} | {m[4]:.3f} | {d['latency_ms']['median']:.0f} |"
            )
            # one colour per row in every panel; rows measured on some sets only still get a legend
            (handles[label],) = ax.plot(range(1, len(m) + 1), m, color=f"C{colour}", label=label)
    for ax, name in zip(axes, SETS):
        ax.set_title(name)
        ax.set_xlabel("clicks")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean IoU")
    axes[0].legend(handles=list(handles.values()), fontsize=7, loc="lower right")
    fig.tight_layout()
    out = ROOT / "docs" / "results_miou.png"
    fig.savefig(out, dpi=90)
    print(f"\n{out}")


if __name__ == "__main__":
    main()
