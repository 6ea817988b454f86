"""``spbox benchmark``: per-click latency, per-stage time and peak memory, against OpenCV GrabCut.

Each image is clicked by the standard robot user (next click on the current prediction versus the
ground truth) at its native size and resized to e.g. 480x640. Three things are timed per image:

* the **first click**: ``set_image`` + the predictor's warm-up (SLIC; for a split network also
  its whole-image encoder, beside it) + guidance + network, what a user waits for on a new image;
* every **later click**: ``predict`` with cached superpixels, what a user waits for while
  correcting;
* the **stages** of a later click, timed by ``predict``'s ``on_stage`` hook on one more call with
  the same session.

GrabCut (5 iterations) predicts the very same :class:`~napari_spbox.core.protocol.Session` objects,
so the ratio compares like with like.

Without ``--data`` the bundled samples are measured (:data:`DEFAULT_DATA`: scikit-image's coffee cup
and the nuclei sample of the napari plugin); nothing outside the package is looked for. Neither has
ground truth in the package, so each is clicked by a fixed list (:data:`FIXED_CLICKS`) instead of
the robot user; ``--data PATH`` (a dataset with ground truth, e.g. the GrabCut set) gets the robot.
"""

from __future__ import annotations

import itertools
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from .predictors import add_weights_options

#: Sizes measured when ``--size`` is not given.
DEFAULT_SIZES = ("native", "480x640")
#: Objects used of each ``--data`` dataset (the first few, by file name; ``--limit``'s default).
DEFAULT_LIMIT = 4
DEFAULT_CLICKS = 10
#: Fewer later clicks than this per size make the p90 meaningless; the report says so.
MIN_LATER_CLICKS = 30

#: Fixed clicks for the coffee cup (no ground truth), as (row, col) fractions of the image: centre
#: of the coffee, a negative on the saucer that sets the box, then corrections on handle, saucer,
#: spoon.
COFFEE_CLICKS = [
    (0.38, 0.48, True),
    (0.88, 0.78, False),
    (0.72, 0.40, True),
    (0.80, 0.60, False),
    (0.70, 0.55, True),
    (0.62, 0.69, False),
    (0.08, 0.48, True),
    (0.85, 0.30, False),
    (0.45, 0.66, True),
    (0.30, 0.25, False),
    (0.55, 0.36, True),
    (0.92, 0.50, False),
]

#: Fixed clicks for the nuclei sample (256x256, no ground truth in the package), as (row, col)
#: pixels: the nucleus that ``nuclei-dev`` marks as ``8a26b134_29`` (rows 93-112, cols 53-70; its
#: centre is the demo's click), positives inside it and negatives on the dark background around it,
#: every one checked against that annotation, which is not shipped.
NUCLEI_PIXEL_CLICKS = [
    (102, 61, True),
    (116, 74, False),
    (95, 57, True),
    (90, 50, False),
    (110, 63, True),
    (103, 74, False),
    (99, 67, True),
    (114, 54, False),
    (105, 56, True),
    (94, 70, False),
]
#: The same clicks as fractions of the image's side, so that they follow a resize.
NUCLEI_CLICKS = [(r / 256, c / 256, p) for r, c, p in NUCLEI_PIXEL_CLICKS]

#: The bundled samples ``--data`` takes by name (a folder of such a name: ``./coffee``), and the
#: fixed clicks each gets.
FIXED_CLICKS = {"coffee": COFFEE_CLICKS, "nuclei": NUCLEI_CLICKS}
#: Measured when ``--data`` is not given: the bundled samples, the same on every machine.
DEFAULT_DATA = ("coffee", "nuclei")

PER_IMAGE_STAGES = ("set_image", "warm_up")
PER_CLICK_STAGES = ("window", "guidance", "preprocess", "forward", "refine", "postprocess")


def load_sample(name: str):
    """A bundled sample image: ``coffee`` (``skimage.data.coffee()``, 400x600 RGB) or ``nuclei``
    (the napari plugin's DSB2018 nuclei, 256x256 grey, read with
    :func:`napari_spbox.io.read_image`)."""
    if name == "coffee":
        from skimage import data as skdata

        return skdata.coffee()
    if name == "nuclei":
        from .io import read_image
        from .napari._sample_data import NUCLEI_FILE

        return read_image(NUCLEI_FILE)
    raise ValueError(f"no bundled sample {name!r}; the samples are {', '.join(FIXED_CLICKS)}")


