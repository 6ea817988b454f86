"""spbox train: a tiny model learns, checkpoints resume, validation picks best.pt, DDP, iterative
clicks, augmentation."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from napari_spbox.model.network import build_network
from napari_spbox.model.weights import DEFAULT_WEIGHTS, WeightsError, load_model, save_weights


def test_tiny_model_loss_falls_on_simulated_clicks(tmp_path, disk_dataset):
    from napari_spbox.datasets import Item
    from napari_spbox.train.data import ClickSampleDataset, SuperpixelCache

    item = Item("a", disk_dataset / "img" / "disk.png", disk_dataset / "gt" / "disk.png")
    ds = ClickSampleDataset([item], SuperpixelCache(tmp_path / "sp", 200), size=64, repeats=4)
    x = torch.stack([ds[i][0] for i in range(4)])
    y = torch.stack([ds[i][1] for i in range(4)])
    torch.manual_seed(0)
    net = build_network(pretrained=True).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9, nesterov=True)
    losses = []
    for _ in range(12):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])


def _tiny_folder(tmp_path, disk_image, n=3):
    """An ``img/`` + ``gt/`` training folder of ``n`` shifted copies of the disk image."""
    img, mask = disk_image
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True, exist_ok=True)
    (data / "gt").mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.fromarray(np.roll(img, 10 * k, axis=1)).save(data / "img" / f"{k}.png")
        Image.fromarray(np.roll(mask, 10 * k, axis=1).astype(np.uint8)).save(
            data / "gt" / f"{k}.png"
        )
    return data


def test_train_command_writes_resumable_checkpoint(tmp_path, disk_image):
    from napari_spbox.train.loop import TrainConfig, train

    data = _tiny_folder(tmp_path, disk_image)
    out = tmp_path / "run"
    tiny = {"batch_size": 2, "size": 64, "val_objects": 0, "progress": False, "min_area": 100}
    ckpt = train(TrainConfig([data], out, epochs=1, p_boxed=0.5, **tiny))
    assert (
        ckpt.is_file()
        and (out / "weights.pt").is_file()
        and (out / "log.csv").read_text().count("\n") == 2
    )
    assert not (out / "best.pt").exists()  # no validation, nothing to call best
    assert not (out / "weights_e1.pt").exists()
    train(TrainConfig([data], out, epochs=2, resume=ckpt, p_boxed=0.5, keep_epochs=True, **tiny))
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    assert load_model(out / "weights.pt") is not None
    kept = load_model(
        out / "weights_e2.pt"
    ).state_dict()  # --keep-epochs: each epoch's weights stay
    # how the kept file was made
    recipe = json.loads((out / "weights_e2.json").read_text())["recipe"]
    assert (
        recipe["init"] == "imagenet"
        and recipe["resumed_from"] == str(ckpt)
        and recipe["boxed"] == 0.5
    )
    assert recipe["epochs_planned"] == 2 and recipe["device"] == "cpu"
    log = (out / "log.csv").read_text()
    # a fresh run would mix the two logs
    with pytest.raises(ValueError, match="holds another training run"):
        train(TrainConfig([data], out, epochs=1, **tiny))
    assert (out / "log.csv").read_text() == log
    last = load_model(out / "weights.pt").state_dict()
    assert all(torch.equal(kept[k], last[k]) for k in last)


def test_excluded_images_are_never_trained_on(tmp_path, disk_image, tiny_training):
    from napari_spbox.train.loop import TrainConfig, train

    data = _tiny_folder(tmp_path, disk_image)
    (tmp_path / "kept_apart.txt").write_text("# a confirmation slice\n0.png\n\n2.png\n")
    train(TrainConfig([data], tmp_path / "run", epochs=1, repeats=2, **tiny_training))
    train(
        TrainConfig(
            [data],
            tmp_path / "run_excl",
            epochs=1,
            repeats=2,
            exclude_images=tmp_path / "kept_apart.txt",
            **tiny_training,
        )
    )
    card = json.loads((tmp_path / "run_excl" / "weights.json").read_text())
    full = json.loads((tmp_path / "run" / "weights.json").read_text())
    # one object of three, two samples of it: one batch of two, where all three made three
    assert (card["steps"], full["steps"]) == (1, 3)
    assert card["recipe"]["exclude_images"] == str(tmp_path / "kept_apart.txt")
    (tmp_path / "typo.txt").write_text("O.png\n")  # names no training image: refused, not ignored
    with pytest.raises(ValueError, match="none of the 1 image names"):
        train(
            TrainConfig(
                [data], tmp_path / "typo", exclude_images=tmp_path / "typo.txt", **tiny_training
            )
        )
    (tmp_path / "all.txt").write_text("0.png\n1.png\n2.png\n")
    with pytest.raises(ValueError, match="excludes every training image"):
        train(
            TrainConfig(
                [data], tmp_path / "run_all", exclude_images=tmp_path / "all.txt", **tiny_training
            )
        )


def test_validate_command_clicks_with_the_spot_the_weights_card_names(
    tmp_path, disk_image, monkeypatch
):
    """``spbox validate`` scores weights with their card's click spot (the microscopy weights' 1
    px), as evaluate and the front-ends run them; ``--click-radius`` overrides it."""
    from napari_spbox.cli import main
    from napari_spbox.core import predictor as core
    from napari_spbox.model import inference

    radii = set()

    def enforcing(prob, sp, session, radius=core.CLICK_RADIUS):
        radii.add(radius)
        return core.enforce_clicks(prob, sp, session, radius)

    monkeypatch.setattr(inference, "enforce_clicks", enforcing)
    data = _tiny_folder(tmp_path, disk_image, n=30)
    w = save_weights(load_model(), tmp_path / "w.pt", {"input_size": 320, "click_radius": 1})
    for extra, expected in (([], 1), (["--click-radius", "2"], 2)):
        radii.clear()
        report = tmp_path / f"val{expected}.json"
        args = ["validate", str(w), "--data", str(data), "--objects", "1", "--json", str(report)]
        assert main(args + extra) == 0
        assert radii == {expected}
        assert json.loads(report.read_text())[0]["click_radius"] == expected


def test_frozen_batch_norm_keeps_its_statistics_while_the_rest_learns(
    tmp_path, disk_image, tiny_training
):
    from napari_spbox.train.loop import TrainConfig, train

    data = _tiny_folder(tmp_path, disk_image)
    init = save_weights(build_network(pretrained=False), tmp_path / "init.pt")
    start = load_model(init).state_dict()
    # iterative clicks put the model in eval mode and back: BatchNorm must stay frozen through that
    # too
    ckpt = train(
        TrainConfig(
            [data],
            tmp_path / "run",
            epochs=1,
            init=init,
            freeze_bn=True,
            p_iterative=1.0,
            lr=0.05,
            **tiny_training,
        )
    )
    end = torch.load(ckpt, weights_only=True)["model"]
    assert (
        json.loads((tmp_path / "run" / "weights.json").read_text())["recipe"]["freeze_bn"] is True
    )
    bn = [
        n
        for n, m in build_network(pretrained=False).named_modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    ]
    assert bn
    for name in bn:
        for key in ("running_mean", "running_var", "weight", "bias"):
            assert torch.equal(end[f"{name}.{key}"], start[f"{name}.{key}"]), f"{name}.{key} moved"
    convs = [k for k in start if k.endswith(".weight") and start[k].dim() == 4]
    assert any(not torch.equal(end[k], start[k]) for k in convs)


def test_weights_run_with_the_guidance_their_card_names(tmp_path):
    from napari_spbox.model.inference import SPBoxPredictor

    path = save_weights(build_network(pretrained=False), tmp_path / "eu.pt", {"variant": "eu"})
    assert SPBoxPredictor(weights=path, backend="torch").variant == "eu"
    assert SPBoxPredictor(weights=path, variant="eu", backend="torch").variant == "eu"
    with pytest.raises(WeightsError, match="eu.pt.*'eu'.*not 'spbox'"):
        SPBoxPredictor(weights=path, variant="spbox", backend="torch")
    # no card: the default or as told
    bare = save_weights(build_network(pretrained=False), tmp_path / "bare.pt")
    assert SPBoxPredictor(weights=bare, backend="torch").variant == "spbox"
    assert SPBoxPredictor(weights=bare, variant="dt", backend="torch").variant == "dt"
    assert SPBoxPredictor(backend="torch").variant == "spbox"  # the shipped card


def test_weights_run_at_the_side_their_card_names(tmp_path, disk_image):
    """Weights trained with ``--size 96`` see a 96 x 96 window unless told otherwise; a bad card is
    named."""
    from napari_spbox.core.protocol import Session
    from napari_spbox.model.inference import SPBoxPredictor

    path = save_weights(build_network(pretrained=False), tmp_path / "w96.pt", {"input_size": 96})
    pred = SPBoxPredictor(weights=path, backend="torch")
    seen = []
    runner = pred.runner
    pred.runner = lambda x: seen.append(tuple(x.shape[-2:])) or runner(x)
    img, _ = disk_image
    pred.set_image(img)
    s = Session(img.shape[:2], strict=False)
    s.add_click(80, 100, True)
    s.add_click(80, 150, False)
    pred.predict(s)
    assert seen == [(96, 96)]
    # an explicit side wins
    assert SPBoxPredictor(weights=path, size=128, backend="torch").size == 128
    bare = save_weights(build_network(pretrained=False), tmp_path / "bare.pt")
    assert SPBoxPredictor(weights=bare, backend="torch").size == 320
    assert SPBoxPredictor(backend="torch").size == 320  # the shipped card
    bad = save_weights(
        build_network(pretrained=False), tmp_path / "bad.pt", {"input_size": "large"}
    )
    with pytest.raises(WeightsError, match="bad.pt.*'large'"):
        SPBoxPredictor(weights=bad, backend="torch")


def test_best_weights_follow_the_validation_noc(tmp_path):
    from napari_spbox.train.checkpoints import _improves

    card = tmp_path / "best.json"
    assert _improves({"noc@90": 9.0, "noc@85": 8.0}, card)  # first validated epoch
    card.write_text(json.dumps({"validation": {"noc@90": 9.0, "noc@85": 8.0}}))
    assert _improves({"noc@90": 8.5, "noc@85": 8.2}, card)
    assert _improves({"noc@90": 9.0, "noc@85": 7.9}, card)  # tie on NoC@90, better NoC@85
    assert not _improves({"noc@90": 9.0, "noc@85": 8.0}, card)
    assert not _improves({"noc@90": 9.4, "noc@85": 6.0}, card)
    assert not _improves({}, card)
    # a run resumed with --val-pipeline scores 20 pipeline clicks: not comparable with the raw
    # 10-click best
    card.write_text(json.dumps({"validation": {"noc@90": 9.0, "noc@85": 8.0, "max_clicks": 10}}))
    assert _improves({"noc@90": 12.0, "noc@85": 10.0, "max_clicks": 20, "pipeline": True}, card)
    assert not _improves({"noc@90": 12.0, "noc@85": 10.0, "max_clicks": 10}, card)


def test_pipeline_validation_scores_the_masks_a_user_gets(tmp_path, disk_image):
    from napari_spbox.evaluation.metrics import summarise
    from napari_spbox.evaluation.robot import evaluate
    from napari_spbox.model.inference import SPBoxPredictor
    from napari_spbox.train.data import training_items
    from napari_spbox.train.validation import validate

    items = training_items([_tiny_folder(tmp_path, disk_image, n=2)])
    model = build_network(pretrained=False)
    raw = validate(model, items, 5, "spbox", "cpu", progress=False)
    full = validate(model, items, 5, "spbox", "cpu", progress=False, pipeline=True)
    assert model.training  # validation leaves the model as it found it
    # what the default predictor (the one users and `spbox evaluate` get) scores on the same objects
    user = summarise(
        evaluate(SPBoxPredictor(model=model.eval()), items, max_clicks=5, progress=False), 5
    )
    assert full["pipeline"] is True and "pipeline" not in raw
    assert (full["noc@90"], full["miou5"]) == (
        round(user["noc@90"], 3),
        round(user["miou_per_click"][4], 4),
    )
    assert full["miou5"] != raw["miou5"]
    # spread over worker processes (training with --workers N), the same objects score the same
    assert validate(model, items, 5, "spbox", "cpu", progress=False, pipeline=True, jobs=2) == full


def test_train_runs_unchanged_under_torchrun(tmp_path, disk_image):
    import os
    import subprocess
    import sys
    from pathlib import Path

    img, mask = disk_image
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    (data / "gt").mkdir(parents=True)
    for k in range(4):
        Image.fromarray(np.roll(img, 8 * k, axis=1)).save(data / "img" / f"{k}.png")
        Image.fromarray(np.roll(mask, 8 * k, axis=1).astype(np.uint8)).save(
            data / "gt" / f"{k}.png"
        )
    out = tmp_path / "run"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun),
        "--nproc_per_node",
        "2",
        "-m",
        "napari_spbox.cli",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--size",
        "64",
        "--val-objects",
        "0",
        "--threads",
        "1",
        "--union",
        "0.5",
        "--keep-epochs",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    # two ranks of 2 objects each, batch 2: one step per rank, one log row written by rank 0
    assert (out / "log.csv").read_text().splitlines()[1].startswith("1,1,")
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 1
    assert (out / "weights_e1.pt").is_file()  # the command line's --keep-epochs reached train()


def _one_object_dataset(tmp_path, disk_image):
    """8 simulated click sets at 64x64 of the disk image, saved as files like a user's data."""
    from napari_spbox.datasets import Item
    from napari_spbox.train.data import ClickSampleDataset, SuperpixelCache

    img, mask = disk_image
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "m.png")
    return ClickSampleDataset(
        [Item("a", tmp_path / "a.png", tmp_path / "m.png")],
        SuperpixelCache(tmp_path / "sp", 200),
        size=64,
        repeats=8,
    )


