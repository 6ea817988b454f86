"""``spbox plot-training | train | validate | average``: training runs and what is done with their
weights.

:func:`add_parsers` registers the sub-commands on ``spbox``'s sub-parsers
(:func:`napari_spbox.cli.build_parser`). Torch and the training code are imported inside the
``cmd_*`` functions only, so that the command line starts fast and ``spbox segment`` never loads
them.
"""

from __future__ import annotations

import json
from pathlib import Path


def cmd_plot_training(args) -> int:
    from ..report import plot_training

    logs = {}
    for spec in args.logs:
        label, sep, path = spec.partition("=")
        # several paths: one line of training's successive runs
        paths = (path if sep else spec).split(",")
        label = label if sep else Path(paths[0]).parent.name
        if label in logs:  # a second run of that name would silently replace the first's line
            raise ValueError(f"two runs are called {label!r}: name them, LABEL=RUN_DIR/log.csv")
        logs[label] = paths
    refs = {}
    for spec in args.reference or []:
        label, _, values = spec.rpartition("=")
        try:
            noc90, miou5 = (float(v) for v in values.split(","))
        except ValueError:
            raise ValueError(
                f"--reference {spec!r}: expected LABEL=NOC90,MIOU5, e.g. 'shipped=12.17,0.692'"
            ) from None
        refs[label or "reference"] = (noc90, miou5)
    print(plot_training(args.out, logs, refs))
    return 0


