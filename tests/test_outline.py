"""The outline head (a trained network, frozen, plus a small full-resolution head on its logits) and
the outline term of the loss: untrained, the head changes nothing; trained, it moves an outline that
is a few pixels off onto the object's edge and never touches the network under it."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_spbox.core.protocol import Session
from napari_spbox.model.inference import SPBoxPredictor
from napari_spbox.model.network import build_network
from napari_spbox.model.outline import SPBoxOutline
from napari_spbox.model.weights import load_model, save_weights
from napari_spbox.train.losses import outline_band, with_boundary_term


@pytest.mark.parametrize("colour", [False, True])
def test_an_untrained_head_gives_the_networks_own_output(colour):
    torch.manual_seed(0)
    base = build_network(in_channels=7).eval()
    model = SPBoxOutline(base, colour).train()
    assert not model.base.training, "the frozen network keeps its BatchNorm statistics"
    arch = "efficientnet_lite0+outline" + ("-colour" if colour else "")
    assert model.arch == arch and model.in_channels == 7
    assert build_network(arch, in_channels=7).head.colour == colour
    assert all(not p.requires_grad for p in model.base.parameters())
    x = torch.rand(2, 7, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(x), base(x))


class _OffsetDisk(torch.nn.Module):
    """A stand-in for a trained network whose outline is 4 px outside the disk of ``disk_image``
    (radius 40 at (80, 100)): confident inside, wrong in a ring around the object."""

    arch = "efficientnet_lite0"
    in_channels = 6

    def __init__(self):
        super().__init__()
        rr, cc = np.mgrid[:160, :200]
        disk = (rr - 80) ** 2 + (cc - 100) ** 2 <= 44**2
        self.register_buffer("logits", torch.tensor(np.where(disk, 6.0, -6.0)[None, None]).float())

    def forward(self, x):
        return self.logits.expand(len(x), -1, -1, -1)


def test_a_trained_head_moves_an_outline_that_is_off_onto_the_objects_edge(disk_image):
    torch.manual_seed(0)
    img, mask = disk_image
    rgb = torch.tensor(img).permute(2, 0, 1)[None].float() / 127.5 - 1
    x = torch.cat([rgb, torch.zeros(1, 3, *mask.shape)], 1)
    y = torch.tensor(mask[None, None]).float()
    model = SPBoxOutline(_OffsetDisk()).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-2)
    loss_fn = with_boundary_term(F.binary_cross_entropy_with_logits, 1.0)

    def iou():
        with torch.no_grad():
            pred = model.eval()(x)[0, 0].numpy() > 0
        model.train()
        return (pred & mask).sum() / (pred | mask).sum()

    before = iou()
    for _ in range(60):
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert before < 0.85 and iou() > 0.95


def test_training_the_head_never_moves_the_network_under_it(tmp_path, disk_dataset, tiny_training):
    from napari_spbox.train.loop import TrainConfig, train

    # a network that reads the previous mask, as the shipped ones do
    init = save_weights(build_network(in_channels=7), tmp_path / "init.pt")
    start = load_model(init).state_dict()
    ckpt = train(
        TrainConfig(
            [disk_dataset],
            tmp_path / "run",
            epochs=1,
            init=init,
            outline_head=True,
            boundary_weight=1.0,
            p_iterative=1.0,  # iterative clicks switch the model to eval and back
            lr=0.05,
            optimizer="adamw",
            **tiny_training,
        )
    )
    end = torch.load(ckpt, weights_only=True)["model"]
    assert all(torch.equal(end[f"base.{k}"], v) for k, v in start.items())
    assert not torch.equal(end["head.out.weight"], torch.zeros_like(end["head.out.weight"]))
    card = json.loads((tmp_path / "run" / "weights.json").read_text())
    assert card["arch"] == "efficientnet_lite0+outline"
    assert card["recipe"]["outline_head"] is True and card["recipe"]["boundary_weight"] == 1.0
    assert isinstance(load_model(tmp_path / "run" / "weights.pt"), SPBoxOutline)


def test_an_outline_head_needs_a_trained_network(tmp_path):
    from napari_spbox.train.loop import TrainConfig

    with pytest.raises(ValueError, match="--init"):
        TrainConfig(["a"], tmp_path, outline_head=True)
    with pytest.raises(ValueError, match="'colour'"):
        TrainConfig(["a"], tmp_path, init="w.pt", outline_head="color")


@pytest.mark.parametrize("colour", [False, True])
def test_outline_weights_give_the_same_masks_in_onnx_runtime_and_torch(
    tmp_path, monkeypatch, disk_image, colour
):
    monkeypatch.setenv("SPBOX_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = SPBoxOutline(build_network(in_channels=7).eval(), colour)
    for p in model.head.parameters():  # a head that does something
        p.data.normal_(0, 0.3)
    path = save_weights(model.eval(), tmp_path / "outline.pt", half=False)
    img, mask = disk_image
    s = Session(mask.shape, strict=False)
    s.add_click(80, 100, True)
    s.add_click(30, 150, False)
    probs = {}
    for backend in ("onnx", "torch"):
        pred = SPBoxPredictor(path, backend=backend, refine=False)
        assert pred.backend == backend
        pred.set_image(img)
        probs[backend] = pred.predict(s).prob
    assert np.abs(probs["onnx"] - probs["torch"]).max() < 1e-4


def test_the_outline_term_weighs_errors_at_the_outline_not_far_from_it():
    target = torch.zeros(1, 1, 32, 32)
    target[..., 8:24, 8:24] = 1
    band = outline_band(target, 1)
    assert band[0, 0, 16, 16] == 0 and band[0, 0, 16, 8] == 1 and band[0, 0, 16, 7] == 1
    perfect = 8 * (2 * target - 1)
    at_edge, far = perfect.clone(), perfect.clone()
    at_edge[..., 7, 8:24] = 8  # a one-pixel sliver outside the top edge
    far[..., 30, 8:24] = 8  # as many wrong pixels far from the object
    bce = F.binary_cross_entropy_with_logits
    assert torch.isclose(bce(at_edge, target), bce(far, target))
    weighted = with_boundary_term(bce, 1.0, radius=1)
    # what the term adds: the sliver's cross-entropy over the band, next to nothing for the far one
    added = [weighted(p, target) - bce(p, target) for p in (at_edge, far)]
    assert added[0] > 0.5 and added[1] < 1e-2
    assert with_boundary_term(bce, 0.0) is bce