def test_worker_processes_draw_each_epochs_own_samples(tmp_path, disk_image):
    """With ``--workers`` the batches of epoch 2 are epoch 2's draws (new click sets and crops, and
    the ones an iterative error click redraws), not a repeat of epoch 1's."""
    from napari_spbox.train.loop import _loader

    ds = _one_object_dataset(tmp_path, disk_image)
    loader = _loader(ds, batch_size=8, sampler=None, workers=1, seed=0)
    batches = []
    for epoch in (0, 1):
        ds.epoch = epoch
        x, y, idx = next(iter(loader))
        for b, i in enumerate(idx.tolist()):
            # the main process's draw
            assert torch.equal(x[b], ds[i][0]) and torch.equal(y[b], ds[i][1])
        batches.append(dict(zip(idx.tolist(), x)))
    assert any(not torch.equal(batches[0][i], batches[1][i]) for i in batches[0])


def test_iterative_training_click_lands_on_the_error(tmp_path, disk_image):
    mask = disk_image[1]
    ds = _one_object_dataset(tmp_path, disk_image)
    for i in range(8):
        x, _y, idx = ds[i]
        if bool((x[3:] == 1).all()):
            continue  # guidance dropped: no click is added to such samples
        extra = []
        # a prediction that misses the whole object -> a positive click on it
        empty = torch.zeros(64, 64)
        new = ds.with_error_click(idx, empty, extra)
        assert new is not None and len(extra) == 1 and extra[0][2] is True
        r, c, _ = extra[0]
        assert mask[r, c]
        assert not torch.equal(new[3], x[3])  # S+ changed
        assert torch.equal(new[:3], x[:3])  # same crop, flip and colours
        return
    raise AssertionError("every sample had its guidance dropped")