def load_images(data, limit: int | None) -> list:
    """``(name, image, gt or None, ignore or None)`` for the first ``limit`` objects of each source.

    ``coffee`` and ``nuclei`` name the bundled samples (:func:`load_sample`; no ground truth);
    anything else goes to :func:`napari_spbox.datasets.read_dataset`.
    """
    from .datasets import read_dataset

    out = []
    for source in data:
        if source in FIXED_CLICKS:
            out.append((source, load_sample(source), None, None))
            continue
        items = read_dataset(source)
        for item in items[:limit] if limit else items:
            image, gt, ignore = item.load()
            if gt.any():
                out.append((item.name, image, gt, ignore))
    if not out:
        raise ValueError(f"no image with an object in {', '.join(map(str, data))}")
    return out


def parse_size(text: str):
    """``native`` or ``HxW`` (e.g. ``480x640``) into ``None`` or ``(H, W)``."""
    if text == "native":
        return None
    try:
        h, w = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise ValueError(f"a size is 'native' or HxW such as 480x640; got {text!r}") from None
    if h < 16 or w < 16:
        raise ValueError(f"size {text!r} is too small (16 pixels per side at least)")
    return h, w


def resize_item(image, gt, ignore, size):
    """Resize to ``size``, swapped for portrait images so the pixel count matches without
    distortion."""
    if size is None:
        return image, gt, ignore
    import cv2

    h, w = size
    if (image.shape[0] > image.shape[1]) != (h > w):
        h, w = w, h
    interp = cv2.INTER_AREA if h * w < image.shape[0] * image.shape[1] else cv2.INTER_LINEAR
    image = cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=interp)

    def nearest(m):
        return (
            None
            if m is None
            else cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        )

    return image, nearest(gt), nearest(ignore)


