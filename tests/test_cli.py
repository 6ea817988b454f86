import json

import numpy as np
import pytest
from PIL import Image

from napari_spbox.cli import main


@pytest.fixture
def tiny_dataset(tmp_path, disk_image):
    img, mask = disk_image
    for k in range(2):
        (tmp_path / "img").mkdir(exist_ok=True)
        (tmp_path / "gt").mkdir(exist_ok=True)
        Image.fromarray(np.roll(img, 15 * k, axis=0)).save(tmp_path / "img" / f"{k}.jpg")
        Image.fromarray(np.roll(mask, 15 * k, axis=0).astype(np.uint8)).save(
            tmp_path / "gt" / f"{k}.png"
        )
    return tmp_path


def test_evaluate_writes_json_csv_plot(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "res" / "rw.json"
    plot = tmp_path / "res" / "rw.png"
    assert (
        main(
            [
                "evaluate",
                str(tiny_dataset),
                "--method",
                "random-walker",
                "--max-clicks",
                "3",
                "--json",
                str(out),
                "--plot",
                str(plot),
                "--superpixels",
                "100",
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    for key in (
        "noc@85",
        "noc@90",
        "nof@85",
        "nof@90",
        "miou_per_click",
        "latency_ms",
        "n_objects",
    ):
        assert key in res
    assert (
        res["n_objects"] == 2
        and len(res["miou_per_click"]) == 3
        and set(res["latency_ms"]) == {"median", "p90"}
    )
    assert res["miou_per_click"][-1] > 0.8  # an easy disk: the baseline finds it
    assert out.with_suffix(".csv").read_text().count("\n") == 3
    assert plot.stat().st_size > 1000


def test_evaluate_no_refine_reaches_the_predictor(tiny_dataset, tmp_path, monkeypatch):
    from napari_spbox.model import inference

    seen = []
    real = inference.refine_edges
    monkeypatch.setattr(inference, "refine_edges", lambda *a, **k: seen.append(1) or real(*a, **k))
    for flag, refined in (([], True), (["--no-refine"], False)):
        out = tmp_path / f"spbox{len(flag)}.json"
        seen.clear()
        assert (
            main(["evaluate", str(tiny_dataset), "--max-clicks", "3", "--json", str(out), *flag])
            == 0
        )
        res = json.loads(out.read_text())
        assert res["refine"] is refined and res["variant"] == "spbox"  # the shipped card's guidance
        assert bool(seen) is refined  # the predictor refined its clicks, or never did
    monkeypatch.setattr(inference, "refine_edges", lambda *a, **k: seen.append(k) or real(*a, **k))
    seen.clear()
    out = tmp_path / "precise.json"
    assert (
        main(
            [
                "evaluate",
                str(tiny_dataset),
                "--max-clicks",
                "2",
                "--json",
                str(out),
                "--precise-edges",
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["precise_edges"] is True
    # full size, 3 iterations; clicks keep the natural weights' 3 px spot
    assert seen and all(k == {"iterations": 3, "max_side": None, "radius": 3} for k in seen)

    passes = []
    real_forward = inference.SPBoxPredictor.forward
    monkeypatch.setattr(
        inference.SPBoxPredictor,
        "forward",
        lambda self, x, window=None: passes.append(self.flip) or real_forward(self, x, window),
    )
    out = tmp_path / "flip.json"
    assert (
        main(["evaluate", str(tiny_dataset), "--max-clicks", "2", "--json", str(out), "--flip"])
        == 0
    )
    assert json.loads(out.read_text())["flip"] is True and passes and all(passes)


def test_evaluate_ignore_band_is_recorded_scores_higher_and_writes_full_rows(
    tiny_dataset, tmp_path
):
    runs = {}
    for w in (0, 3):
        out = tmp_path / f"band{w}.json"
        assert (
            main(
                [
                    "evaluate",
                    str(tiny_dataset),
                    "--method",
                    "random-walker",
                    "--max-clicks",
                    "4",
                    "--json",
                    str(out),
                    "--superpixels",
                    "100",
                    "--ignore-band",
                    str(w),
                ]
            )
            == 0
        )
        runs[w] = json.loads(out.read_text())
        rows = out.with_suffix(".csv").read_text().splitlines()
        # objects the robot stopped early are padded
        assert all(len(r.split(",")) == 3 + 4 for r in rows)
    assert "ignore_band" not in runs[0] and runs[3]["ignore_band"] == 3
    # the outline's errors no longer count
    assert runs[3]["miou_per_click"][0] > runs[0]["miou_per_click"][0]
    with pytest.raises(SystemExit, match="--ignore-band"):
        main(["evaluate", str(tiny_dataset), "--method", "random-walker", "--ignore-band", "-1"])


def test_segment_grabcut_writes_overlay_and_mask(tiny_dataset, tmp_path):
    overlay, mask_png = tmp_path / "o.png", tmp_path / "m.png"
    # the disk is centred at x=100, y=80 with radius 40; negative just outside at its lower right
    assert (
        main(
            [
                "segment",
                str(tiny_dataset / "img" / "0.jpg"),
                "--method",
                "grabcut",
                "--click",
                "100,80",
                "--click",
                "135,115,neg",
                "--out",
                str(overlay),
                "--mask-out",
                str(mask_png),
            ]
        )
        == 0
    )
    mask = np.asarray(Image.open(mask_png)) > 0
    assert overlay.is_file() and mask[80, 100] and not mask[5, 5]


def test_segment_reports_the_file_it_wrote_when_out_has_no_suffix(tiny_dataset, tmp_path, capsys):
    """``--out NAME`` writes NAME.png (as matplotlib does) and says so, not NAME."""
    image = str(tiny_dataset / "img" / "0.jpg")
    args = ["segment", image, "--method", "grabcut", "--click", "100,80", "--click", "135,115,neg"]
    assert main(args + ["--out", str(tmp_path / "overlay")]) == 0
    assert (tmp_path / "overlay.png").is_file() and not (tmp_path / "overlay").exists()
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'overlay.png'}:")


def test_average_refuses_an_out_that_is_not_a_pt_file(tmp_path, capsys):
    """``spbox average a.v1 ...``: its card would be a.json, shared with a.v2's; refused in one
    line before anything is written."""
    from napari_spbox.model.network import build_network
    from napari_spbox.model.weights import save_weights

    a = save_weights(build_network(), tmp_path / "a.pt")
    assert main(["average", str(tmp_path / "avg.v1"), str(a), str(a)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ".pt" in err and not list(tmp_path.glob("avg*"))


def test_segment_refuses_out_of_protocol_click(tiny_dataset, capsys):
    assert (
        main(
            [
                "segment",
                str(tiny_dataset / "img" / "0.jpg"),
                "--method",
                "grabcut",
                "--click",
                "100,80,neg",
            ]
        )
        == 2
    )
    assert "first click must be positive" in capsys.readouterr().err


def test_bad_outputs_and_inputs_are_refused_in_one_line_before_any_work(
    tiny_dataset, tmp_path, capsys, monkeypatch
):
    """A slow command checks what it will write and read first, so a typo costs no minutes and
    loses no results; each refusal is one line and exit status 2, and nothing is written."""
    from napari_spbox.evaluation import robot

    def never(*a, **k):
        raise AssertionError("the robot ran before the bad argument was refused")

    monkeypatch.setattr(robot, "_run_item", never)  # what every robot run calls per object
    (tmp_path / "empty" / "img").mkdir(parents=True)
    (tmp_path / "empty" / "gt").mkdir()
    (tmp_path / "l.json").write_text("[1, 2]")
    (tmp_path / "folder").mkdir()
    data, ev, listed = (
        str(tiny_dataset),
        ["evaluate", "--method", "grabcut"],
        str(tmp_path / "l.json"),
    )
    cases = {
        "is a folder": [*ev, data, "--json", str(tmp_path / "folder")],
        "would overwrite it": [*ev, data, "--json", str(tmp_path / "r.csv")],
        "No such file": [*ev, data, "--plot", str(tmp_path / "p.png"), "--compare", "nope.json"],
        "not an spbox evaluate": [*ev, data, "--plot", "p.png", "--compare", listed],
        "no objects to evaluate": [*ev, str(tmp_path / "empty")],
        "not a COCO instances file": [*ev, listed],
        "Is a directory": ["plot", str(tmp_path / "p.png"), str(tmp_path / "folder")],
        "would both write": ["validate", "w.pt", "../w.pt", "--data", data, "--csv-dir", "c"],
    }
    for expected, argv in cases.items():
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "folder", "gt", "img", "l.json"]


def test_the_demo_refuses_missing_weights_in_one_line(tmp_path, capsys):
    from napari_spbox.demo import _run

    assert _run(["--weights", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "d.png")]) == 2
    err = capsys.readouterr().err
    assert "missing.pt" in err and err.count("\n") == 1
    assert not (tmp_path / "d.png").exists()


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for cmd in ("segment", "evaluate", "train", "benchmark"):
        assert cmd in text


def test_demo_segments_the_coffee_cup_with_shipped_weights(tmp_path, capsys):
    from napari_spbox.demo import main as demo

    out = tmp_path / "demo.png"
    assert demo(["--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.stat().st_size > 10000 and "click 3" in text
    # a real mask, not an empty one
    assert int(text.split("click 3")[1].split(":")[1].split("px")[0]) > 1000


def test_plot_training_compares_runs_and_refuses_other_csvs(tmp_path, capsys):
    header = "epoch,step,loss,lr,val_noc85,val_noc90,val_miou5,seconds\n"
    for name, rows in (
        ("a", ["1,10,0.2,1e-3,8.0,9.0,0.40,5", "2,20,0.1,5e-4,7.5,8.5,0.45,5"]),
        ("b", ["1,10,0.9,1e-3,8.2,9.1,0.42,5"]),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "log.csv").write_text(header + "\n".join(rows) + "\n")
    out = tmp_path / "train.png"
    assert (
        main(
            [
                "plot-training",
                str(out),
                str(tmp_path / "a" / "log.csv"),
                f"focal={tmp_path / 'b' / 'log.csv'}",
            ]
        )
        == 0
    )
    assert out.stat().st_size > 1000 and str(out) in capsys.readouterr().out
    plain, ref = tmp_path / "plain.png", tmp_path / "ref.png"
    assert main(["plot-training", str(plain), str(tmp_path / "a" / "log.csv")]) == 0
    assert (
        main(
            [
                "plot-training",
                str(ref),
                str(tmp_path / "a" / "log.csv"),
                "--reference",
                "shipped=8.7,0.43",
            ]
        )
        == 0
    )
    assert ref.read_bytes() != plain.read_bytes()  # the reference lines are drawn
    (tmp_path / "b" / "a").mkdir()  # another run also called "a": refused, not drawn over
    (tmp_path / "b" / "a" / "log.csv").write_text(header + "1,10,0.5,1e-3,8.0,9.0,0.40,5\n")
    again = [str(tmp_path / "a" / "log.csv"), str(tmp_path / "b" / "a" / "log.csv")]
    assert main(["plot-training", str(tmp_path / "two.png"), *again]) == 2
    assert "two runs are called 'a'" in capsys.readouterr().err
    assert (
        main(
            [
                "plot-training",
                str(ref),
                str(tmp_path / "a" / "log.csv"),
                "--reference",
                "shipped=8.7",
            ]
        )
        == 2
    )
    assert "LABEL=NOC90,MIOU5" in capsys.readouterr().err
    (tmp_path / "other.csv").write_text(header)  # a log without validated epochs
    assert main(["plot-training", str(tmp_path / "x.png"), str(tmp_path / "other.csv")]) == 2
    assert "no validated epochs" in capsys.readouterr().err


def test_plot_training_draws_successive_runs_as_one_curve(tmp_path, capsys):
    from napari_spbox.report import _validated_epochs

    header = "epoch,step,loss,lr,val_noc85,val_noc90,val_miou5,seconds\n"
    (tmp_path / "c1.csv").write_text(
        header + "1,10,0.2,1e-3,,,,5\n2,20,0.2,1e-3,8.0,9.0,0.40,5\n3,30,0.2,1e-3,,,,5\n"
    )
    (tmp_path / "c2.csv").write_text(header + "1,10,0.2,1e-3,,,,5\n2,20,0.1,5e-4,7.5,8.5,0.45,5\n")
    epochs, rows = _validated_epochs([tmp_path / "c1.csv", tmp_path / "c2.csv"])
    assert epochs == [2, 5]  # the second run's epoch 2 follows the first run's last logged epoch, 3
    assert [r["val_noc90"] for r in rows] == ["9.0", "8.5"]
    out = tmp_path / "both.png"
    assert (
        main(["plot-training", str(out), f"two cycles={tmp_path / 'c1.csv'},{tmp_path / 'c2.csv'}"])
        == 0
    )
    assert out.stat().st_size > 1000


def _write_nocs(path, nocs, names=None):
    from napari_spbox.report import write_csv

    # an object reaching 90 % on click k has IoU 0.5 before it and 0.95 from it on
    per_object = [
        {"name": n, "ious": [0.5] * (k - 1) + [0.95] * (20 - k + 1)}
        for n, k in zip(names or [f"o{i}" for i in range(len(nocs))], nocs)
    ]
    return write_csv(path, per_object)


def test_compare_gives_the_shipping_rules_verdict(tmp_path, capsys):
    rng = np.random.default_rng(0)
    base_a, base_b = rng.integers(2, 15, 50), rng.integers(2, 15, 80)
    base = [
        _write_nocs(tmp_path / "base_a.csv", base_a),
        _write_nocs(tmp_path / "base_b.csv", base_b),
    ]
    # two clicks fewer on every object of set a, the same on set b: better pooled, worse nowhere
    good = [
        _write_nocs(tmp_path / "good_a.csv", base_a - 1),
        _write_nocs(tmp_path / "good_b.csv", base_b),
    ]
    out = tmp_path / "cmp.json"
    assert (
        main(
            [
                "compare",
                "--baseline",
                *map(str, base),
                "--candidate",
                *map(str, good),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert res["ships"] and res["sets"][0]["diff"] == -1 and res["sets"][1]["diff"] == 0
    assert "passes" in capsys.readouterr().out
    # a large gain on a, bought with a click more on every object of b: better pooled, worse on b,
    # does not ship
    bad = [
        _write_nocs(tmp_path / "bad_a.csv", np.maximum(base_a - 6, 1)),
        _write_nocs(tmp_path / "bad_b.csv", base_b + 1),
    ]
    assert (
        main(
            [
                "compare",
                "--baseline",
                *map(str, base),
                "--candidate",
                *map(str, bad),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert res["pooled"]["high"] < 0 and res["sets"][1]["low"] > 0 and not res["ships"]
    # a better set a alone is not enough when the pooled gain is within noise: one object of 50 a
    # click better
    small = [_write_nocs(tmp_path / "small_a.csv", base_a - (np.arange(50) == 0)), base[1]]
    assert (
        main(
            [
                "compare",
                "--baseline",
                *map(str, base),
                "--candidate",
                *map(str, small),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert not json.loads(out.read_text())["ships"]


def test_compare_refuses_runs_of_different_objects(tmp_path):
    a = _write_nocs(tmp_path / "a.csv", [3, 4, 5])
    b = _write_nocs(tmp_path / "b.csv", [3, 4, 5], names=["x", "y", "z"])
    with pytest.raises(SystemExit, match="same objects"):
        main(["compare", "--baseline", str(a), "--candidate", str(b)])
    with pytest.raises(SystemExit, match="one --candidate"):
        main(["compare", "--baseline", str(a), str(a), "--candidate", str(a)])


def test_evaluate_in_worker_processes_gives_the_same_results(tiny_dataset, tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    assert main(["evaluate", str(tiny_dataset), "--max-clicks", "3", "--json", str(one)]) == 0
    assert (
        main(
            ["evaluate", str(tiny_dataset), "--max-clicks", "3", "--json", str(two), "--jobs", "2"]
        )
        == 0
    )
    assert json.loads(two.read_text())["jobs"] == 2
    # every object, in order
    assert two.with_suffix(".csv").read_text() == one.with_suffix(".csv").read_text()


def test_every_sub_command_errors_in_one_line(capsys):
    """Sub-commands registered by their packages (evaluation, train, benchmark, serve) are made by
    ``sub.add_parser``, of the ``spbox`` parser's class: a usage error is one line for each."""
    import argparse

    from napari_spbox.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {
        "segment",
        "evaluate",
        "plot",
        "compare",
        "plot-training",
        "train",
        "validate",
        "average",
        "benchmark",
        "serve-cvat",
    } <= set(sub.choices)
    for name in sub.choices:
        with pytest.raises(SystemExit) as exc:
            main([name, "--no-such-flag"])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1, (name, err)
        # a sub-command missing its required arguments says so itself; one without them leaves the
        # unknown flag to the spbox parser
        assert err.startswith(("spbox: error:", f"spbox {name}: error:")) and "--help)" in err


def test_parsing_a_command_loads_no_training_code_nor_torch():
    """The command line starts fast: registering every sub-command imports no torch, and neither
    does ``segment``'s parsing (its cmd function imports what it needs)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from napari_spbox.cli import build_parser\n"
        "build_parser().parse_args(['segment', 'a.png', '--click', '1,2'])\n"
        "names = ('torch', 'napari_spbox.train.loop', 'napari_spbox.train.data', "
        "'napari_spbox.evaluation.robot', 'napari_spbox.model')\n"
        "print([m for m in names if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