def test_error_clicks_in_worker_processes_match_the_serial_ones(tmp_path, disk_image):
    from napari_spbox.train.iterative import _add_error_clicks, _error_click_pool

    ds = _one_object_dataset(tmp_path, disk_image)
    ds.epoch = (
        3  # the workers must follow the training process's epoch, not the one they were forked with
    )
    batch = [ds[i] for i in range(8)]
    x, idx = torch.stack([b[0] for b in batch]), torch.tensor([b[2] for b in batch])
    torch.manual_seed(0)
    # untrained: errors everywhere to click on
    model = build_network("efficientnet_lite0", pretrained=False)
    serial = _add_error_clicks(model, ds, x.clone(), idx, "cpu", 2)
    ds.epoch = 0
    pool = _error_click_pool(ds, 2)
    ds.epoch = 3
    try:
        pooled = _add_error_clicks(model, ds, x.clone(), idx, "cpu", 2, pool)
    finally:
        pool.terminate()
    assert not torch.equal(serial, x)  # clicks were added
    assert torch.equal(serial, pooled)


def test_copy_paste_puts_the_object_on_another_images_background(tmp_path, disk_image):
    from napari_spbox.core.image import to_rgb_float
    from napari_spbox.datasets import Item
    from napari_spbox.train.data import ClickSampleDataset, SuperpixelCache, paste_object

    img, mask = disk_image
    stripes = np.zeros((80, 100, 3), np.uint8)  # another size: it is resized to the object's image
    stripes[:, (np.arange(100) // 5) % 2 == 0] = (0, 255, 0)
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "m.png")
    Image.fromarray(stripes).save(tmp_path / "b.png")
    Image.fromarray(np.full((80, 100), 255, np.uint8)).save(tmp_path / "mb.png")

    rgb, bg = to_rgb_float(img), to_rgb_float(stripes)
    comp = paste_object(rgb, mask, bg)
    inner = ndimage.binary_erosion(mask, iterations=5)  # beyond the feathered seam
    outer = ~ndimage.binary_dilation(mask, iterations=3)
    np.testing.assert_allclose(comp[inner], rgb[inner], atol=1e-3)  # the object is untouched
    assert comp[outer][:, 1].max() > 0.9 and rgb[outer][:, 1].max() < 0.5  # green stripes around it

    items = [
        Item("a", tmp_path / "a.png", tmp_path / "m.png"),
        Item("b", tmp_path / "b.png", tmp_path / "mb.png"),
    ]
    ds = ClickSampleDataset(items, SuperpixelCache(tmp_path / "sp", 200), size=64, p_paste=1.0)
    drawn, mask_drawn, sp = ds._draw(0)[:3]
    assert drawn.shape == rgb.shape and np.array_equal(mask_drawn, mask)
    assert drawn[outer][:, 1].max() > 0.9  # sample 0 (the disk) shows the stripes
    assert sp.labels.shape == mask.shape and not np.array_equal(sp.labels, ds._load(0)[2].labels)
    again = ds._draw(0)  # iterative training redraws a sample: the very same composite and clicks
    assert again[0] is drawn and again[4].clicks == ds._draw(0)[4].clicks
    plain = ClickSampleDataset(items, SuperpixelCache(tmp_path / "sp", 200), size=64)
    assert np.array_equal(plain._draw(0)[0], rgb)  # off by default


def test_colour_jitter_sometimes_changes_the_hue_and_never_the_guidance():
    """A red cloth must not always look red to the network (GrabCut's teddy): the jitter shuffles
    the RGB channels now and then, and leaves S+, S-, G as they are."""
    from napari_spbox.train.data import CHANNEL_SHUFFLE_P, _colour_jitter

    x = torch.zeros(6, 8, 8)
    # red image, distinct guidance
    x[0], x[3:] = (
        0.8,
        torch.linspace(-1, 1, 3 * 64).reshape(3, 8, 8),
    )
    rng = np.random.default_rng(0)
    outs = [_colour_jitter(x.clone(), rng) for _ in range(200)]
    not_red = np.mean([int(o[:3].mean((1, 2)).argmax()) != 0 for o in outs])
    assert all(torch.equal(o[3:], x[3:]) for o in outs)
    # 4 of the 6 orders move red: ~P * 2/3
    assert 0.5 * CHANNEL_SHUFFLE_P < not_red < CHANNEL_SHUFFLE_P


def test_union_joins_the_objects_that_touch_and_leaves_others_alone(tmp_path):
    """A rider and a horse annotated apart: with ``p_union`` the sample's object is both (DAVIS's
    masks are such groups); an object across the image never joins, and without ``p_union`` each
    stays alone."""
    from napari_spbox.datasets import Item
    from napari_spbox.train.data import ClickSampleDataset, SuperpixelCache

    rng = np.random.default_rng(0)
    img = (rng.uniform(0, 60, (80, 120, 3))).astype(np.uint8)
    ids = np.zeros((80, 120), np.uint8)
    # 1 and 2 one pixel apart, 3 far off
    ids[20:50, 10:30], ids[20:50, 31:50], ids[20:50, 90:110] = (
        1,
        2,
        3,
    )
    for k, colour in ((1, 200), (2, 120), (3, 250)):
        img[ids == k] = colour
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(ids).save(tmp_path / "m.png")
    items = [
        Item(f"a#{k}", tmp_path / "a.png", tmp_path / "m.png", object_value=k) for k in (1, 2, 3)
    ]

    ds = ClickSampleDataset(items, SuperpixelCache(tmp_path / "sp", 100), size=64, p_union=1.0)
    assert np.array_equal(ds._draw(0)[1], (ids == 1) | (ids == 2))
    assert np.array_equal(ds._draw(1)[1], (ids == 1) | (ids == 2))
    assert np.array_equal(ds._draw(2)[1], ids == 3)
    plain = ClickSampleDataset(items, SuperpixelCache(tmp_path / "sp", 100), size=64)
    assert np.array_equal(plain._draw(0)[1], ids == 1)


def test_validate_command_scores_kept_epochs_as_training_did(
    tmp_path, disk_image, capsys, monkeypatch
):
    """A GPU run keeps its epochs and skips validation; ``spbox validate`` later gives the figures
    that training's own validation would have logged for the same weights and objects."""
    import csv

    from napari_spbox.cli import main
    from napari_spbox.model.inference import SPBoxPredictor
    from napari_spbox.train.loop import TrainConfig, train
    from napari_spbox.train.validation import held_apart

    data = _tiny_folder(tmp_path, disk_image, n=30)
    assert held_apart([data], 100)[1]  # some images fall in the held-apart 5%
    out = tmp_path / "run"
    sides = []
    forward = SPBoxPredictor.forward

    def spy(self, x, window=None):
        sides.append(x.shape[-1])
        return forward(self, x, window)

    monkeypatch.setattr(SPBoxPredictor, "forward", spy)
    train(
        TrainConfig(
            [data],
            out,
            epochs=1,
            batch_size=2,
            size=288,
            val_objects=1,
            progress=False,
            min_area=100,
            keep_epochs=True,
            max_steps=1,
            init=DEFAULT_WEIGHTS,
            lr=1e-4,
        )
    )
    assert sides and set(sides) == {288}  # validated at the side it trains at
    logged = next(csv.DictReader((out / "log.csv").open()))
    # a network that segments the disk: the figures mean something
    assert float(logged["val_noc90"]) < 10
    report = tmp_path / "val.json"
    assert (
        main(
            [
                "validate",
                str(out / "weights_e1.pt"),
                "--data",
                str(data),
                "--objects",
                "1",
                "--raw",
                "--json",
                str(report),
                "--csv-dir",
                str(tmp_path / "per_object"),
            ]
        )
        == 0
    )
    got = json.loads(report.read_text())[0]
    assert got["objects"] == 1 and got["max_clicks"] == 10
    # inside the folder asked for, though the weights' path is absolute
    assert Path(got["csv"]).parent == tmp_path / "per_object"
    with open(got["csv"]) as f:
        rows = list(csv.DictReader(f))  # per object, for spbox compare
    assert len(rows) == 1 and rows[0]["name"] and int(rows[0]["noc@90"]) == got["noc@90"]
    assert set(sides) == {288}  # and so is the kept file: its card names the side
    # the kept file is fp16 and training validated its fp32 model: mIoU may move in the 4th decimal,
    # clicks not
    assert (got["noc@85"], got["noc@90"]) == (
        float(logged["val_noc85"]),
        float(logged["val_noc90"]),
    )
    assert "NoC@90" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no held-apart objects"):
        main(
            [
                "validate",
                str(out / "weights_e1.pt"),
                "--data",
                str(_tiny_folder(tmp_path / "one", disk_image, n=1)),
            ]
        )


def test_previous_mask_training_feeds_the_networks_own_mask_and_resumes_only_as_started(
    tmp_path, disk_image
):
    """``--prev-mask``: a drawn sample's previous mask is empty, after an error click it is the mask
    the network gave before that click (in the sample's own flipped frame); training from 6-channel
    weights starts from them and learns the new filters; a run resumed without the flag is refused
    by name."""
    from napari_spbox.datasets import Item
    from napari_spbox.train.data import ClickSampleDataset, SuperpixelCache
    from napari_spbox.train.loop import TrainConfig, train

    img, mask = disk_image
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "m.png")
    ds = ClickSampleDataset(
        [Item("a", tmp_path / "a.png", tmp_path / "m.png")],
        SuperpixelCache(tmp_path / "sp", 200),
        size=64,
        repeats=8,
        prev_mask=True,
    )
    checked = 0
    for i in range(8):
        x, _, _ = ds[i]
        assert x.shape[0] == 7 and bool((x[6] == -1).all())  # empty as drawn
        if bool((x[3:6] == 1).all()):
            # dropped guidance: no click added
            assert ds.with_error_click(i, torch.zeros(64, 64), []) is None
            continue
        prob = torch.zeros(64, 64)
        prob[20:40, 10:30] = 0.9  # a wrong blob: the next click is a correction
        new = ds.with_error_click(i, prob, [])
        assert torch.equal(new[6], torch.where(prob > 0.49, 1.0, -1.0)) and torch.equal(
            new[:3], x[:3]
        )
        checked += 1
    assert checked

    data = _tiny_folder(tmp_path, disk_image)
    init = save_weights(build_network(pretrained=False), tmp_path / "init.pt")
    out = tmp_path / "run"
    tiny = {"batch_size": 2, "size": 64, "val_objects": 0, "progress": False, "min_area": 100}
    ckpt = train(
        TrainConfig(
            [data],
            out,
            epochs=1,
            init=init,
            p_iterative=1.0,
            prev_mask=True,
            lr=0.05,
            max_iterative_clicks=3,
            iterative_decay=0.5,
            **tiny,
        )
    )
    trained = load_model(out / "weights.pt")
    assert trained.in_channels == 7 and trained.encoder._conv_stem.weight[:, 6].abs().sum() > 0
    recipe = json.loads((out / "weights.json").read_text())["recipe"]
    assert recipe["prev_mask"] is True and recipe["iterative_decay"] == 0.5
    with pytest.raises(ValueError, match="trained with --prev-mask"):
        train(TrainConfig([data], out, epochs=2, resume=ckpt, **tiny))


