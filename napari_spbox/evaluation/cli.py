"""``spbox evaluate | plot | compare``: the robot-user evaluation and its reports.

:func:`add_parsers` registers the sub-commands on ``spbox``'s sub-parsers
(:func:`napari_spbox.cli.build_parser`). Everything heavier than ``argparse`` is imported inside the
``cmd_*`` functions, so that the command line starts fast.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

from ..predictors import METHODS, add_weights_options


def cmd_evaluate(args) -> int:
    import numpy as np

    from ..cli import _method_options, _writable
    from ..datasets import read_dataset
    from ..predictors import PredictorSettings, edges_from_flags, make_predictor
    from ..report import plot_miou, write_csv
    from .metrics import summarise
    from .robot import evaluate

    if args.ignore_band < 0:
        raise SystemExit(
            f"spbox evaluate: --ignore-band is a width in pixels, 0 or more; got {args.ignore_band}"
        )
    if args.json and Path(args.json).suffix == ".csv":
        raise ValueError(f"--json {args.json}: its per-object CSV would overwrite it; name a .json")
    _writable(args.json, "--json", make_folder=True)
    _writable(args.plot, "--plot", make_folder=True)
    others = [_read_summary(p) for p in args.compare or []]
    items = read_dataset(args.path, ignore_value=args.ignore_value)
    if not items:
        raise ValueError(f"{args.path}: no objects to evaluate (no image with a mask)")
    if args.limit:
        items = items[: args.limit]
    edges = "off" if args.raw_network else edges_from_flags(args.no_refine, args.precise_edges)
    # every option goes to the settings, which refuse one that does not fit the method
    settings = PredictorSettings(
        args.method,
        **_method_options(args),
        superpixels=args.superpixels,
        edges=edges,
        variant=args.variant,
        click_consistency=not args.raw_network,
        flip=args.flip,
        imply_box=not (args.raw_network or args.no_implied_box),
        refine_side=args.refine_side,
        click_radius=args.click_radius,
    )
    predictor = make_predictor(settings)  # bad weights fail here, once
    if args.jobs > 1 and args.method == "spbox":
        # each worker builds its own with the same backend; the ONNX graph exported above is reused
        settings = dataclasses.replace(settings, backend=predictor.backend)
    build = functools.partial(make_predictor, settings)
    per_object = evaluate(
        build if args.jobs > 1 else predictor,
        items,
        args.protocol,
        args.max_clicks,
        args.start_from_mask,
        desc=args.method,
        jobs=args.jobs,
        ignore_band=args.ignore_band,
    )
    summary = summarise(per_object, args.max_clicks)
    summary.update(
        method=args.method,
        protocol=args.protocol,
        dataset=str(args.path),
        start_from_mask=args.start_from_mask,
    )
    if args.ignore_band:
        summary["ignore_band"] = args.ignore_band
    if getattr(predictor, "variant", None):
        summary["variant"] = predictor.variant
    if args.method == "spbox":
        summary["click_consistency"] = settings.click_consistency
        summary["refine"] = predictor.refine
        summary["precise_edges"] = predictor.precise_edges
        summary["implied_box"] = settings.imply_box
        summary["flip"] = settings.flip
    if args.jobs > 1:
        # the latencies were measured with this many processes sharing the CPU
        summary["jobs"] = args.jobs
    if args.start_from_mask:
        summary["miou_start"] = float(np.mean([o["iou0"] for o in per_object]))
    print(json.dumps({k: v for k, v in summary.items() if k != "miou_per_click"}, indent=1))
    print("mIoU per click:", " ".join(f"{v:.3f}" for v in summary["miou_per_click"]))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
        write_csv(Path(args.json).with_suffix(".csv"), per_object, args.max_clicks)
    if args.plot:
        plot_miou(args.plot, [summary] + others)
    return 0


def cmd_plot(args) -> int:
    from ..report import plot_miou

    summaries = []
    for path in args.summaries:
        summary = _read_summary(path)
        summary.setdefault("dataset", path)
        summaries.append(summary)
    print(plot_miou(args.out, summaries))
    return 0


def _read_summary(path) -> dict:
    """An ``spbox evaluate --json`` summary, refused in one line if it is not one."""
    try:
        summary = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a JSON file ({exc})") from exc
    if not isinstance(summary, dict) or "miou_per_click" not in summary:
        raise ValueError(f"{path}: not an spbox evaluate --json summary (no miou_per_click)")
    return summary


def cmd_compare(args) -> int:
    from ..report import read_csv_column
    from .metrics import paired_comparison, ships

    if len(args.baseline) != len(args.candidate):
        raise SystemExit(
            "spbox compare: give one --candidate CSV for each --baseline CSV (the "
            "same sets, same order)"
        )
    base, cand, names = [], [], []
    for b, c in zip(args.baseline, args.candidate):
        nb, vb = read_csv_column(b, args.metric)
        nc, vc = read_csv_column(c, args.metric)
        if nb != nc:
            raise SystemExit(
                f"spbox compare: {b} and {c} do not hold the same objects in the same order"
            )
        base.append(vb)
        cand.append(vc)
        names.append(Path(b).stem)
    res = paired_comparison(base, cand, resamples=args.resamples, seed=args.seed)
    for name, s in zip(names, res["sets"]):
        print(
            f"{name}: {args.metric} {s['baseline']:.2f} -> {s['candidate']:.2f}, difference "
            f"{s['diff']:+.2f} [{s['low']:+.2f}, {s['high']:+.2f}] over {s['n']} objects "
            f"({s['better']} better, {s['worse']} worse)"
        )
    p = res["pooled"]
    print(f"pooled (mean of the sets): {p['diff']:+.2f} [{p['low']:+.2f}, {p['high']:+.2f}]")
    res.update(
        metric=args.metric, baseline=args.baseline, candidate=args.candidate, ships=ships(res)
    )
    print("shipping rule:", "passes" if res["ships"] else "does not pass")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


def add_parsers(sub) -> None:
    """Register ``evaluate``, ``plot`` and ``compare`` on ``spbox``'s sub-command parsers."""
    e = sub.add_parser("evaluate", help="robot-user evaluation (NoC, NoF, mIoU per click)")
    e.add_argument("path", help="GrabCut folder, img/+gt/ folder or COCO instances.json")
    e.add_argument("--method", default="spbox", choices=METHODS)
    e.add_argument("--protocol", default="standard", choices=["standard", "paper"])
    e.add_argument("--limit", type=int, default=None, help="first N objects only")
    e.add_argument("--max-clicks", type=int, default=20)
    e.add_argument(
        "--ignore-value", type=int, default=None, help="mask value to ignore (img/gt layout)"
    )
    e.add_argument(
        "--start-from-mask", action="store_true", help="correction mode from degraded GT masks"
    )
    e.add_argument(
        "--ignore-band",
        type=int,
        default=0,
        metavar="W",
        help="leave pixels within W px of each object's outline out of the IoU and the "
        "clicks (as GrabCut's grey band): what outline errors of W px or less cost",
    )
    add_weights_options(e)
    e.add_argument(
        "--variant",
        default=None,
        help="guidance variant of the weights (spbox, eu, bbox, dt); default: the one "
        "their card names",
    )
    e.add_argument("--superpixels", type=int, default=1000)
    e.add_argument(
        "--raw-network",
        action="store_true",
        help="spbox: the network's output as is (one pass, no click consistency, no "
        "edge refinement)",
    )
    e.add_argument(
        "--no-refine",
        action="store_true",
        help="spbox: without edge refinement (click consistency kept)",
    )
    e.add_argument(
        "--refine-side",
        type=int,
        default=None,
        metavar="PX",
        help="spbox: the edge refinement runs on the window reduced to at most PX pixels a side "
        "(default: the pipeline's own)",
    )
    e.add_argument(
        "--click-radius",
        type=int,
        default=None,
        metavar="PX",
        help="spbox: radius of each click's hard spot (default: the weights' own, 3 px for the "
        "natural weights, 1 px for the microscopy weights)",
    )
    e.add_argument(
        "--precise-edges",
        action="store_true",
        help="spbox: refine at full size, 3 GrabCut iterations (slower clicks)",
    )
    e.add_argument(
        "--flip",
        action="store_true",
        help="spbox: average each network pass with its pass on the mirrored input "
        "(test-time augmentation)",
    )
    e.add_argument(
        "--no-implied-box",
        action="store_true",
        help="spbox: before the box is set, one network pass on the whole image (no implied box)",
    )
    e.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="objects evaluated in this many processes of one thread each (same "
        "results; latencies then share the CPU)",
    )
    e.add_argument(
        "--json", default=None, help="write the summary here (and a per-object CSV beside it)"
    )
    e.add_argument("--plot", default=None, help="write the mIoU-vs-clicks plot here")
    e.add_argument("--compare", nargs="*", help="other --json summaries to draw on the same plot")
    e.set_defaults(func=cmd_evaluate)

    pl = sub.add_parser(
        "plot", help="draw mIoU vs clicks of several evaluate --json summaries on one figure"
    )
    pl.add_argument("out")
    pl.add_argument("summaries", nargs="+")
    pl.set_defaults(func=cmd_plot)

    c = sub.add_parser(
        "compare",
        help="paired comparison of two evaluate runs per object, with "
        "bootstrap intervals and the shipping rule's verdict",
    )
    c.add_argument(
        "--baseline",
        nargs="+",
        required=True,
        help="per-object CSVs of evaluate --json (one per set)",
    )
    c.add_argument(
        "--candidate",
        nargs="+",
        required=True,
        help="the candidate's CSVs, same sets in the same order",
    )
    c.add_argument(
        "--metric", default="noc@90", help="a lower-is-better CSV column (noc@90, noc@85)"
    )
    c.add_argument("--resamples", type=int, default=10_000)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", default=None, help="write the comparison here")
    c.set_defaults(func=cmd_compare)
