"""``spbox`` command line: segment | evaluate | plot | compare | train | plot-training | validate | benchmark |
serve-cvat."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from pathlib import Path

import numpy as np

from .predictors import METHODS


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
        raise argparse.ArgumentTypeError(f"a click is x,y or x,y,pos or x,y,neg; got {text!r}") from None
    sign = parts[2].lower() if len(parts) == 3 else "pos"
    if sign not in _POSITIVE + _NEGATIVE:
        raise argparse.ArgumentTypeError(f"the third part of a click is pos or neg (or + / -); got {text!r}")
    return (y, x, sign in _POSITIVE)


def _method_options(args) -> dict:
    """``--weights`` / ``--device`` as settings: they belong to the spbox method, and another method given with
    a weights file is an error (:class:`~napari_spbox.predictors.PredictorSettings` says so)."""
    out = {"weights": args.weights} if args.weights else {}
    if args.device != "cpu":
        out["device"] = args.device
    return out


def _writable(path: str | None, option: str) -> None:
    """Refuse an output path whose folder does not exist (a typo must not create folders)."""
    if path is not None and not Path(path).resolve().parent.is_dir():
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
    settings = PredictorSettings(args.method, **_method_options(args),
                                 edges=edges_from_flags(args.no_refine, args.precise_edges))
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
    out = Path(args.out)
    save_overlay(out, image, pred.mask, session)
    if args.mask_out:
        from PIL import Image

        Image.fromarray(pred.mask.astype(np.uint8) * 255).save(args.mask_out)
    print(f"{out}: {int(pred.mask.sum())} pixels in the mask, {pred.elapsed_ms:.0f} ms")
    return 0


def cmd_evaluate(args) -> int:
    from .datasets import read_dataset
    from .evaluation.metrics import summarise
    from .evaluation.robot import evaluate
    from .predictors import PredictorSettings, edges_from_flags, make_predictor
    from .report import plot_miou, write_csv

    if args.ignore_band < 0:
        raise SystemExit(f"spbox evaluate: --ignore-band is a width in pixels, 0 or more; got {args.ignore_band}")
    items = read_dataset(args.path, ignore_value=args.ignore_value)
    if args.limit:
        items = items[: args.limit]
    edges = "off" if args.raw_network else edges_from_flags(args.no_refine, args.precise_edges)
    spbox = {"variant": args.variant, "click_consistency": not args.raw_network, "flip": args.flip,
             "imply_box": not (args.raw_network or args.no_implied_box)} if args.method == "spbox" else {}
    settings = PredictorSettings(args.method, **_method_options(args), superpixels=args.superpixels,
                                 edges=edges, **spbox)
    predictor = make_predictor(settings)  # bad weights fail here, once
    if args.jobs > 1 and args.method == "spbox":
        # each worker builds its own with the same backend; the ONNX graph exported above is reused
        settings = dataclasses.replace(settings, backend=predictor.backend)
    build = functools.partial(make_predictor, settings)
    per_object = evaluate(build if args.jobs > 1 else predictor, items, args.protocol, args.max_clicks,
                          args.start_from_mask, desc=args.method, jobs=args.jobs,
                          ignore_band=args.ignore_band)
    summary = summarise(per_object, args.max_clicks)
    summary.update(method=args.method, protocol=args.protocol, dataset=str(args.path), start_from_mask=args.start_from_mask)
    if args.ignore_band:
        summary["ignore_band"] = args.ignore_band
    if getattr(predictor, "variant", None):
        summary["variant"] = predictor.variant
    if args.method == "spbox":
        summary["click_consistency"] = settings.click_consistency
        summary["refine"] = settings.edges != "off"
        summary["precise_edges"] = settings.edges == "precise"
        summary["implied_box"] = settings.imply_box
        summary["flip"] = settings.flip
    if args.jobs > 1:
        summary["jobs"] = args.jobs  # the latencies were measured with this many processes sharing the CPU
    if args.start_from_mask:
        summary["miou_start"] = float(np.mean([o["iou0"] for o in per_object]))
    print(json.dumps({k: v for k, v in summary.items() if k != "miou_per_click"}, indent=1))
    print("mIoU per click:", " ".join(f"{v:.3f}" for v in summary["miou_per_click"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
        write_csv(Path(args.json).with_suffix(".csv"), per_object, args.max_clicks)
    if args.plot:
        plot_miou(args.plot, [summary] + [json.loads(Path(p).read_text()) for p in args.compare or []])
    return 0


def cmd_plot(args) -> int:
    from .report import plot_miou

    summaries = []
    for path in args.summaries:
        summary = json.loads(Path(path).read_text())
        summary.setdefault("dataset", path)
        summaries.append(summary)
    print(plot_miou(args.out, summaries))
    return 0


def cmd_compare(args) -> int:
    from .evaluation.metrics import paired_comparison, ships
    from .report import read_csv_column

    if len(args.baseline) != len(args.candidate):
        raise SystemExit("spbox compare: give one --candidate CSV for each --baseline CSV (the same sets, same order)")
    base, cand, names = [], [], []
    for b, c in zip(args.baseline, args.candidate):
        nb, vb = read_csv_column(b, args.metric)
        nc, vc = read_csv_column(c, args.metric)
        if nb != nc:
            raise SystemExit(f"spbox compare: {b} and {c} do not hold the same objects in the same order")
        base.append(vb)
        cand.append(vc)
        names.append(Path(b).stem)
    res = paired_comparison(base, cand, resamples=args.resamples, seed=args.seed)
    for name, s in zip(names, res["sets"]):
        print(f"{name}: {args.metric} {s['baseline']:.2f} -> {s['candidate']:.2f}, difference {s['diff']:+.2f} "
              f"[{s['low']:+.2f}, {s['high']:+.2f}] over {s['n']} objects ({s['better']} better, {s['worse']} worse)")
    p = res["pooled"]
    print(f"pooled (mean of the sets): {p['diff']:+.2f} [{p['low']:+.2f}, {p['high']:+.2f}]")
    res.update(metric=args.metric, baseline=args.baseline, candidate=args.candidate, ships=ships(res))
    print("shipping rule:", "passes" if res["ships"] else "does not pass")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


def cmd_plot_training(args) -> int:
    from .report import plot_training

    logs = {}
    for spec in args.logs:
        label, sep, path = spec.partition("=")
        paths = (path if sep else spec).split(",")  # several: one line of training's successive runs
        logs[label if sep else Path(paths[0]).parent.name] = paths
    refs = {}
    for spec in args.reference or []:
        label, _, values = spec.rpartition("=")
        try:
            noc90, miou5 = (float(v) for v in values.split(","))
        except ValueError:
            raise ValueError(f"--reference {spec!r}: expected LABEL=NOC90,MIOU5, e.g. 'shipped=12.17,0.692'") from None
        refs[label or "reference"] = (noc90, miou5)
    print(plot_training(args.out, logs, refs))
    return 0


def cmd_validate(args) -> int:
    import torch
    from tqdm import tqdm

    from .model.weights import load_model, weights_input_size, weights_variant
    from .report import write_csv
    from .train.loop import held_apart, validate

    torch.set_num_threads(1)  # the jobs are one-thread processes; so is this one
    val = held_apart(args.data)[1][: args.objects]
    if not val:
        raise SystemExit(f"spbox validate: no held-apart objects in {' '.join(args.data)}")
    results = []
    for w in tqdm(args.weights, desc="weights validated", unit="file"):  # minutes each on a CPU
        per_object = []
        r = validate(load_model(w), val, 10 if args.raw else 20, weights_variant(w), "cpu", progress=False,
                     pipeline=not args.raw, jobs=args.jobs, size=weights_input_size(w), per_object=per_object,
                     flip=args.flip)
        results.append({"weights": w, "objects": len(val), **r})
        if args.csv_dir:  # one file per weights, named after its path: runs/a/e8.pt -> runs_a_e8.csv
            name = "_".join(Path(w).with_suffix("").parts).lstrip("._") + ".csv"
            Path(args.csv_dir).mkdir(parents=True, exist_ok=True)
            results[-1]["csv"] = str(write_csv(Path(args.csv_dir) / name, per_object, r["max_clicks"]))
        tqdm.write(f"{w}: NoC@85 {r['noc@85']:.2f}, NoC@90 {r['noc@90']:.2f}, mIoU@5 {r['miou5']:.3f} "
                   f"({len(val)} held-apart objects, {r['max_clicks']} clicks, "
                   f"{'raw network' if args.raw else 'pipeline'})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


def cmd_average(args) -> int:
    from .model.weights import average_weights, ensemble_weights

    print((ensemble_weights if args.ensemble else average_weights)(args.weights, args.out))
    return 0


def cmd_train(args) -> int:
    from .train.loop import train, write_log_json

    ckpt = train(args.data, args.out, arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                 size=args.size, repeats=args.repeats, loss=args.loss, variant=args.variant, init=args.init,
                 resume=args.resume, seed=args.seed, workers=args.workers, val_objects=args.val_objects,
                 device=args.device, max_steps=args.max_steps, cache_dir=args.cache_dir, threads=args.threads,
                 p_iterative=args.iterative, max_iterative_clicks=args.iterative_clicks,
                 p_paste=args.copy_paste, p_boxed=args.boxed, freeze_bn=args.freeze_bn,
                 val_pipeline=args.val_pipeline, p_union=args.union, keep_epochs=args.keep_epochs,
                 prev_mask=args.prev_mask, iterative_decay=args.iterative_decay)
    write_log_json(args.out)
    out = Path(args.out)
    best = f"; lowest validation NoC@90: {out / 'best.pt'}" if (out / "best.pt").is_file() else ""
    print(f"checkpoint: {ckpt}; weights: {out / 'weights.pt'}{best}")
    return 0


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage is one ``--help`` away); sub-commands inherit it."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="spbox", description="Localized interactive instance segmentation (SPBox).")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("segment", help="segment one object of an image from clicks, write an overlay PNG")
    s.add_argument("image", help="PNG, JPEG, TIFF (8/16-bit, float), ...; other depths are scaled as napari shows them")
    s.add_argument("--click", action="append", type=_click,
                   help="x,y (positive) or x,y,neg; repeat in order (x = column, y = row, in pixels)")
    s.add_argument("--channel", type=int, default=None, help="for an image of more than 4 channels: the one to use")
    s.add_argument("--plane", type=int, default=None, help="for a 3-D stack (TIFF): the plane to use")
    s.add_argument("--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"), help="start from a box")
    s.add_argument("--method", default="spbox", choices=METHODS)
    s.add_argument("--weights", default=None)
    s.add_argument("--device", default="cpu")
    s.add_argument("--no-refine", action="store_true", help="spbox: keep the network's outline (no edge refinement)")
    s.add_argument("--precise-edges", action="store_true", help="spbox: refine at full size, 3 GrabCut iterations (slower clicks)")
    s.add_argument("--non-strict", action="store_true", help="accept clicks that break the protocol")
    s.add_argument("--out", default="segment.png")
    s.add_argument("--mask-out", default=None, help="also write the mask as a PNG")
    s.set_defaults(func=cmd_segment)

    e = sub.add_parser("evaluate", help="robot-user evaluation (NoC, NoF, mIoU per click)")
    e.add_argument("path", help="GrabCut folder, img/+gt/ folder or COCO instances.json")
    e.add_argument("--method", default="spbox", choices=METHODS)
    e.add_argument("--protocol", default="standard", choices=["standard", "paper"])
    e.add_argument("--limit", type=int, default=None, help="first N objects only")
    e.add_argument("--max-clicks", type=int, default=20)
    e.add_argument("--ignore-value", type=int, default=None, help="mask value to ignore (img/gt layout)")
    e.add_argument("--start-from-mask", action="store_true", help="correction mode from degraded GT masks")
    e.add_argument("--ignore-band", type=int, default=0, metavar="W",
                   help="leave pixels within W px of each object's outline out of the IoU and the clicks (as "
                        "GrabCut's grey band): what outline errors of W px or less cost")
    e.add_argument("--weights", default=None)
    e.add_argument("--device", default="cpu")
    e.add_argument("--variant", default=None,
                   help="guidance variant of the weights (spbox, eu, bbox, dt); default: the one their card names")
    e.add_argument("--superpixels", type=int, default=1000)
    e.add_argument("--raw-network", action="store_true",
                   help="spbox: the network's output as is (one pass, no click consistency, no edge refinement)")
    e.add_argument("--no-refine", action="store_true", help="spbox: without edge refinement (click consistency kept)")
    e.add_argument("--precise-edges", action="store_true", help="spbox: refine at full size, 3 GrabCut iterations (slower clicks)")
    e.add_argument("--flip", action="store_true",
                   help="spbox: average each network pass with its pass on the mirrored input (test-time augmentation)")
    e.add_argument("--no-implied-box", action="store_true",
                   help="spbox: before the box is set, one network pass on the whole image (no implied box)")
    e.add_argument("--jobs", type=int, default=1,
                   help="objects evaluated in this many processes of one thread each (same results; latencies "
                        "then share the CPU)")
    e.add_argument("--json", default=None, help="write the summary here (and a per-object CSV beside it)")
    e.add_argument("--plot", default=None, help="write the mIoU-vs-clicks plot here")
    e.add_argument("--compare", nargs="*", help="other --json summaries to draw on the same plot")
    e.set_defaults(func=cmd_evaluate)

    pl = sub.add_parser("plot", help="draw mIoU vs clicks of several evaluate --json summaries on one figure")
    pl.add_argument("out")
    pl.add_argument("summaries", nargs="+")
    pl.set_defaults(func=cmd_plot)

    c = sub.add_parser("compare", help="paired comparison of two evaluate runs per object, with bootstrap "
                       "intervals and the shipping rule's verdict")
    c.add_argument("--baseline", nargs="+", required=True, help="per-object CSVs of evaluate --json (one per set)")
    c.add_argument("--candidate", nargs="+", required=True, help="the candidate's CSVs, same sets in the same order")
    c.add_argument("--metric", default="noc@90", help="a lower-is-better CSV column (noc@90, noc@85)")
    c.add_argument("--resamples", type=int, default=10_000)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", default=None, help="write the comparison here")
    c.set_defaults(func=cmd_compare)

    pt = sub.add_parser("plot-training", help="draw validation NoC@90 / mIoU@5 per epoch of spbox train runs")
    pt.add_argument("out")
    pt.add_argument("logs", nargs="+", help="RUN_DIR/log.csv, or LABEL=RUN_DIR/log.csv; LABEL=A/log.csv,B/log.csv draws runs that "
                    "continue one another (B --init from A's end) as one curve, B's epochs after A's")
    pt.add_argument("--reference", action="append", metavar="LABEL=NOC90,MIOU5",
                    help="a dashed line at another model's figures on the same check (e.g. the shipped weights)")
    pt.set_defaults(func=cmd_plot_training)

    t = sub.add_parser("train", help="train an SPBox network on simulated clicks")
    t.add_argument("--data", nargs="+", required=True, help="dataset paths (img/+gt/ folders, COCO JSON)")
    t.add_argument("--out", required=True)
    t.add_argument("--arch", default="efficientnet_lite0", choices=["efficientnet_lite0", "efficientnet_lite2", "resnet101", "espnetv2"])
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--size", type=int, default=320)
    t.add_argument("--repeats", type=int, default=1, help="simulated click sets per object and epoch")
    t.add_argument("--loss", default="bce", choices=["bce", "nfl"])
    t.add_argument("--variant", default="spbox")
    t.add_argument("--init", default=None, help="start from these weights (e.g. the shipped ones)")
    t.add_argument("--resume", default=None, help="resume from a checkpoint (last.pt)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--workers", type=int, default=0)
    t.add_argument("--val-objects", type=int, default=24)
    t.add_argument("--device", default=None)
    t.add_argument("--max-steps", type=int, default=None)
    t.add_argument("--cache-dir", default=None, help="where SLIC labels of training images are cached")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--iterative", type=float, default=0.0,
                   help="probability per batch of adding robot clicks on the model's own errors (RITM)")
    t.add_argument("--iterative-clicks", type=int, default=2,
                   help="at most this many such clicks per batch (1..N, drawn uniformly unless --iterative-decay)")
    t.add_argument("--iterative-decay", type=float, default=1.0,
                   help="each further error-click count is this many times as likely as the one before (1: uniform; "
                        "0.8 with --iterative-clicks 10 keeps 55 %% of them at 3 or fewer)")
    t.add_argument("--copy-paste", type=float, default=0.0,
                   help="probability per sample of pasting its object onto another training image's background")
    t.add_argument("--boxed", type=float, default=0.0,
                   help="probability per sample of a box before any click, every click corrective "
                        "(correction mode, a drawn box, the implied box)")
    t.add_argument("--union", type=float, default=0.0,
                   help="probability per sample whose object touches other objects of its image of taking their "
                        "union as the object (a rider and horse, a person and bicycle)")
    t.add_argument("--keep-epochs", action="store_true", help="also keep each epoch's weights as weights_e<N>.pt")
    t.add_argument("--prev-mask", action="store_true",
                   help="a 7th input channel, the mask before the newest click (RITM; not in the paper); from 6-channel "
                        "--init weights the new channel starts at zero; implied by --init weights that read one (the shipped "
                        "ones). Use with --iterative, which fills it")
    t.add_argument("--freeze-bn", action="store_true",
                   help="keep BatchNorm statistics and affine parameters fixed (fine-tuning at small batches)")
    t.add_argument("--val-pipeline", action="store_true",
                   help="validate each epoch through the default pipeline (click consistency, implied box, edge "
                        "refinement; 20 clicks) instead of the raw network (10 clicks); best.pt follows it")
    t.set_defaults(func=cmd_train)

    v = sub.add_parser("validate", help="score weights files on spbox train's held-apart objects (e.g. the "
                       "epochs a GPU run kept with --keep-epochs), as training's validation does")
    v.add_argument("weights", nargs="+")
    v.add_argument("--data", nargs="+", required=True, help="the dataset paths the weights were trained with")
    v.add_argument("--objects", type=int, default=None, help="only the first N held-apart objects")
    v.add_argument("--raw", action="store_true", help="the raw network, 10 clicks (train's default check) "
                   "instead of the default pipeline, 20 clicks (--val-pipeline)")
    v.add_argument("--jobs", type=int, default=1, help="spread the objects over N one-thread processes")
    v.add_argument("--flip", action="store_true", help="with the mirrored test-time augmentation (evaluate --flip)")
    v.add_argument("--json", default=None)
    v.add_argument("--csv-dir", default=None, help="also write each weights file's per-object results there "
                   "(spbox evaluate's CSV), so spbox compare can pair two of them")
    v.set_defaults(func=cmd_validate)

    a = sub.add_parser("average", help="average weights files of fine-tunes from one starting point, parameter "
                       "for parameter (a uniform model soup), into OUT; --ensemble: keep the networks and average "
                       "their outputs at inference (members from any runs)")
    a.add_argument("out")
    a.add_argument("weights", nargs="+")
    a.add_argument("--ensemble", action="store_true",
                   help="one file holding all the networks, run together, their logits averaged")
    a.set_defaults(func=cmd_average)

    from .benchmark import add_benchmark_parser
    from .serve import add_serve_parser

    add_benchmark_parser(sub)

    add_serve_parser(sub)
    return p


def main(argv=None) -> int:
    from .core.protocol import ProtocolError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ProtocolError, FileNotFoundError, ValueError, RuntimeError) as exc:
        # A refused click or a bad path is the user's to fix: say what is wrong, no traceback.
        print(f"spbox {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