def test_previous_mask_filters_learn_faster_than_the_rest():
    """The zero-started previous-mask filters get ``PREV_MASK_LR_SCALE`` times their gradient;
    nothing else does."""
    from napari_spbox.model.network import add_prev_mask_input
    from napari_spbox.train.model_setup import PREV_MASK_LR_SCALE, _speed_up_prev_mask_filters

    torch.manual_seed(0)
    plain = add_prev_mask_input(build_network().train())
    fast = add_prev_mask_input(build_network().train())
    fast.load_state_dict(plain.state_dict())
    _speed_up_prev_mask_filters(fast)
    x = torch.randn(2, 7, 64, 64)
    for net in (plain, fast):
        net(x).mean().backward()
    g, h = plain.encoder._conv_stem.weight.grad, fast.encoder._conv_stem.weight.grad
    assert g[:, 6].abs().sum() > 0
    assert torch.allclose(h[:, 6], g[:, 6] * PREV_MASK_LR_SCALE) and torch.equal(h[:, :6], g[:, :6])


def test_error_click_counts_decay_as_asked_and_uniform_stays_as_before():
    """``--iterative-decay q``: each further count q times as likely; 1 repeats the old uniform
    draws exactly."""
    from napari_spbox.train.schedule import error_click_rounds

    old, new = np.random.default_rng(3), np.random.default_rng(3)
    assert [int(old.integers(1, 11)) for _ in range(50)] == [
        error_click_rounds(new, 10) for _ in range(50)
    ]

    rng = np.random.default_rng(0)
    draws = np.array([error_click_rounds(rng, 10, 0.8) for _ in range(20000)])
    assert draws.min() == 1 and draws.max() == 10
    freq = np.bincount(draws, minlength=11)[1:] / len(draws)
    expected = 0.8 ** np.arange(10) / (0.8 ** np.arange(10)).sum()
    assert np.abs(freq - expected).max() < 0.01
    # the share of early corrections the option is for
    assert abs((draws <= 3).mean() - 0.547) < 0.015
    with pytest.raises(ValueError, match="iterative decay"):
        error_click_rounds(rng, 10, 0.0)


