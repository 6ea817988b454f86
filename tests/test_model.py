"""The networks, weight files and cards, and the SPBox predictor's click path (backends, stages,
implied box)."""

import numpy as np
import pytest
import torch

from napari_spbox.model.network import build_network
from napari_spbox.model.weights import (
    WeightsError,
    average_weights,
    default_weights_path,
    ensemble_weights,
    load_model,
    save_weights,
)


@pytest.mark.parametrize("arch", ["efficientnet_lite0", "efficientnet_lite2"])
def test_lite_shapes_and_imagenet_weights_loaded(arch, tmp_path):
    """Every ImageNet tensor of the encoder is loaded (a stage table that did not match the
    package's state dict would raise), the RGB stem filters kept as they are and the guidance
    filters small; a saved file rebuilds the same architecture."""
    from napari_spbox.model.network import _imagenet_file

    torch.manual_seed(0)
    net = build_network(arch, pretrained=True).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 6, 96, 128))
    assert out.shape == (1, 1, 96, 128) and net.arch == arch
    imagenet = torch.load(_imagenet_file(arch), map_location="cpu", weights_only=True)
    stem = net.encoder._conv_stem.weight
    assert torch.equal(stem[:, :3], imagenet["_conv_stem.weight"])
    assert torch.equal(
        net.encoder._blocks[-1]._project_conv.weight,
        imagenet[f"_blocks.{len(net.encoder._blocks) - 1}._project_conv.weight"],
    )
    assert stem.shape[1] == 6 and stem[:, 3:].abs().mean() < 0.2 * stem[:, :3].abs().mean()
    again = load_model(save_weights(net, tmp_path / "w.pt"))
    assert again.arch == arch and again.encoder.channels == net.encoder.channels


def test_resnet101_output_stride_8_psp():
    net = build_network("resnet101").eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 6, 64, 64))
    assert out.shape == (1, 1, 64, 64)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_network("vgg")


def test_checkpoint_roundtrip_identical_outputs(tmp_path):
    torch.manual_seed(0)
    net = build_network().eval()
    for p in net.parameters():  # make every weight exactly representable in fp16
        p.data = p.data.half().float()
    for b in net.buffers():
        if b.is_floating_point():
            b.data = b.data.half().float()
    path = save_weights(net, tmp_path / "w.pt", {"epochs": 0})
    again = load_model(path)
    x = torch.randn(1, 6, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x), again(x))
    assert (tmp_path / "w.json").is_file()


def test_missing_and_corrupt_weights_name_the_file(tmp_path):
    with pytest.raises(WeightsError, match="not found.*nope.pt"):
        load_model(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="bad.pt"):
        load_model(bad)


def test_average_of_weights_files_is_their_mean_and_mismatches_are_named(tmp_path):
    """``spbox average``: a uniform soup of two fine-tunes is their parameter-wise mean, with both
    named on its card; files for another input side are refused, naming the file."""
    import json

    from napari_spbox.cli import main

    torch.manual_seed(0)
    a, b = build_network(pretrained=False), build_network(pretrained=False)
    with torch.no_grad():
        for p in b.parameters():
            # far apart, so the mean differs from either at fp16 precision
            p.add_(torch.randn_like(p))
    pa = save_weights(a, tmp_path / "a.pt", {"input_size": 320, "validation": {"noc@90": 9.0}})
    pb = save_weights(b, tmp_path / "b.pt", {"input_size": 320})
    out = tmp_path / "soup.pt"
    assert main(["average", str(out), str(pa), str(pb)]) == 0
    la, lb, soup = (load_model(p).state_dict() for p in (pa, pb, out))
    key = "encoder._conv_stem.weight"
    assert not torch.allclose(soup[key], la[key], atol=1e-2)
    assert torch.allclose(soup[key], (la[key] + lb[key]) / 2, atol=1e-2)
    card = json.loads(out.with_suffix(".json").read_text())
    # a member's validation figures are not the average's
    assert card["averaged_from"] == [str(pa), str(pb)] and "validation" not in card
    other = save_weights(b, tmp_path / "c.pt", {"input_size": 384})
    assert main(["average", str(tmp_path / "bad.pt"), str(pa), str(other)]) == 2
    assert not (tmp_path / "bad.pt").exists()
    with pytest.raises(WeightsError, match="c.pt"):
        average_weights([pa, other], tmp_path / "bad.pt")


