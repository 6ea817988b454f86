"""The VOC foreground prior as an 8th input (``spbox train --prior``, issue 32's cheaper route)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from napari_spbox.model.espnetv2 import voc_weights_file
from napari_spbox.model.network import add_prev_mask_input, add_prior_input, build_network
from napari_spbox.model.prior import WithPrior, foreground_prior, voc_prior_network
from napari_spbox.model.weights import load_model, save_weights

VOC = voc_weights_file(2.0)
needs_voc = pytest.mark.skipif(
    VOC is None, reason="shared/pretrained/espnetv2-voc is not beside the checkout"
)


def _eight(seed: int = 0) -> WithPrior:
    torch.manual_seed(seed)
    return add_prior_input(add_prev_mask_input(build_network()), None).eval()


def test_prior_input_starts_from_the_trained_network_and_round_trips(tmp_path):
    """From 7-channel weights the prior's filters start at zero, so the 8-channel network computes
    what the trained one did; once they are not zero the prior changes the output; the file reloads
    with the VOC network inside; networks that cannot take the channel are refused."""
    torch.manual_seed(0)
    seven = add_prev_mask_input(build_network()).eval()
    eight = add_prior_input(seven, None).eval()
    x = torch.randn(1, 8, 64, 64)
    with torch.no_grad():
        assert torch.equal(seven(x[:, :7]), eight(x))
        eight.stem_conv.weight[:, 7] = 0.3
        other = x.clone()
        other[:, 7] = -other[:, 7]
        assert not torch.allclose(eight(x), eight(other))
    assert eight.arch == "efficientnet_lite0+prior" and eight.in_channels == 8
    loaded = load_model(save_weights(eight, tmp_path / "eight.pt"))
    assert isinstance(loaded, WithPrior) and loaded.in_channels == 8
    for key, value in eight.prior.state_dict().items():
        assert torch.equal(loaded.prior.state_dict()[key], value.half().float()), key
    with pytest.raises(ValueError, match="previous mask"):
        add_prior_input(build_network(), None)  # 6 channels: the prior follows the mask channel
    with pytest.raises(ValueError, match="Lite"):
        build_network("resnet101+prior", in_channels=8)


def test_training_mode_leaves_the_voc_network_frozen():
    """Training the 8-channel network never changes the VOC network behind the prior."""
    net = _eight().train()
    assert not net.prior.training and all(not p.requires_grad for p in net.prior.parameters())
    net(torch.randn(2, 8, 64, 64)).mean().backward()
    # the zero-started filters that read the prior learn from the first step; the VOC network not
    assert net.stem_conv.weight.grad[:, 7].abs().sum() > 0
    assert net.net.dec4[3].weight.grad[:, -1].abs().sum() > 0
    assert all(p.grad is None for p in net.prior.parameters())


@needs_voc
def test_prior_marks_the_object_of_a_voc_class_and_not_the_background():
    """The authors' VOC network finds GrabCut's penguin (a bird, one of VOC's classes): its prior
    is high on the bird and low around it."""
    from pathlib import Path

    from napari_spbox.core.image import to_rgb_float
    from napari_spbox.datasets import read_grabcut

    root = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "grabcut"
    item = next(i for i in read_grabcut(root) if i.name.startswith("106024"))
    image, gt, ignore = item.load()
    p = foreground_prior(voc_prior_network(VOC), to_rgb_float(image))
    assert p.shape == gt.shape
    # measured: mean 0.89 on the bird, 0.01 around it
    assert p[gt].mean() > 0.7 and p[~gt & ~ignore].mean() < 0.1


def test_samples_carry_the_windows_crop_of_the_cached_prior(tmp_path, disk_image):
    """A training sample's 8th channel is its window's crop of the image's prior (once computed,
    read back from the cache without the network); a copy-paste composite's prior is the object's
    over the background's, pasted as the pixels are."""
    from napari_spbox.datasets import Item
    from napari_spbox.model.inference import crop_resize
    from napari_spbox.train.data import (
        ClickSampleDataset,
        PriorCache,
        SuperpixelCache,
        paste_object,
    )

    img, mask = disk_image
    for k in range(2):
        Image.fromarray(np.roll(img, 30 * k, axis=1)).save(tmp_path / f"{k}.png")
        Image.fromarray(np.roll(mask, 30 * k, axis=1).astype(np.uint8) * 255).save(
            tmp_path / f"m{k}.png"
        )
    items = [Item(str(k), tmp_path / f"{k}.png", tmp_path / f"m{k}.png") for k in range(2)]
    torch.manual_seed(0)
    cache = PriorCache(tmp_path / "prior", voc_prior_network())
    cache.fill(items, progress=False)
    reread = PriorCache(tmp_path / "prior", None)  # no network: it must come from the files
    prior0 = reread.get(tmp_path / "0.png", None)
    assert prior0.shape == mask.shape and prior0.dtype == np.float32
    assert np.abs(prior0 - cache.get(tmp_path / "0.png", None)).max() == 0

    sp = SuperpixelCache(tmp_path / "sp", 200)
    ds = ClickSampleDataset(
        items, sp, size=64, repeats=4, prev_mask=True, prior=reread, augment=False
    )
    x, _, _ = ds[0]
    window = ds._draw(0)[5]
    expected = crop_resize(torch.from_numpy(prior0)[None] * 2 - 1, window, 64)[0]
    assert x.shape[0] == 8 and torch.allclose(x[7], expected, atol=1e-6)

    pasted = ClickSampleDataset(
        items, sp, size=64, repeats=4, prev_mask=True, prior=reread, p_paste=1.0
    )
    rgb, obj_mask, _, prior, *_ = pasted._draw(0)
    assert not np.array_equal(rgb, ds._load(0)[0])  # a composite
    background = reread.get(tmp_path / "1.png", None)
    for flip in (False, True):
        candidate = paste_object(prior0[..., None], obj_mask, background[..., None], flip)[..., 0]
        if np.allclose(prior, candidate):
            break
    else:
        pytest.fail("the composite's prior is not the object's pasted over the background's")