def test_train_config_holds_the_options_and_checks_the_decay_before_any_work(tmp_path, monkeypatch):
    """``train(TrainConfig(...))`` is the entry point; the keyword call from before the config
    still makes the same config; a bad ``iterative_decay`` is refused when the config is made."""
    import dataclasses

    from napari_spbox.train import loop
    from napari_spbox.train.data import MIN_AREA
    from napari_spbox.train.loop import TrainConfig

    config = TrainConfig([tmp_path], tmp_path / "run")
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert defaults["repeats"] == 2 and defaults["val_clicks"] == 10
    assert defaults["min_area"] == MIN_AREA
    assert config.size == 320 and config.lr is None and config.iterative_decay == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3
    with pytest.raises(ValueError, match=r"iterative decay must be in \(0, 1\], got 0"):
        TrainConfig([tmp_path], tmp_path / "run", iterative_decay=0)
    with pytest.raises(ValueError, match="iterative decay"):  # the old call, checked as it was
        loop.train([tmp_path], tmp_path / "run", iterative_decay=1.5)
    assert not (tmp_path / "run").exists()  # refused before any work

    monkeypatch.setattr(loop, "_train", lambda c: c)  # the run itself is not what this checks
    old_call = loop.train([tmp_path], tmp_path / "run", epochs=3, p_iterative=0.5)
    assert old_call == TrainConfig([tmp_path], tmp_path / "run", epochs=3, p_iterative=0.5)
    assert loop.train(config) is config
    with pytest.raises(TypeError, match="TrainConfig"):
        loop.train(config, epochs=3)