def test_ensemble_file_runs_the_mean_of_its_members_and_refuses_mismatches(tmp_path):
    """``spbox average --ensemble``: networks from unrelated runs become one file whose output is
    the mean of theirs (not a weight average); members for another guidance variant are refused,
    naming the file."""
    import json

    from napari_spbox.cli import main

    torch.manual_seed(0)
    a, b = build_network().eval(), build_network().eval()
    pa = save_weights(a, tmp_path / "a.pt", {"input_size": 320, "variant": "spbox"})
    pb = save_weights(b, tmp_path / "b.pt", {"input_size": 320, "variant": "spbox"})
    out = tmp_path / "ens.pt"
    assert main(["average", "--ensemble", str(out), str(pa), str(pb)]) == 0
    ens, la, lb = load_model(out), load_model(pa), load_model(pb)
    x = torch.randn(1, 6, 64, 64)
    with torch.no_grad():
        ya, yb, y = la(x), lb(x), ens(x)
    # the members differ, so the mean is not either of them
    assert not torch.allclose(ya, yb, atol=1e-2)
    assert torch.allclose(y, (ya + yb) / 2, atol=1e-5)
    card = json.loads(out.with_suffix(".json").read_text())
    assert (
        card["arch"] == "ensemble"
        and card["ensemble_of"] == [str(pa), str(pb)]
        and card["variant"] == "spbox"
    )
    eu = save_weights(b, tmp_path / "eu.pt", {"input_size": 320, "variant": "eu"})
    with pytest.raises(WeightsError, match="eu.pt"):
        ensemble_weights([pa, eu], tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="already an ensemble"):
        ensemble_weights([out, pa], tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()


def test_previous_mask_input_starts_from_the_trained_network_and_round_trips(tmp_path):
    """``--prev-mask`` from 6-channel weights: the new channel's filters start at zero, so the
    7-channel network computes what the trained one did; its file reloads as 7 channels; ensembles
    and averages refuse to mix."""
    from napari_spbox.model.network import add_prev_mask_input

    torch.manual_seed(0)
    six = build_network().eval()
    seven = add_prev_mask_input(six).eval()
    x = torch.randn(1, 7, 64, 64)
    with torch.no_grad():
        assert torch.equal(six(x[:, :6]), seven(x))
    assert seven.in_channels == 7 and six.in_channels == 6
    # the mask's direct path to the stride-4 decoder learns from the first step, though its weights
    # start at zero
    seven.train()
    seven(torch.randn(2, 7, 64, 64)).mean().backward()
    assert seven.dec4[3].weight.grad[:, -1].abs().sum() > 0
    with torch.no_grad():
        seven.dec4[3].weight[:, -1] = 0.5
    seven.eval()
    other = x.clone()
    other[:, 6] = -other[:, 6]
    with torch.no_grad():
        assert not torch.allclose(seven(x), seven(other))
    path = save_weights(seven, tmp_path / "seven.pt")
    assert load_model(path).encoder._conv_stem.weight.shape[1] == 7
    six_path = save_weights(six, tmp_path / "six.pt")
    with pytest.raises(WeightsError, match="previous mask"):
        ensemble_weights([six_path, path], tmp_path / "ens.pt")
    with pytest.raises(WeightsError, match="input channels"):
        average_weights([six_path, path], tmp_path / "avg.pt")


def _prev_mask_weights(tmp_path):
    """The shipped network with a previous-mask input whose filters are not zero, so the mask
    changes the output."""
    from napari_spbox.model.network import add_prev_mask_input
    from napari_spbox.model.weights import read_card

    seven = add_prev_mask_input(load_model())
    with torch.no_grad():
        stem = seven.encoder._conv_stem.weight
        stem[:, 6] = stem[:, 3] * 2.0
    card = read_card()
    return save_weights(
        seven, tmp_path / "prev.pt", {"variant": card["variant"], "input_size": card["input_size"]}
    )


def test_predictor_feeds_the_mask_before_the_last_click_and_replays_unseen_states(
    tmp_path, disk_image
):
    """What a 7-channel network is given is the mask the user saw before the last click; a predictor
    that never saw the earlier states (a stateless CVAT request) replays them and gives the same
    mask as one that followed the clicks, and an undo gives back the mask from before."""
    from napari_spbox.core.protocol import Session
    from napari_spbox.model.inference import SPBoxPredictor

    img, mask = disk_image
    path = _prev_mask_weights(tmp_path)
    follow, fresh = SPBoxPredictor(path, backend="torch"), SPBoxPredictor(path, backend="torch")
    assert follow.reads_prev_mask
    for p in (follow, fresh):
        p.set_image(img)
    s = Session(mask.shape, strict=False)
    masks = []
    for row, col, positive in [(80, 100, True), (80, 150, False), (95, 115, False), (60, 90, True)]:
        s.add_click(row, col, positive)
        masks.append(follow.predict(s).mask)
    assert np.array_equal(follow.previous_mask(s) > 0.5, masks[-2])
    assert np.array_equal(fresh.predict(s).mask, masks[-1])
    s.undo()
    assert np.array_equal(follow.predict(s).mask, masks[-2])
    # the channel reaches the network: with another previous mask the network's output differs
    x_seen = follow.previous_mask(s)
    follow._masks[s.previous().key()] = 1.0 - x_seen
    assert not np.array_equal(follow.predict(s).prob, fresh.predict(s).prob)


def test_correction_mode_gives_the_network_the_mask_being_corrected(tmp_path, disk_image):
    """Correcting an existing mask: before the first click the previous mask is that mask, not one
    the network would draw from the box, and it changes what the first click gives; a propagated
    slice's box rectangle (core.propagation) is not taken for a mask."""
    from napari_spbox.core.propagation import next_session
    from napari_spbox.core.protocol import Session
    from napari_spbox.model.inference import SPBoxPredictor

    img, disk = disk_image
    earlier = disk.copy()
    earlier[80:, 100:] = False  # an earlier annotation that missed a quarter of the disk
    pred = SPBoxPredictor(_prev_mask_weights(tmp_path), backend="torch")
    pred.set_image(img)
    kept, box_only = (
        Session.from_mask(earlier, strict=False),
        Session.from_mask(earlier, strict=False, keep=False),
    )
    for s in (kept, box_only):
        s.add_click(100, 110, True)
    assert np.array_equal(pred.previous_mask(kept), earlier.astype(np.float32))
    assert np.array_equal(
        pred.previous_mask(box_only), pred.predict(box_only.previous()).mask.astype(np.float32)
    )
    assert not np.array_equal(pred.predict(kept).prob, pred.predict(box_only).prob)
    assert next_session(disk).start_mask is None


def test_shipped_weights_beat_untrained_network_on_grabcut():
    from pathlib import Path

    from napari_spbox.datasets import read_grabcut
    from napari_spbox.evaluation.robot import run_object
    from napari_spbox.model.inference import SPBoxPredictor

    assert default_weights_path().is_file(), "the package must ship its default weights"
    root = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "grabcut"
    trained = SPBoxPredictor()
    torch.manual_seed(0)
    untrained = SPBoxPredictor(model=build_network(pretrained=True).eval())
    after5 = {"trained": [], "untrained": []}
    # six objects: one object's IoU at a given click swings between weights
    for item in read_grabcut(root)[:6]:
        image, gt, ignore = item.load()
        after5["trained"].append(run_object(trained, image, gt, ignore, max_clicks=5)["ious"][-1])
        after5["untrained"].append(
            run_object(untrained, image, gt, ignore, max_clicks=5)["ious"][-1]
        )
    # measured (mean IoU after 5 clicks): stop-26 weights 0.87, stop-12 weights 0.80, untrained 0.40
    assert np.mean(after5["trained"]) > 0.75
    assert np.mean(after5["trained"]) > np.mean(after5["untrained"]) + 0.3


def _coffee_session():
    from skimage import data

    from napari_spbox.core.protocol import Session

    img = data.coffee()
    session = Session(img.shape[:2], strict=False)
    session.add_click(150, 300, True)
    session.add_click(350, 470, False)
    session.add_click(240, 200, True)
    return img, session


@pytest.mark.parametrize("backend", ["fused", "onnx"])
def test_fast_backends_give_the_same_mask_as_plain_torch(backend):
    from napari_spbox.model._runtime import onnx_available
    from napari_spbox.model.inference import SPBoxPredictor

    if backend == "onnx" and not onnx_available():
        pytest.fail("onnxruntime/onnxscript are dependencies of napari-spbox and must be installed")
    img, session = _coffee_session()
    probs = {}
    for b in ("torch", backend):
        # the network's output: GrabCut refinement would amplify a 1e-6 difference at the threshold
        p = SPBoxPredictor(backend=b, refine=False)
        assert p.backend == b
        p.set_image(img)
        probs[b] = p.predict(session).prob
    assert np.abs(probs[backend] - probs["torch"]).max() < 1e-3
    assert (probs["torch"] > 0.49).sum() > 1000  # a real object, not two empty maps agreeing


def test_onnx_graph_is_exported_once_and_reused(monkeypatch, tmp_path):
    from napari_spbox.model import _runtime
    from napari_spbox.model.inference import SPBoxPredictor

    monkeypatch.setenv("SPBOX_CACHE_DIR", str(tmp_path))
    calls = []
    real = _runtime.export_onnx
    monkeypatch.setattr(_runtime, "export_onnx", lambda *a, **k: calls.append(a) or real(*a, **k))
    SPBoxPredictor(backend="onnx")
    SPBoxPredictor(backend="onnx")
    assert len(calls) == 1 and len(list(tmp_path.glob("spbox-*.onnx"))) == 1


def test_backend_errors_are_clear(monkeypatch):
    from napari_spbox.model import _runtime
    from napari_spbox.model.inference import SPBoxPredictor

    with pytest.raises(ValueError, match="unknown backend"):
        SPBoxPredictor(backend="tensorrt")
    monkeypatch.setattr(_runtime, "onnx_available", lambda: False)
    with pytest.raises(RuntimeError, match="pip install"):
        SPBoxPredictor(backend="onnx")
    assert SPBoxPredictor(backend="auto").backend == "fused"  # auto falls back quietly


def test_every_click_changes_the_mask_where_it_was_made(disk_image):
    """Click consistency: a negative click inside the object removes its superpixel, a positive one
    outside adds it, even where the network alone would not follow the click."""
    from napari_spbox.core.protocol import Session
    from napari_spbox.model.inference import SPBoxPredictor

    img, mask = disk_image
    p, raw = SPBoxPredictor(refine=False), SPBoxPredictor(click_consistency=False, refine=False)
    refined = SPBoxPredictor()  # edge refinement must not undo a click either
    for pred in (p, raw, refined):
        pred.set_image(img)
    s = Session(mask.shape, strict=False)
    s.add_click(80, 100, True)
    s.add_click(80, 150, False)  # sets the box
    before = p.predict(s).mask
    s.add_click(90, 110, False)  # negative inside the disk
    s.add_click(10, 10, True)  # positive far outside it
    # weights that read the previous mask: both get the same one
    raw.previous_mask = p.previous_mask
    after, unforced = p.predict(s).mask, raw.predict(s).mask
    sp = p.superpixels
    neg_sp, pos_sp = sp.labels == sp.labels[90, 110], sp.labels == sp.labels[10, 10]
    assert before[90, 110] and not after[neg_sp].any() and after[pos_sp].all()
    snapped = refined.predict(s).mask
    assert not snapped[neg_sp].any() and snapped[pos_sp].all() and snapped[80, 100]
    assert after[80, 100]  # the first positive click's object survives
    clicked = np.isin(sp.labels, [sp.labels[c.row, c.col] for c in s.clicks])
    assert not (after != unforced)[
        ~clicked
    ].any()  # only the clicked superpixels (all four clicks') differ


def test_predict_reports_its_stages_in_click_order(disk_image):
    """The benchmark times stages through this hook: every stage of the real click path, once, in
    order."""
    from napari_spbox.benchmark import PER_CLICK_STAGES
    from napari_spbox.core.protocol import Session
    from napari_spbox.model.inference import SPBoxPredictor

    img, mask = disk_image
    p = SPBoxPredictor()
    p.set_image(img)
    s = Session(mask.shape, strict=False)
    s.add_click(80, 100, True)
    s.add_click(80, 150, False)
    seen = []
    with_hook = p.predict(s, on_stage=seen.append)
    assert tuple(seen) == PER_CLICK_STAGES
    np.testing.assert_array_equal(with_hook.mask, p.predict(s).mask)  # timing changes nothing


def test_implied_box_keeps_the_clicked_parts_of_the_mask():
    from napari_spbox.core.predictor import implied_box
    from napari_spbox.core.protocol import Box, Session

    prob = np.zeros((60, 90), np.float32)
    prob[10:30, 10:30] = 0.9  # clicked
    prob[40:55, 60:85] = 0.9  # a look-alike nobody clicked
    s = Session(prob.shape, strict=False)
    s.add_click(20, 20, True)
    assert implied_box(prob, s) == Box(10, 10, 29, 29)
    s.add_click(50, 5, True)  # a positive the first pass missed is still inside the box
    assert implied_box(prob, s) == Box(10, 5, 50, 29)


def test_a_first_click_takes_the_whole_object_and_not_its_look_alike():
    """One positive click, no box yet: the shipped network runs again inside the box of its first
    mask (one pass on the whole image gave IoU ~0.89 here)."""
    from skimage.draw import disk

    from napari_spbox.core.protocol import Session
    from napari_spbox.evaluation.metrics import iou
    from napari_spbox.model.inference import SPBoxPredictor

    rng = np.random.default_rng(0)
    clicked, other = np.zeros((200, 300), bool), np.zeros((200, 300), bool)
    clicked[disk((100, 80), 40)] = True
    other[disk((100, 220), 40)] = True
    img = rng.normal(0, 8, (200, 300, 3)) + np.where(
        (clicked | other)[..., None], [200, 60, 50], [60, 90, 60]
    )
    p = SPBoxPredictor()
    p.set_image(np.clip(img, 0, 255).astype(np.uint8))
    for click in [(100, 80), (75, 70), (120, 100)]:
        s = Session(clicked.shape, strict=False)
        s.add_click(*click, True)
        mask = p.predict(s).mask
        assert iou(mask, clicked) > 0.95 and not (mask & other).any()


def test_flip_averages_the_mirrored_pass_so_a_mirrored_input_gives_the_mirrored_output():
    """``flip=True`` (test-time augmentation): the logits are symmetric under mirroring; without it
    they are not."""
    from napari_spbox.model.inference import SPBoxPredictor

    torch.manual_seed(0)
    net = build_network(pretrained=False).eval()
    x = torch.rand(6, 64, 64) * 2 - 1
    plain, flipped = SPBoxPredictor(model=net), SPBoxPredictor(model=net, flip=True)
    assert not torch.allclose(plain.forward(x.flip(-1)), plain.forward(x).flip(-1), atol=1e-4)
    assert torch.allclose(flipped.forward(x.flip(-1)), flipped.forward(x).flip(-1), atol=1e-5)
    assert torch.allclose(
        flipped.forward(x), (plain.forward(x) + plain.forward(x.flip(-1)).flip(-1)) / 2, atol=1e-5
    )


def test_weights_card_sets_the_default_edge_refinement_and_flags_override_it(tmp_path):
    """Weights chosen without edge refinement run without it unless the user asks for it; weights
    whose card says nothing keep the refinement; a card with a made-up setting is refused."""
    from napari_spbox.model.weights import read_card
    from napari_spbox.predictors import PredictorSettings, edges_from_flags, make_predictor

    model, card = load_model(), read_card()
    plain = save_weights(model, tmp_path / "plain.pt", {"input_size": card["input_size"]})
    off = save_weights(
        model, tmp_path / "off.pt", {"input_size": card["input_size"], "edges": "off"}
    )

    def built(path, **flags):
        edges = edges_from_flags(**flags)
        p = make_predictor(
            PredictorSettings("spbox", weights=str(path), edges=edges, backend="torch")
        )
        return p.refine, p.precise_edges

    assert built(plain) == (True, False)
    assert built(off) == (False, False)
    assert built(off, precise=True) == (True, True)
    assert built(plain, no_refine=True) == (False, False)
    bad = save_weights(model, tmp_path / "bad.pt", {"input_size": 320, "edges": "sharp"})
    with pytest.raises(WeightsError, match="edges 'sharp'"):
        make_predictor(PredictorSettings("spbox", weights=str(bad), backend="torch"))


def test_weights_card_sets_the_click_spot_and_the_setting_overrides_it(tmp_path):
    """The microscopy weights run with a 1 px click spot, the natural ones with 3 px; an explicit
    setting wins; a card with a radius that is not a pixel count is refused."""
    from napari_spbox.core.predictor import CLICK_RADIUS
    from napari_spbox.model.weights import read_card
    from napari_spbox.predictors import PredictorSettings, make_predictor

    def radius(weights, **kw):
        return make_predictor(
            PredictorSettings("spbox", weights=str(weights), backend="torch", **kw)
        ).click_radius

    assert read_card("microscopy")["click_radius"] == 1
    assert radius("microscopy") == 1 and radius("natural") == CLICK_RADIUS == 3
    assert radius("microscopy", click_radius=3) == 3
    bad = save_weights(load_model(), tmp_path / "bad.pt", {"input_size": 320, "click_radius": 2.5})
    with pytest.raises(WeightsError, match="click_radius 2.5"):
        radius(bad)