def test_predictor_computes_the_prior_once_per_image_and_reads_it(tmp_path, disk_image):
    """The prior is per-image work (in ``warm_up``, not per click); each click's input carries it,
    so another prior gives another mask."""
    from napari_spbox.core.protocol import Session
    from napari_spbox.model.inference import SPBoxPredictor

    img, _ = disk_image
    net = _eight()
    with torch.no_grad():
        net.stem_conv.weight[:, 7] = net.stem_conv.weight[:, 3] * 3.0
    path = save_weights(net, tmp_path / "eight.pt")
    pred = SPBoxPredictor(path, backend="torch")
    assert pred.reads_prior and pred.reads_prev_mask
    calls = []
    real = pred.model.foreground
    pred.model.foreground = lambda rgb: calls.append(rgb.shape) or real(rgb)
    pred.set_image(img)
    pred.warm_up()
    s = Session(img.shape[:2], strict=False)
    s.add_click(100, 110, True)
    first = pred.predict(s).prob
    s.add_click(40, 40, False)
    pred.predict(s)
    assert len(calls) == 1
    pred.set_image(img[::-1].copy())
    assert len(calls) == 1  # not before it is needed ...
    pred.warm_up()
    assert len(calls) == 2  # ... and once for the new image
    pred.set_image(img)
    pred._prior = np.ones(img.shape[:2], np.float32)
    s.undo()
    assert not np.allclose(pred.predict(s).prob, first)


@needs_voc
def test_training_with_the_prior_learns_its_filters_and_resumes_only_as_started(
    tmp_path, disk_image
):
    """``--prior`` from 7-channel weights: the run starts from them, learns the prior's filters,
    writes weights that load with the VOC network inside; a resume without the flag is refused."""
    from napari_spbox.train.loop import TrainConfig, train

    img, mask = disk_image
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    (data / "gt").mkdir()
    for k in range(3):
        Image.fromarray(np.roll(img, 10 * k, axis=1)).save(data / "img" / f"{k}.png")
        Image.fromarray(np.roll(mask, 10 * k, axis=1).astype(np.uint8)).save(
            data / "gt" / f"{k}.png"
        )
    init = save_weights(add_prev_mask_input(build_network()), tmp_path / "seven.pt")
    tiny = {"batch_size": 2, "size": 64, "val_objects": 0, "progress": False, "min_area": 100}
    out = tmp_path / "run"
    ckpt = train(
        TrainConfig([data], out, epochs=1, init=init, prior=True, p_iterative=1.0, lr=0.05, **tiny)
    )
    trained = load_model(out / "weights.pt")
    assert isinstance(trained, WithPrior) and trained.stem_conv.weight[:, 7].abs().sum() > 0
    # the VOC network is the authors' as it was (the weights file holds fp16 copies)
    for key, value in voc_prior_network(VOC).state_dict().items():
        expected = value.half().float() if value.is_floating_point() else value
        assert torch.equal(trained.prior.state_dict()[key], expected), key
    assert json.loads((out / "weights.json").read_text())["recipe"]["prior"] is True
    with pytest.raises(ValueError, match="--prior"):
        train(TrainConfig([data], out, epochs=2, resume=ckpt, prev_mask=True, **tiny))