def test_train_command_line_makes_the_config_it_always_passed():
    """Every ``spbox train`` option lands on its :class:`TrainConfig` field; the others keep
    their defaults."""
    from napari_spbox.cli import build_parser
    from napari_spbox.train.cli import train_config
    from napari_spbox.train.loop import TrainConfig

    args = build_parser().parse_args(["train", "--data", "a", "b", "--out", "o"])
    # the command line's own defaults
    assert train_config(args) == TrainConfig(["a", "b"], "o", repeats=1, size=320)
    argv = [
        "train",
        "--data",
        "a",
        "--out",
        "o",
        "--arch",
        "resnet101",
        "--epochs",
        "3",
        "--batch-size",
        "4",
        "--lr",
        "0.1",
        "--size",
        "96",
        "--repeats",
        "2",
        "--loss",
        "nfl",
        "--variant",
        "eu",
        "--init",
        "w.pt",
        "--resume",
        "o/last.pt",
        "--seed",
        "7",
        "--workers",
        "2",
        "--val-objects",
        "5",
        "--device",
        "cpu",
        "--max-steps",
        "9",
        "--cache-dir",
        "c",
        "--threads",
        "1",
        "--iterative",
        "0.5",
        "--iterative-clicks",
        "4",
        "--iterative-decay",
        "0.8",
        "--copy-paste",
        "0.1",
        "--boxed",
        "0.2",
        "--union",
        "0.3",
        "--keep-epochs",
        "--prev-mask",
        "--freeze-bn",
        "--val-pipeline",
        "--outline-head",
        "--boundary-weight",
        "0.5",
        "--exclude-images",
        "x.txt",
    ]
    assert train_config(build_parser().parse_args(argv)) == TrainConfig(
        ["a"],
        "o",
        arch="resnet101",
        epochs=3,
        batch_size=4,
        lr=0.1,
        size=96,
        repeats=2,
        loss="nfl",
        variant="eu",
        init="w.pt",
        resume="o/last.pt",
        seed=7,
        workers=2,
        val_objects=5,
        device="cpu",
        max_steps=9,
        cache_dir="c",
        threads=1,
        p_iterative=0.5,
        max_iterative_clicks=4,
        iterative_decay=0.8,
        p_paste=0.1,
        p_boxed=0.2,
        p_union=0.3,
        keep_epochs=True,
        prev_mask=True,
        freeze_bn=True,
        val_pipeline=True,
        outline_head=True,
        boundary_weight=0.5,
        exclude_images="x.txt",
    )