def summarise_times(values) -> dict | None:
    """Median, 90th percentile and count of a list of milliseconds (``None`` when empty)."""
    if not len(values):
        return None
    v = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)), "n": int(v.size)}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (ru_maxrss is KiB on Linux, bytes on
    macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def time_stages(predictor, session) -> dict:
    """Milliseconds of each stage of one click, timed on the real click path (``predict``'s stage
    hook).

    Superpixels must already be cached (this times a later click). A stage met more than once (a
    click before the box runs the network twice) gets the sum of its times.
    """
    stamps = [("start", time.perf_counter())]
    predictor.predict(session, on_stage=lambda stage: stamps.append((stage, time.perf_counter())))
    out: dict = {}
    for (_, t0), (stage, t1) in itertools.pairwise(stamps):
        out[stage] = out.get(stage, 0.0) + (t1 - t0) * 1000.0
    return out


def _clicks_for(gt, ignore, shape, fixed_clicks=COFFEE_CLICKS):
    """Click source: the robot user when there is ground truth, else ``fixed_clicks`` ((row, col)
    fractions of the image, repeated as needed)."""
    if gt is not None:
        from .evaluation.robot import next_click

        return lambda k, mask: next_click(mask, gt, ignore)
    h, w = shape[:2]
    fixed = [(min(h - 1, int(fr * h)), min(w - 1, int(fc * w)), p) for fr, fc, p in fixed_clicks]
    return lambda k, mask: fixed[k % len(fixed)]


def bench_image(
    spbox, grabcut, image, gt, ignore, n_clicks: int, fixed_clicks=COFFEE_CLICKS
) -> dict:
    """Click one image ``n_clicks`` times; per-click times of SPBox (and GrabCut on the same
    sessions).

    Without ground truth (``gt`` None) the clicks are ``fixed_clicks`` (see :func:`_clicks_for`).
    """
    from .core.protocol import Session

    rec = {stage: [] for stage in PER_IMAGE_STAGES + PER_CLICK_STAGES}
    rec.update(first=[], later=[], staged=[], gc_first=[], gc_later=[], slic_quality=[])
    source = _clicks_for(gt, ignore, image.shape, fixed_clicks)
    session = Session(image.shape, strict=False)
    mask = np.zeros(image.shape[:2], dtype=bool)
    for k in range(n_clicks):
        click = source(k, mask)
        if click is None:  # the robot user found no error left
            break
        session.add_click(*click)
        t0 = time.perf_counter()
        if k == 0:
            spbox.set_image(image)
            t1 = time.perf_counter()
            spbox.warm_up()  # what front-ends run when an image is chosen, timed on its own
            t2 = time.perf_counter()
            rec["set_image"].append((t1 - t0) * 1000.0)
            rec["warm_up"].append((t2 - t1) * 1000.0)
        pred = spbox.predict(session)
        elapsed = (time.perf_counter() - t0) * 1000.0
        mask = pred.mask
        if k == 0:
            rec["first"].append(elapsed)
            if gt is not None and spbox.shape == gt.shape:  # outside the timed click
                rec["slic_quality"].append(_slic_quality(spbox, gt))
        else:
            rec["later"].append(elapsed)
            stages = time_stages(spbox, session)
            for stage, ms in stages.items():
                rec[stage].append(ms)
            rec["staged"].append(sum(stages.values()))
        if grabcut is not None:
            t0 = time.perf_counter()
            if k == 0:
                grabcut.set_image(image)
            grabcut.predict(session)
            rec["gc_first" if k == 0 else "gc_later"].append((time.perf_counter() - t0) * 1000.0)
    return rec


def _slic_quality(spbox, gt) -> dict:
    """Quality of the predictor's SLIC against scikit-image's default iterations, on one object."""
    from .core.superpixels import compute_superpixels
    from .evaluation.metrics import superpixel_quality

    t0 = time.perf_counter()
    default = compute_superpixels(spbox.rgb, spbox.n_segments, max_num_iter=10)
    ms = (time.perf_counter() - t0) * 1000.0
    return {
        "used": superpixel_quality(spbox.superpixels.labels, gt),
        "default_10_iterations": {**superpixel_quality(default.labels, gt), "ms": ms},
    }


def _mean_quality(records: list) -> dict | None:
    if not records:
        return None
    return {
        k: {m: float(np.mean([r[k][m] for r in records])) for m in records[0][k]}
        for k in records[0]
    }


def _report(rec: dict) -> dict:
    """The JSON block of one size (or of all sizes pooled) from concatenated per-click records."""
    spbox, gc = summarise_times(rec["later"]), summarise_times(rec["gc_later"])
    return {
        "first_click_ms": summarise_times(rec["first"]),
        "click_ms": spbox,
        # the stage-timed click (a second predict of the same session): its stages sum to this
        "staged_click_ms": summarise_times(rec["staged"]),
        "stages_ms": {
            s: (summarise_times(rec[s]) or {}).get("median")
            for s in PER_IMAGE_STAGES + PER_CLICK_STAGES
        },
        "grabcut_first_click_ms": summarise_times(rec["gc_first"]),
        "grabcut_click_ms": gc,
        # median over median: a robust "how many times GrabCut's cost" per later click
        "ratio_vs_grabcut": spbox["median"] / gc["median"]
        if spbox and gc and gc["median"] > 0
        else None,
        "slic_quality": _mean_quality(rec["slic_quality"]),
    }


def _warm_up(spbox, grabcut) -> None:
    """One throw-away click on a small image: lazy allocator and kernel set-up stay out of the
    figures."""
    from .core.protocol import Session

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    session = Session(img.shape, strict=False)
    session.add_click(48, 64, True)
    session.add_click(80, 110, False)
    for predictor in (spbox, grabcut):
        if predictor is not None:
            predictor.set_image(img)
            predictor.predict(session)


def run_benchmark(
    data=None,
    limit: int | None = DEFAULT_LIMIT,
    clicks: int = DEFAULT_CLICKS,
    sizes=DEFAULT_SIZES,
    device: str = "cpu",
    weights=None,
    threads: int | None = None,
    grabcut: bool = True,
    progress: bool = True,
    backend: str = "auto",
    refine: bool | None = None,
    precise_edges: bool = False,
    refine_side: int | None = None,
) -> dict:
    """Run the benchmark and return the JSON-ready summary (see the module docstring).

    Parameters
    ----------
    data : list of str, optional
        Dataset paths (any layout :func:`~napari_spbox.datasets.read_dataset` reads) or the names
        of the bundled samples, ``coffee`` and ``nuclei``; both samples (:data:`DEFAULT_DATA`)
        when omitted.
    limit : int, optional
        First ``limit`` objects of each dataset.
    clicks : int
        Clicks per image (the first included), at least 2.
    sizes : sequence of str
        ``native`` and/or ``HxW``.
    device, weights : str
        Passed to the SPBox predictor; ``weights=None`` means the shipped weights.
    threads : int, optional
        Torch intra-op threads (and OpenCV's); the library default when omitted.
    grabcut : bool
        Also time OpenCV GrabCut on the same sessions.
    backend : str
        How the network runs (see :func:`napari_spbox.model._runtime.make_runner`).
    refine : bool, optional
        Time the click with edge refinement or without it; by default as the weights' card says.
    precise_edges : bool
        Time the "precise edges" refinement (full size, 3 iterations) instead of the default one.
    refine_side : int, optional
        Time the default refinement at this side (the pipeline's own when omitted).
    """
    import torch
    from tqdm import tqdm

    from .predictors import PredictorSettings, make_predictor

    if clicks < 2:
        raise ValueError("--clicks must be at least 2: the first click and one later click")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device")
    if threads:
        import cv2

        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
    parsed = [(s, parse_size(s)) for s in sizes]
    images = load_images(data or list(DEFAULT_DATA), limit)

    t0 = time.perf_counter()
    edges = (
        "precise" if precise_edges else (None if refine is None else ("fast" if refine else "off"))
    )
    spbox = make_predictor(
        PredictorSettings(
            "spbox",
            weights=weights,
            device=device,
            backend=backend,
            edges=edges,
            refine_side=refine_side,
        )
    )
    load_ms = (time.perf_counter() - t0) * 1000.0
    gc = make_predictor(PredictorSettings("grabcut", iterations=5)) if grabcut else None
    _warm_up(spbox, gc)

    keys = (
        PER_IMAGE_STAGES
        + PER_CLICK_STAGES
        + ("first", "later", "staged", "gc_first", "gc_later", "slic_quality")
    )
    pooled = {k: [] for k in keys}
    by_size = {}
    bar = tqdm(
        total=len(parsed) * len(images), desc="benchmark", unit="image", disable=not progress
    )
    for label, size in parsed:
        per_size = {k: [] for k in keys}
        for name, image, gt, ignore in images:
            bar.set_postfix_str(f"{label} {name}")
            fixed = FIXED_CLICKS.get(name, COFFEE_CLICKS)
            rec = bench_image(spbox, gc, *resize_item(image, gt, ignore, size), clicks, fixed)
            for k in keys:
                per_size[k] += rec[k]
                pooled[k] += rec[k]
            bar.update()
        by_size[label] = {**_report(per_size), "n_images": len(images)}
    bar.close()

    return {
        **_report(pooled),
        "peak_rss_mb": peak_rss_mb(),
        "device": str(spbox.device),
        "backend": spbox.backend,
        "torch_threads": torch.get_num_threads(),
        "weights": str(weights) if weights else "shipped",
        "model_load_ms": load_ms,
        "input_size": spbox.size,
        "refine": "precise" if spbox.refine and spbox.precise_edges else spbox.refine,
        "refine_side": spbox.refine_side,
        "n_superpixels": spbox.n_segments,
        "clicks_per_image": clicks,
        "images": [name for name, *_ in images],
        "by_size": by_size,
    }


def format_table(result: dict) -> str:
    """A small plain-text table of the figures that matter (medians / p90 in ms)."""

    def mp(s):
        return f"{s['median']:7.1f} /{s['p90']:7.1f}" if s else f"{'-':>16}"

    labels = list(result["by_size"])
    lines = [
        (
            f"{'size':<10} {'first click':>16} {'later click':>16} {'GrabCut click':>16} "
            f"{'ratio':>6} {'n':>4}"
        )
    ]
    for label in labels + ["all"]:
        r = result if label == "all" else result["by_size"][label]
        ratio = (
            f"{r['ratio_vs_grabcut']:6.2f}" if r["ratio_vs_grabcut"] is not None else f"{'-':>6}"
        )
        n = r["click_ms"]["n"] if r["click_ms"] else 0
        lines.append(
            f"{label:<10} {mp(r['first_click_ms'])} {mp(r['click_ms'])} "
            f"{mp(r['grabcut_click_ms'])} {ratio} {n:>4}"
        )
    lines.append("")
    lines.append(f"{'stage (median ms)':<18}" + "".join(f"{label:>10}" for label in labels))
    for stage in PER_IMAGE_STAGES + PER_CLICK_STAGES:
        cells = [result["by_size"][label]["stages_ms"][stage] for label in labels]
        lines.append(
            f"{stage:<18}" + "".join(f"{c:10.1f}" if c is not None else f"{'-':>10}" for c in cells)
        )
    lines.append("")
    lines.append(
        f"device {result['device']} ({result['backend']}), "
        f"torch threads {result['torch_threads']}, "
        f"peak RSS {result['peak_rss_mb']:.0f} MiB, model load {result['model_load_ms']:.0f} ms"
    )
    return "\n".join(lines)


def cmd_benchmark(args) -> int:
    from .cli import _writable

    _writable(args.json, "--json", make_folder=True)
    result = run_benchmark(
        args.data,
        args.limit,
        args.clicks,
        args.size or list(DEFAULT_SIZES),
        args.device,
        args.weights,
        args.threads,
        grabcut=not args.no_grabcut,
        backend=args.backend,
        refine=False if args.no_refine else None,
        precise_edges=args.precise_edges,
        refine_side=args.refine_side,
    )
    print(format_table(result))
    short = [
        label
        for label, r in result["by_size"].items()
        if not r["click_ms"] or r["click_ms"]["n"] < MIN_LATER_CLICKS
    ]
    if short:
        print(
            f"note: fewer than {MIN_LATER_CLICKS} later clicks for {', '.join(short)}: "
            "raise --limit or --clicks for a stable p90",
            file=sys.stderr,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


def add_benchmark_parser(subparsers):
    """Register ``spbox benchmark`` on the ``spbox`` sub-command parsers; returns its parser."""
    b = subparsers.add_parser(
        "benchmark", help="per-click latency, stage times and memory, against GrabCut"
    )
    b.add_argument(
        "--data",
        nargs="+",
        default=None,
        help="dataset paths, or 'coffee' / 'nuclei' (the bundled samples, clicked by "
        "fixed lists; default: both samples)",
    )
    b.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help="first N objects of each dataset"
    )
    b.add_argument(
        "--clicks",
        type=int,
        default=DEFAULT_CLICKS,
        help="robot-user clicks per image, first included",
    )
    b.add_argument(
        "--size", nargs="+", default=None, help="native and/or HxW (default: native 480x640)"
    )
    add_weights_options(b)
    b.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "onnx", "fused", "torch"),
        help="how the network runs: auto (ONNX Runtime if installed, else fused torch), "
        "onnx, fused, torch",
    )
    b.add_argument(
        "--threads", type=int, default=None, help="torch and OpenCV threads (default: theirs)"
    )
    b.add_argument("--json", default=None, help="write the full results here")
    b.add_argument(
        "--no-refine", action="store_true", help="time the click without edge refinement"
    )
    b.add_argument(
        "--precise-edges",
        action="store_true",
        help="time the full-size, 3-iteration edge refinement",
    )
    b.add_argument(
        "--refine-side",
        type=int,
        default=None,
        metavar="PX",
        help="time the edge refinement at most PX pixels a side (default: the pipeline's own)",
    )
    b.add_argument("--no-grabcut", action="store_true", help="skip the OpenCV GrabCut comparison")
    b.set_defaults(func=cmd_benchmark)
    return b
