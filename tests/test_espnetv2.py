"""The segmentation-pretrained network: our ESPNetv2 definition against the authors' VOC weights and
code."""

import shutil
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from napari_spbox.model.espnetv2 import (
    MEAN,
    STD,
    ESPNetv2Segmentation,
    SPBoxESPNet,
    foreground_logit,
    voc_weights_file,
)
from napari_spbox.model.network import PREV_MASK_CHANNELS, build_network
from napari_spbox.model.weights import load_model, save_weights

VOC = voc_weights_file(2.0)
needs_voc = pytest.mark.skipif(
    VOC is None, reason="shared/pretrained/espnetv2-voc is not beside the checkout"
)


@needs_voc
def test_voc_weights_load_strictly_and_match_the_authors_network(tmp_path, monkeypatch):
    """Every key of the authors' file loads (strict) and the logits equal those of their own
    definition."""
    ref_src = VOC.parent / "reference"
    ref = tmp_path / "ref"
    shutil.copytree(ref_src, ref)
    (ref / "utilities").mkdir()
    (ref / "utilities" / "__init__.py").write_text("")
    (ref / "utilities" / "print_utils.py").write_text(
        "def print_error_message(*a): pass\n"
        "print_info_message = print_warning_message = print_error_message\n"
    )
    monkeypatch.syspath_prepend(str(ref))
    for name in [m for m in sys.modules if m.split(".")[0] in ("model", "nn_layers", "utilities")]:
        monkeypatch.delitem(sys.modules, name)
    from model.segmentation.espnetv2 import ESPNetv2Segmentation as Reference

    theirs = Reference(
        types.SimpleNamespace(s=2.0, channels=3), classes=21, dataset="pascal"
    ).eval()
    theirs.load_state_dict(torch.load(VOC, map_location="cpu", weights_only=True))
    ours = ESPNetv2Segmentation(2.0).eval()
    ours.load_voc(VOC)
    x = torch.randn(1, 3, 160, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)


@needs_voc
def test_wrong_voc_file_is_refused():
    small = voc_weights_file(1.0)
    with pytest.raises(RuntimeError):
        ESPNetv2Segmentation(2.0).load_voc(small)


@needs_voc
def test_zero_guidance_filters_reproduce_the_voc_network():
    """At the start of training the guidance channels change nothing: the output is the VOC
    network's "any object" log-odds, whatever the clicks say."""
    net = SPBoxESPNet(PREV_MASK_CHANNELS, 2.0, VOC).eval()
    voc = ESPNetv2Segmentation(2.0).eval()
    voc.load_voc(VOC)
    torch.manual_seed(0)
    rgb = torch.rand(1, 3, 128, 128)
    normed = (rgb - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = F.interpolate(
            foreground_logit(voc.decode(voc.base_net(normed))),
            (128, 128),
            mode="bilinear",
            align_corners=True,
        )
        for guidance in (torch.zeros(1, 4, 128, 128), torch.randn(1, 4, 128, 128)):
            out = net(torch.cat([rgb * 2 - 1, guidance], 1))
            assert torch.allclose(out, expected, atol=1e-4)
    assert net.stem_conv.weight[:, 3:].abs().max() == 0


def test_foreground_logit_is_the_log_odds_of_any_object():
    logits = torch.tensor([[0.0, 1.0, -1.0]]).view(1, 3, 1, 1)
    p = torch.softmax(logits, 1)[0, 1:].sum()
    assert torch.allclose(torch.sigmoid(foreground_logit(logits)), p.view(1, 1, 1, 1))


def test_espnet_weights_round_trip_without_the_voc_file(tmp_path):
    """A trained ESPNet file rebuilds offline: loading needs the package only, not the VOC
    weights."""
    net = build_network("espnetv2", in_channels=PREV_MASK_CHANNELS).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x = torch.randn(1, PREV_MASK_CHANNELS, 64, 64)
    again = load_model(save_weights(net, tmp_path / "e.pt", half=False))
    with torch.no_grad():
        assert again.arch == "espnetv2" and torch.allclose(again(x), net(x), atol=1e-5)
