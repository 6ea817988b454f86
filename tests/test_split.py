"""The split network (frozen encoder once per window, click decoder per click): what it promises a
user is that a click inside the box costs the decoder alone and gives the same mask as a full pass,
and what it promises training is that the encoder changes only where it is told to."""

import numpy as np
import pytest
import torch

from napari_spbox.core.protocol import Session
from napari_spbox.model.inference import SPBoxPredictor
from napari_spbox.model.split import SPBoxSplit
from napari_spbox.model.weights import load_model, save_weights
from napari_spbox.train.model_setup import parameter_groups


def _counting(predictor):
    """Count the encoder runs of ``predictor``'s split runner."""
    calls = []
    encode = predictor.runner.encode

    def counted(rgb):
        calls.append(rgb.shape)
        return encode(rgb)

    predictor.runner.encode = counted
    return calls


def _two_predictors(disk_image):
    """The disk on a larger canvas (so that a zoom window is a part of the image), and two
    predictors sharing one untrained split network."""
    torch.manual_seed(0)
    img, mask = disk_image
    img = np.pad(img, ((40, 200), (40, 260), (0, 0)), mode="edge")
    mask = np.pad(mask, ((40, 200), (40, 260)))
    model = SPBoxSplit(7).eval()
    return img, mask, SPBoxPredictor(model=model), SPBoxPredictor(model=model)


def test_clicks_inside_the_box_reuse_the_encoder_and_match_a_full_pass(disk_image):
    img, mask, pred, fresh = _two_predictors(disk_image)
    assert pred.split and fresh.split
    pred.set_image(img)
    calls = _counting(pred)
    s = Session(mask.shape, strict=False)
    s.add_click(120, 140, True)
    pred.predict(s)  # no box yet: the whole image, then the box its mask implies
    s.add_click(70, 190, False)  # the box
    pred.predict(s)
    encoded = len(calls)
    s.add_click(125, 145, False)  # inside the box: the window stays
    pred.predict(s)
    s.add_click(110, 135, True)
    inside = pred.predict(s)
    assert len(calls) == encoded
    # the kept embedding gives what a predictor without it computes
    fresh.set_image(img)
    assert np.allclose(fresh.predict(s).prob, inside.prob, atol=1e-5)
    s.add_click(190, 60, True)  # outside: the box grows, so the window changes
    pred.predict(s)
    assert len(calls) == encoded + 1
    # another image: nothing is reused
    other = np.ascontiguousarray(img[::-1])
    pred.set_image(other)
    fresh.set_image(other)
    assert np.allclose(pred.predict(s).prob, fresh.predict(s).prob, atol=1e-5)


def test_warm_up_encodes_the_whole_image_and_the_first_click_reuses_it(disk_image):
    img, mask, pred, fresh = _two_predictors(disk_image)
    pred.set_image(img)
    calls = _counting(pred)
    pred.warm_up()  # SLIC and, beside it, the encoder on the whole image
    assert len(calls) == 1
    s = Session(mask.shape, strict=False)
    s.add_click(120, 140, True)
    first = pred.predict(s)
    fresh.set_image(img)  # no warm-up: the first click does it all
    fresh_calls = _counting(fresh)
    assert np.allclose(fresh.predict(s).prob, first.prob, atol=1e-5)
    assert len(calls) == len(fresh_calls), "the first click did not encode the whole image again"


def test_training_changes_the_decoder_and_never_the_encoder():
    torch.manual_seed(0)
    model = SPBoxSplit(7).train()
    assert not model.voc.training, "the frozen encoder keeps its BatchNorm statistics"
    before = {k: v.clone() for k, v in model.voc.state_dict().items()}
    head = model.stem[0].weight.clone()
    opt = torch.optim.AdamW(model.parameters(), 1e-2)
    x = torch.rand(2, 7, 64, 64) * 2 - 1
    y = (torch.rand(2, 1, 64, 64) > 0.5).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
    loss.backward()
    opt.step()
    after = model.voc.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(head, model.stem[0].weight)


def test_a_tuned_encoder_trains_its_deeper_half_at_its_own_rate_and_keeps_its_statistics():
    torch.manual_seed(0)
    model = SPBoxSplit(7).train()
    groups = parameter_groups(model, 0.1)
    assert [g["lr_scale"] for g in groups] == [1.0, 0.1]
    opt = torch.optim.AdamW(groups, 1e-2)
    before = {k: v.clone() for k, v in model.voc.state_dict().items()}
    x = torch.rand(2, 7, 64, 64) * 2 - 1
    y = (torch.rand(2, 1, 64, 64) > 0.5).float()
    torch.nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
    opt.step()
    after = model.voc.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("base_net.level4.") for k in changed)
    assert any(k.startswith("bu_dec_l3.") for k in changed)
    # high-resolution levels, the foreground head and every BatchNorm statistic stay
    assert not any(
        k.startswith(("base_net.level1.", "base_net.level2_0.", "bu_dec_l4.")) for k in changed
    )
    assert not any(k.endswith(("running_mean", "running_var")) for k in changed)


def test_a_tuned_encoder_learns_through_the_foreground_prior():
    # with the gradient cut at the frozen prior head, the tuned features drifted until the prior
    # called everything an object
    torch.manual_seed(0)
    model = SPBoxSplit(7).train()
    model.tune_encoder()
    _, fg4 = model.encode(torch.rand(1, 3, 64, 64) * 2 - 1)
    fg4.mean().backward()
    grads = [p.grad for p in model.voc.bu_dec_l3.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_tuning_the_encoder_of_another_network_is_refused():
    from napari_spbox.model.network import build_network

    with pytest.raises(ValueError, match="espnetv2-split"):
        parameter_groups(build_network("efficientnet_lite0"), 0.1)


def test_split_weights_round_trip_through_a_file(tmp_path):
    torch.manual_seed(0)
    model = SPBoxSplit(7).eval()
    path = save_weights(model, tmp_path / "split.pt", half=False)
    again = load_model(path).eval()
    assert again.arch == "espnetv2-split" and again.in_channels == 7
    x = torch.rand(1, 7, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model(x), again(x))


def test_onnx_halves_give_the_torch_masks(tmp_path, monkeypatch, disk_image):
    """The split network's encoder and decoder exported apart to ONNX Runtime (each once, then
    reused) give the masks plain torch gives."""
    monkeypatch.setenv("SPBOX_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    path = save_weights(SPBoxSplit(7).eval(), tmp_path / "split.pt", half=False)
    img, mask = disk_image
    s = Session(mask.shape, strict=False)
    s.add_click(80, 100, True)
    s.add_click(30, 150, False)
    s.add_click(75, 95, True)
    probs = {}
    for backend in ("onnx", "torch", "onnx"):
        pred = SPBoxPredictor(path, backend=backend)
        assert pred.backend == backend and pred.split
        pred.set_image(img)
        probs[backend] = pred.predict(s).prob
    assert np.abs(probs["onnx"] - probs["torch"]).max() < 1e-4
    graphs = sorted(p.name.split("-v")[0].split("-", 2)[2] for p in (tmp_path / "cache").iterdir())
    assert graphs == ["320-decoder", "320-encoder"]