def cmd_validate(args) -> int:
    import torch
    from tqdm import tqdm

    from ..cli import _writable
    from ..model.weights import (
        load_model,
        weights_click_radius,
        weights_input_size,
        weights_variant,
    )
    from ..report import write_csv
    from .validation import held_apart, validate

    _writable(args.json, "--json", make_folder=True)  # before minutes of work, not after
    names = [_csv_name(w) for w in args.weights]
    twice = sorted({n for n in names if names.count(n) > 1})
    if args.csv_dir and twice:
        raise ValueError(f"--csv-dir: two weights files would both write {', '.join(twice)}")
    torch.set_num_threads(1)  # the jobs are one-thread processes; so is this one
    val = held_apart(args.data)[1][: args.objects]
    if not val:
        raise SystemExit(f"spbox validate: no held-apart objects in {' '.join(args.data)}")
    results = []
    for w, name in tqdm(
        zip(args.weights, names), desc="weights validated", unit="file", total=len(names)
    ):  # minutes each on a CPU
        per_object = []
        r = validate(
            load_model(w),
            val,
            10 if args.raw else 20,
            weights_variant(w),
            "cpu",
            progress=False,
            pipeline=not args.raw,
            jobs=args.jobs,
            size=weights_input_size(w),
            per_object=per_object,
            flip=args.flip,
            refine=not args.no_refine,
            refine_side=args.refine_side,
            click_radius=args.click_radius
            if args.click_radius is not None
            else weights_click_radius(w),
        )
        results.append({"weights": w, "objects": len(val), **r})
        if args.csv_dir:  # a file per weights, named after its path: runs/a/e8.pt -> runs_a_e8.csv
            Path(args.csv_dir).mkdir(parents=True, exist_ok=True)
            results[-1]["csv"] = str(
                write_csv(Path(args.csv_dir) / name, per_object, r["max_clicks"])
            )
        tqdm.write(
            f"{w}: NoC@85 {r['noc@85']:.2f}, NoC@90 {r['noc@90']:.2f}, mIoU@5 "
            f"{r['miou5']:.3f} ({len(val)} held-apart objects, {r['max_clicks']} clicks, "
            f"{'raw network' if args.raw else 'pipeline'}"
            f"{'' if args.raw or not args.no_refine else ' without edge refinement'})"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


def _csv_name(weights) -> str:
    """The per-object CSV's file name for a weights path: its parts joined, without the root, so
    an absolute path stays inside ``--csv-dir``.

    >>> _csv_name("runs/a/e8.pt"), _csv_name("/tmp/b/e2.pt"), _csv_name("../x/w.pt")
    ('runs_a_e8.csv', 'tmp_b_e2.csv', 'x_w.csv')
    """
    path = Path(weights).with_suffix("")
    return "_".join(path.parts[len(path.anchor) > 0 :]).lstrip("._") + ".csv"


def cmd_average(args) -> int:
    from ..model.weights import average_weights, ensemble_weights

    if Path(args.out).suffix != ".pt":
        # its card is OUT with .json for a suffix: a.v1 and a.v2 would share a.json
        raise ValueError(f"the output must be a .pt file, not {args.out}")
    print((ensemble_weights if args.ensemble else average_weights)(args.weights, args.out))
    return 0


def train_config(args):
    """The :class:`~napari_spbox.train.loop.TrainConfig` of ``spbox train``'s parsed ``args``
    (options the command line does not have keep the config's defaults)."""
    from .loop import TrainConfig

    return TrainConfig(
        args.data,
        args.out,
        arch=args.arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        size=args.size,
        repeats=args.repeats,
        loss=args.loss,
        variant=args.variant,
        init=args.init,
        resume=args.resume,
        seed=args.seed,
        workers=args.workers,
        val_objects=args.val_objects,
        device=args.device,
        max_steps=args.max_steps,
        cache_dir=args.cache_dir,
        threads=args.threads,
        p_iterative=args.iterative,
        max_iterative_clicks=args.iterative_clicks,
        p_paste=args.copy_paste,
        p_boxed=args.boxed,
        freeze_bn=args.freeze_bn,
        optimizer=args.optimizer,
        encoder_lr_scale=args.tune_encoder,
        outline_head=args.outline_head,
        boundary_weight=args.boundary_weight,
        exclude_images=args.exclude_images,
        val_pipeline=args.val_pipeline,
        p_union=args.union,
        keep_epochs=args.keep_epochs,
        prev_mask=args.prev_mask,
        prior=args.prior,
        iterative_decay=args.iterative_decay,
    )


def cmd_train(args) -> int:
    from .checkpoints import write_log_json
    from .loop import train

    ckpt = train(train_config(args))
    write_log_json(args.out)
    out = Path(args.out)
    best = f"; lowest validation NoC@90: {out / 'best.pt'}" if (out / "best.pt").is_file() else ""
    print(f"checkpoint: {ckpt}; weights: {out / 'weights.pt'}{best}")
    return 0


def add_parsers(sub) -> None:
    """Register ``plot-training``, ``train``, ``validate`` and ``average`` on ``spbox``'s
    sub-command parsers."""
    pt = sub.add_parser(
        "plot-training", help="draw validation NoC@90 / mIoU@5 per epoch of spbox train runs"
    )
    pt.add_argument("out")
    pt.add_argument(
        "logs",
        nargs="+",
        help="RUN_DIR/log.csv, or LABEL=RUN_DIR/log.csv; LABEL=A/log.csv,B/log.csv "
        "draws runs that continue one another (B --init from A's end) as one "
        "curve, B's epochs after A's",
    )
    pt.add_argument(
        "--reference",
        action="append",
        metavar="LABEL=NOC90,MIOU5",
        help="a dashed line at another model's figures on the same check (e.g. the "
        "shipped weights)",
    )
    pt.set_defaults(func=cmd_plot_training)

    t = sub.add_parser("train", help="train an SPBox network on simulated clicks")
    t.add_argument(
        "--data", nargs="+", required=True, help="dataset paths (img/+gt/ folders, COCO JSON)"
    )
    t.add_argument("--out", required=True)
    t.add_argument(
        "--arch",
        default="efficientnet_lite0",
        choices=[
            "efficientnet_lite0",
            "efficientnet_lite2",
            "resnet101",
            "espnetv2",
            "espnetv2-split",
        ],
    )
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--size", type=int, default=320)
    t.add_argument(
        "--repeats", type=int, default=1, help="simulated click sets per object and epoch"
    )
    t.add_argument("--loss", default="bce", choices=["bce", "nfl"])
    t.add_argument("--variant", default="spbox")
    t.add_argument("--init", default=None, help="start from these weights (e.g. the shipped ones)")
    t.add_argument("--resume", default=None, help="resume from a checkpoint (last.pt)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--workers", type=int, default=0)
    t.add_argument("--val-objects", type=int, default=24)
    t.add_argument("--device", default=None)
    t.add_argument("--max-steps", type=int, default=None)
    t.add_argument(
        "--cache-dir", default=None, help="where SLIC labels of training images are cached"
    )
    t.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    t.add_argument(
        "--iterative",
        type=float,
        default=0.0,
        help="probability per batch of adding robot clicks on the model's own errors (RITM)",
    )
    t.add_argument(
        "--iterative-clicks",
        type=int,
        default=2,
        help="at most this many such clicks per batch (1..N, drawn uniformly unless "
        "--iterative-decay)",
    )
    t.add_argument(
        "--iterative-decay",
        type=float,
        default=1.0,
        help="each further error-click count is this many times as likely as the one "
        "before (1: uniform; 0.8 with --iterative-clicks 10 keeps 55 %% of them at "
        "3 or fewer)",
    )
    t.add_argument(
        "--copy-paste",
        type=float,
        default=0.0,
        help="probability per sample of pasting its object onto another training "
        "image's background",
    )
    t.add_argument(
        "--boxed",
        type=float,
        default=0.0,
        help="probability per sample of a box before any click, every click corrective "
        "(correction mode, a drawn box, the implied box)",
    )
    t.add_argument(
        "--union",
        type=float,
        default=0.0,
        help="probability per sample whose object touches other objects of its image "
        "of taking their union as the object (a rider and horse, a person and "
        "bicycle)",
    )
    t.add_argument(
        "--keep-epochs",
        action="store_true",
        help="also keep each epoch's weights as weights_e<N>.pt",
    )
    t.add_argument(
        "--prev-mask",
        action="store_true",
        help="a 7th input channel, the mask before the newest click (RITM; not in the "
        "paper); from 6-channel --init weights the new channel starts at zero; "
        "implied by --init weights that read one (the shipped ones). Use with "
        "--iterative, which fills it",
    )
    t.add_argument(
        "--prior",
        action="store_true",
        help="one more input channel after the previous mask: the VOC segmentation "
        "network's 'any object' probability, computed once per image and cached "
        "(issue 32's cheaper route; Lite networks); from --init weights without it the "
        "channel starts at zero. Needs --prev-mask or --init weights that read one",
    )
    t.add_argument(
        "--optimizer",
        choices=["sgd", "adamw"],
        default="sgd",
        help="SGD with Nesterov momentum (fine-tuning a pretrained network; base rate 0.01 per 8 "
        "samples) or AdamW (a decoder trained from scratch, e.g. espnetv2-split; base rate 1e-3)",
    )
    t.add_argument(
        "--tune-encoder",
        type=float,
        default=0.0,
        metavar="SCALE",
        help="espnetv2-split: also train its encoder's levels 3-4 and VOC decoder at SCALE times "
        "the learning rate (e.g. 0.1; default 0: frozen). It still reads no click",
    )
    t.add_argument(
        "--outline-head",
        nargs="?",
        const=True,
        default=False,
        choices=[True, "colour"],
        help="freeze the --init network and train only a full-resolution outline head on its "
        "logits (model.outline; an experiment: docs/experiments/stop33_outline_head.md); "
        "'--outline-head colour': the head also reads the window's colour model",
    )
    t.add_argument(
        "--boundary-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="add W x the cross-entropy of the pixels within a few px of the object's outline "
        "(train.losses.with_boundary_term; default 0: off)",
    )
    t.add_argument(
        "--exclude-images",
        default=None,
        metavar="FILE",
        help="a text file of image file names, one a line: their objects are never trained on "
        "(a slice kept to check the run afterwards)",
    )
    t.add_argument(
        "--freeze-bn",
        action="store_true",
        help="keep BatchNorm statistics and affine parameters fixed (fine-tuning at small batches)",
    )
    t.add_argument(
        "--val-pipeline",
        action="store_true",
        help="validate each epoch through the default pipeline (click consistency, "
        "implied box, edge refinement; 20 clicks) instead of the raw network (10 "
        "clicks); best.pt follows it",
    )
    t.set_defaults(func=cmd_train)

    v = sub.add_parser(
        "validate",
        help="score weights files on spbox train's held-apart objects "
        "(e.g. the epochs a GPU run kept with --keep-epochs), as training's "
        "validation does",
    )
    v.add_argument("weights", nargs="+")
    v.add_argument(
        "--data", nargs="+", required=True, help="the dataset paths the weights were trained with"
    )
    v.add_argument("--objects", type=int, default=None, help="only the first N held-apart objects")
    v.add_argument(
        "--raw",
        action="store_true",
        help="the raw network, 10 clicks (train's default "
        "check) instead of the default pipeline, 20 clicks (--val-pipeline)",
    )
    v.add_argument(
        "--jobs", type=int, default=1, help="spread the objects over N one-thread processes"
    )
    v.add_argument(
        "--flip",
        action="store_true",
        help="with the mirrored test-time augmentation (evaluate --flip)",
    )
    v.add_argument(
        "--no-refine",
        action="store_true",
        help="the pipeline without its edge refinement (evaluate --no-refine)",
    )
    v.add_argument(
        "--refine-side",
        type=int,
        default=None,
        metavar="PX",
        help="the edge refinement at most PX pixels a side (evaluate --refine-side)",
    )
    v.add_argument(
        "--click-radius",
        type=int,
        default=None,
        metavar="PX",
        help="radius of each click's hard spot (evaluate --click-radius; default: each weights "
        "file's card, else 3 px)",
    )
    v.add_argument("--json", default=None)
    v.add_argument(
        "--csv-dir",
        default=None,
        help="also write each weights file's per-object "
        "results there (spbox evaluate's CSV), so spbox compare can pair two of them",
    )
    v.set_defaults(func=cmd_validate)

    a = sub.add_parser(
        "average",
        help="average weights files of fine-tunes from one starting "
        "point, parameter for parameter (a uniform model soup), into OUT; "
        "--ensemble: keep the networks and average their outputs at inference "
        "(members from any runs)",
    )
    a.add_argument("out")
    a.add_argument("weights", nargs="+")
    a.add_argument(
        "--ensemble",
        action="store_true",
        help="one file holding all the networks, run together, their logits averaged",
    )
    a.set_defaults(func=cmd_average)