def test_loop_still_exports_the_names_it_had_before_the_split():
    from napari_spbox.train import (
        checkpoints,
        iterative,
        loop,
        losses,
        model_setup,
        schedule,
        validation,
    )

    moved = {
        checkpoints: ["_log_epoch", "_improves", "write_log_json"],
        iterative: [
            "_add_error_clicks",
            "_error_click_on",
            "_pool_init",
            "_error_click",
            "_error_click_pool",
        ],
        losses: ["normalized_focal_loss"],
        model_setup: [
            "PREV_MASK_LR_SCALE",
            "_speed_up_prev_mask_filters",
            "_batch_norms",
            "_train_mode",
        ],
        schedule: ["error_click_rounds", "_check_decay"],
        validation: ["validate", "held_apart", "_filter_area"],
    }
    for module, names in moved.items():
        for name in names:
            assert getattr(loop, name) is getattr(module, name), name


def test_learning_rate_warms_up_then_decays_as_before():
    from napari_spbox.train.schedule import base_lr, learning_rate

    assert base_lr(8) == 0.01 * 8 * 1 / 8 and base_lr(16, 2) == 0.01 * 16 * 2 / 8
    for step in (0, 1, 150, 199, 200, 500, 998, 999, 1200):  # the loop's expression, as it was
        assert (
            learning_rate(0.02, step, 1000)
            == 0.02 * min(1.0, (step + 1) / 200) * (1 - min(step, 999) / 1000) ** 0.9
        )
    assert learning_rate(0.02, 0, 1000) == pytest.approx(0.02 / 200)
    assert learning_rate(0.02, 199, 10**9) == pytest.approx(0.02)  # warm at step 200
    assert 0 < learning_rate(0.02, 999, 1000) < learning_rate(0.02, 998, 1000)
